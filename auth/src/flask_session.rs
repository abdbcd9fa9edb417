//! [`FlaskSessionAuth`]: the signed session cookie of a Flask application.
//!
//! Flask's default session (`SecureCookieSessionInterface`) is an itsdangerous
//! `URLSafeTimedSerializer`: the cookie value is `payload.timestamp.signature`, where
//! - `payload` is the base64url (unpadded) JSON of the session, or `.` followed by the base64url
//!   of its zlib compression when that is shorter;
//! - `timestamp` is the base64url of the signing time (Unix seconds, big-endian, no leading zero
//!   bytes);
//! - `signature` is the base64url HMAC-SHA1 of everything before it (`payload.timestamp`,
//!   including a leading `.`), keyed with HMAC-SHA1(`SECRET_KEY`, salt) — itsdangerous' `hmac`
//!   key derivation with the salt `cookie-session`.
//!
//! A cookie is accepted when the signature verifies with the key or one of the fallback keys
//! (compared in constant time), it is at most `max_age` old and not from the future, and the
//! session holds a user.

use std::fmt;
use std::io::Read as _;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha1::Sha1;
use sidecast_core::config::FlaskSessionConfig;
use sidecast_core::{Action, AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal};

use crate::shared::{ROOM_OPERATIONS_NEED_A_TOKEN, Refusals, cookie, string_array, user_name};

type HmacSha1 = Hmac<Sha1>;

/// The name of the policy in configuration and metrics.
pub const FLASK_SESSION_POLICY: &str = "flask-session";

/// This policy's refusals, named `flask-session` in metrics.
const REFUSE: Refusals = Refusals::of(FLASK_SESSION_POLICY);

/// Browsers keep cookies of up to about 4 KiB (name, value and attributes); anything longer was
/// not set by a browser-facing Flask app and is refused before any work.
pub const MAX_COOKIE_BYTES: usize = 4096;

/// The most a compressed payload may inflate to: a 4 KiB cookie of real session data inflates
/// far less; more is a zlib bomb.
const MAX_INFLATED_BYTES: u64 = 64 * 1024;

/// Why a Flask session cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlaskCookieError {
    /// The request has no such cookie.
    #[error("no Flask session cookie; log in to the application first")]
    Missing,
    /// The value is longer than [`MAX_COOKIE_BYTES`], or inflates to too much.
    #[error("the Flask session cookie is too large")]
    Oversize,
    /// The value is not `payload.timestamp.signature`.
    #[error("the Flask session cookie is malformed")]
    Malformed,
    /// No configured key made this signature: tampered, or signed with another `SECRET_KEY`.
    #[error("the Flask session cookie's signature does not match")]
    BadSignature,
    /// Older than the maximum age (or signed in the future).
    #[error("the Flask session has expired; log in again")]
    Expired,
    /// The signed payload is not zlib/JSON of an object.
    #[error("the Flask session cookie's payload cannot be decoded")]
    Undecodable,
    /// The session holds no user under the configured key.
    #[error("the Flask session has no user; log in first")]
    NoUser,
}

impl FlaskCookieError {
    /// A short code for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Oversize => "oversize",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::Undecodable => "undecodable",
            Self::NoUser => "no_user",
        }
    }
}

impl From<FlaskCookieError> for AuthError {
    fn from(e: FlaskCookieError) -> Self {
        REFUSE.unauthenticated(e.code(), e.to_string())
    }
}

/// Accepts the session cookie a Flask application signed with its `SECRET_KEY`; the principal is
/// the session's user (`session['user']` by default), the socket joins the rooms listed under
/// `rooms_key` when configured.
///
/// Like [`SessionAuth`](crate::SessionAuth), it lets a logged-in user connect and publish and refuses room
/// operations (403). Keys never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct FlaskSessionAuth {
    /// Derived signing keys: the current one first, then the fallbacks.
    keys: Vec<HmacSha1>,
    cookie_name: String,
    user_key: String,
    rooms_key: Option<String>,
    max_age_secs: u64,
}

impl fmt::Debug for FlaskSessionAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlaskSessionAuth")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("cookie_name", &self.cookie_name)
            .field("user_key", &self.user_key)
            .field("rooms_key", &self.rooms_key)
            .field("max_age_secs", &self.max_age_secs)
            .finish()
    }
}

/// itsdangerous' `hmac` key derivation: HMAC-SHA1(secret, salt), then the signing MAC keyed with it.
fn derive(secret: &[u8], salt: &[u8]) -> HmacSha1 {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut kdf = HmacSha1::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    kdf.update(salt);
    let derived = kdf.finalize().into_bytes();
    HmacSha1::new_from_slice(&derived).unwrap_or_else(|_| unreachable!())
}

impl FlaskSessionAuth {
    /// The policy `[auth.flask_session]` configures.
    pub fn new(config: &FlaskSessionConfig) -> Self {
        let keys = std::iter::once(&config.secret_key)
            .chain(&config.fallback_keys)
            .map(|k| derive(k.expose().as_bytes(), config.salt.as_bytes()))
            .collect();
        Self {
            keys,
            cookie_name: config.cookie_name.clone(),
            user_key: config.user_key.clone(),
            rooms_key: Some(config.rooms_key.clone()).filter(|k| !k.is_empty()),
            max_age_secs: config.max_age_secs,
        }
    }

    /// The session in a cookie value, verified at `now` (Unix seconds).
    pub fn session(&self, value: &str, now: u64) -> Result<Map<String, Value>, FlaskCookieError> {
        if value.len() > MAX_COOKIE_BYTES {
            return Err(FlaskCookieError::Oversize);
        }
        let (signed, signature) = value.rsplit_once('.').ok_or(FlaskCookieError::Malformed)?;
        let (payload, timestamp) = signed.rsplit_once('.').ok_or(FlaskCookieError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| FlaskCookieError::Malformed)?;
        // Every key is tried, so that timing does not tell which one matched.
        let mut valid = false;
        for key in &self.keys {
            let mut mac = key.clone();
            mac.update(signed.as_bytes());
            valid |= mac.verify_slice(&signature).is_ok();
        }
        if !valid {
            return Err(FlaskCookieError::BadSignature);
        }
        let stamp = URL_SAFE_NO_PAD
            .decode(timestamp)
            .map_err(|_| FlaskCookieError::Malformed)?;
        if stamp.is_empty() || stamp.len() > 8 {
            return Err(FlaskCookieError::Malformed);
        }
        let signed_at = stamp.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        // itsdangerous refuses negative ages ("signature age is negative") as expired too.
        if signed_at > now || now - signed_at > self.max_age_secs {
            return Err(FlaskCookieError::Expired);
        }
        let json = match payload.strip_prefix('.') {
            Some(compressed) => {
                let deflated = URL_SAFE_NO_PAD
                    .decode(compressed)
                    .map_err(|_| FlaskCookieError::Undecodable)?;
                let mut inflated = Vec::new();
                flate2::read::ZlibDecoder::new(deflated.as_slice())
                    .take(MAX_INFLATED_BYTES + 1)
                    .read_to_end(&mut inflated)
                    .map_err(|_| FlaskCookieError::Undecodable)?;
                if inflated.len() as u64 > MAX_INFLATED_BYTES {
                    return Err(FlaskCookieError::Oversize);
                }
                inflated
            }
            None => URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| FlaskCookieError::Undecodable)?,
        };
        match serde_json::from_slice(&json) {
            Ok(Value::Object(session)) => Ok(session),
            _ => Err(FlaskCookieError::Undecodable),
        }
    }

    /// The principal of a verified session: its user (a string, or a number as Flask-Login's
    /// `_user_id` may be) and its rooms.
    pub fn principal(&self, session: &Map<String, Value>) -> Result<Principal, FlaskCookieError> {
        let user = user_name(session.get(&self.user_key)).ok_or(FlaskCookieError::NoUser)?;
        let rooms = self
            .rooms_key
            .as_ref()
            .map(|key| string_array(session.get(key)))
            .unwrap_or_default();
        Ok(Principal::new(user).with_rooms(rooms))
    }

    /// The value of this policy's cookie in the request's `Cookie` headers.
    fn cookie<'h>(&self, req: &'h AuthRequest<'_>) -> Option<&'h str> {
        cookie(req.headers, &self.cookie_name)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait]
impl AuthPolicy for FlaskSessionAuth {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        let value = self.cookie(req).ok_or(FlaskCookieError::Missing)?;
        let principal = self.principal(&self.session(value, now_secs())?)?;
        if req.action.is_room_operation() {
            return Err(REFUSE.forbidden("room_operation", ROOM_OPERATIONS_NEED_A_TOKEN));
        }
        if !matches!(
            req.action,
            Action::Connect { .. } | Action::Publish { .. } | Action::Presence { .. }
        ) {
            return Err(REFUSE.forbidden("action", "this action is not allowed"));
        }
        Ok(principal)
    }

    /// The session cookie.
    fn connect_headers(&self) -> ConnectHeaders {
        ConnectHeaders::Only(vec![http::header::COOKIE])
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use sidecast_core::config::Secret;

    // Made by Flask 3.1.3 (e2e/python/flask_cookies.py) with SECRET_KEY = 'your_secret_key', the
    // original application's; signed at SIGNED_AT.
    const USER: &str = "eyJ1c2VyIjoiR29uemFsbyJ9.axSD6g.SvWmjSAIpBEpSEPjATYyKNOQUNs";
    const SIGNED_AT: u64 = 0x6b14_83ea;

    fn policy() -> FlaskSessionAuth {
        FlaskSessionAuth::new(&FlaskSessionConfig {
            secret_key: Secret::new("your_secret_key"),
            ..FlaskSessionConfig::default()
        })
    }

    #[test]
    fn flask_cookie_verifies_and_expires() {
        let p = policy();
        let session = p.session(USER, SIGNED_AT + 10).unwrap();
        assert_eq!(p.principal(&session).unwrap().id, "Gonzalo");
        assert_eq!(
            p.session(USER, SIGNED_AT + 31 * 86400 + 1),
            Err(FlaskCookieError::Expired)
        );
        assert_eq!(
            p.session(USER, SIGNED_AT - 5),
            Err(FlaskCookieError::Expired)
        );
        let tampered = USER.replacen("eyJ1c2Vy", "eyJ1c2Vz", 1);
        assert_eq!(
            p.session(&tampered, SIGNED_AT),
            Err(FlaskCookieError::BadSignature)
        );
        assert_eq!(
            p.session("abc", SIGNED_AT),
            Err(FlaskCookieError::Malformed)
        );
        assert_eq!(
            p.session(&"a".repeat(5000), SIGNED_AT),
            Err(FlaskCookieError::Oversize)
        );
        let other = FlaskSessionAuth::new(&FlaskSessionConfig {
            secret_key: Secret::new("not-the-key"),
            fallback_keys: vec![Secret::new("your_secret_key")],
            ..FlaskSessionConfig::default()
        });
        assert!(
            other.session(USER, SIGNED_AT).is_ok(),
            "a fallback key verifies"
        );
        assert!(!format!("{other:?}").contains("your_secret_key"));
    }

    #[tokio::test]
    async fn reads_the_cookie_from_the_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("a=b; session={USER}").parse().unwrap(),
        );
        let req = AuthRequest {
            action: Action::Connect { namespace: "/" },
            headers: &headers,
            session_user: None,
            token: None,
            peer: None,
        };
        let p = policy();
        assert_eq!(p.cookie(&req), Some(USER));
        // Current time: the test cookie is within 31 days of SIGNED_AT only near that date, so
        // the policy's refusal is either none or "expired", never another one.
        match p.authorize(&req).await {
            Ok(principal) => assert_eq!(principal.id, "Gonzalo"),
            Err(e) => assert_eq!(e.code(), "expired"),
        }
    }
}
