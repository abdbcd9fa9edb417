//! [`JwtAuth`]: the `jwt` policy, verifying JSON Web Tokens with the `jsonwebtoken` crate.
//!
//! The token comes from the Socket.IO `auth: {token}` payload, `Authorization: Bearer`, or the
//! cookie `auth.jwt.cookie_name`. The header's `alg` must be one of `auth.jwt.algorithms`, which
//! never include `none` and never mix HMAC with public-key algorithms (so a public key can never
//! serve as an HMAC secret); `jsonwebtoken` also refuses a key whose family differs from `alg`.
//! `exp` is required and checked with `nbf`, `iss` and `aud` (when configured), with a leeway.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sidecast_core::config::{ConfigError, JwtConfig};
use sidecast_core::{Action, AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal};

use crate::jwks::{Jwks, JwksError};
use crate::session_rooms::SessionRooms;
use crate::shared::{
    PRESENCE_NEEDS_A_TOKEN, ROOM_OPERATIONS_NEED_A_TOKEN, Refusals, cookie, string_array, user_name,
};

/// The name of the policy in configuration and metrics.
pub const JWT_POLICY: &str = "jwt";

/// Where the keys come from.
enum Keys {
    /// A shared secret or a PEM public key.
    Static(DecodingKey),
    /// A JWKS URL.
    Jwks(Arc<Jwks>),
}

/// The `jwt` policy: see the module documentation and `[auth.jwt]` in docs/configuration.md.
pub struct JwtAuth {
    validation: Validation,
    keys: Keys,
    user_claim: String,
    rooms_claim: Option<String>,
    publish_claim: Option<String>,
    cookie_name: Option<String>,
    max_token_bytes: usize,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("algorithms", &self.validation.algorithms)
            .field("keys", &"[redacted]")
            .field("user_claim", &self.user_claim)
            .finish_non_exhaustive()
    }
}

/// This policy's refusals, named `jwt` in metrics.
const REFUSE: Refusals = Refusals::of(JWT_POLICY);

fn invalid(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("`auth.jwt.{key}` {why}"))
}

impl JwtAuth {
    /// The policy `[auth.jwt]` configures (already validated by `Config::validate`): reads the
    /// PEM file, prepares the JWKS cache (fetched by [`JwtAuth::prefetch`]). The error names the
    /// key and the fix.
    pub fn from_config(config: &JwtConfig) -> Result<Self, ConfigError> {
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            let alg: Algorithm = name.parse().map_err(|_| {
                invalid(
                    "algorithms",
                    format!("lists {name:?}, an unknown algorithm"),
                )
            })?;
            algorithms.push(alg);
        }
        let Some(first) = algorithms.first().copied() else {
            return Err(invalid("algorithms", "is empty"));
        };
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms;
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if !config.issuer.is_empty() {
            validation.set_issuer(&[&config.issuer]);
        }
        if config.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&config.audience);
        }
        let keys = if !config.jwks_url.is_empty() {
            let jwks = Jwks::new(
                &config.jwks_url,
                Duration::from_millis(config.jwks_timeout_ms),
                Duration::from_secs(config.jwks_refresh_secs),
                Duration::from_secs(config.jwks_min_interval_secs),
            )
            .map_err(|e| invalid("jwks_url", format!("cannot be used: {e}")))?;
            Keys::Jwks(Arc::new(jwks))
        } else if !config.public_key_file.is_empty() {
            let path = &config.public_key_file;
            let pem = std::fs::read(path).map_err(|e| {
                invalid(
                    "public_key_file",
                    format!("= {path:?} cannot be read ({e}); give the path of the issuer's public key in PEM"),
                )
            })?;
            let key = match first {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem),
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => return Err(invalid("public_key_file", "is set for HMAC algorithms")),
            }
            .map_err(|e| {
                invalid(
                    "public_key_file",
                    format!("= {path:?} is not a PEM public key for {first:?} ({e}); use the issuer's public key (\"-----BEGIN PUBLIC KEY-----\"), not a private key or certificate"),
                )
            })?;
            if algorithms_span_families(&validation.algorithms) {
                return Err(invalid(
                    "algorithms",
                    "mix RSA, EC and EdDSA while one public_key_file holds one key; list the algorithms of that key, or use jwks_url",
                ));
            }
            Keys::Static(key)
        } else if !config.secret.is_empty() {
            Keys::Static(
                DecodingKey::from_secret(config.secret.expose().as_bytes())
                    .map_err(|e| invalid("secret", e))?,
            )
        } else {
            return Err(invalid(
                "secret",
                "is empty, as are public_key_file and jwks_url; configure the key tokens are signed with",
            ));
        };
        let optional = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
        Ok(Self {
            validation,
            keys,
            user_claim: config.user_claim.clone(),
            rooms_claim: optional(&config.rooms_claim),
            publish_claim: optional(&config.publish_claim),
            cookie_name: optional(&config.cookie_name),
            max_token_bytes: config.max_token_bytes,
        })
    }

    /// Fetches the JWKS, when the keys come from one: call once at start.
    pub async fn prefetch(&self) {
        if let Keys::Jwks(jwks) = &self.keys {
            jwks.prefetch().await;
        }
    }

    /// For `sidecast config --check`: fetches the JWKS once, when the keys come from one; the
    /// error names the key and the fix.
    pub async fn check(&self) -> Result<(), ConfigError> {
        let Keys::Jwks(jwks) = &self.keys else {
            return Ok(());
        };
        jwks.check().await.map(|_| ()).map_err(|e| {
            invalid(
                "jwks_url",
                format!(
                    "cannot be fetched ({e}); check the URL and that this host reaches the issuer"
                ),
            )
        })
    }

    /// The verified claims of `token`.
    pub async fn claims(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(REFUSE.unauthenticated("oversize", "the token is too large"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => not_accepted(),
            // `none` and other names jsonwebtoken does not know fail as JSON.
            _ if has_alg(token) => not_accepted(),
            _ => REFUSE.unauthenticated("malformed", "the token is not a JWT"),
        })?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(REFUSE.unauthenticated(
                "algorithm",
                "the token's algorithm is not one this server accepts",
            ));
        }
        let keys = match &self.keys {
            Keys::Static(key) => vec![key.clone()],
            Keys::Jwks(jwks) => jwks
                .keys(header.kid.as_deref())
                .await
                .map_err(|e| match e {
                    JwksError::Unavailable => REFUSE.unavailable(
                        "keys_unavailable",
                        "the token's issuer keys cannot be fetched; try again shortly",
                    ),
                    JwksError::UnknownKid => REFUSE
                        .unauthenticated("unknown_key", "the token is signed with an unknown key"),
                })?,
        };
        let mut last =
            REFUSE.unauthenticated("bad_signature", "the token's signature does not verify");
        for key in &keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation) {
                Ok(data) => {
                    // jsonwebtoken accepts a token during the whole second of exp + leeway;
                    // it ends at that instant here, when its sockets are disconnected, so that a
                    // client reconnecting with it then is refused rather than let in and cut
                    // off again.
                    let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    if self.expiry(exp) <= SystemTime::now() {
                        return Err(REFUSE.unauthenticated("expired", "the token has expired"));
                    }
                    return Ok(data.claims);
                }
                Err(e) => last = refusal(e.kind()),
            }
        }
        Err(last)
    }

    /// When a token with `exp` stops being accepted: `exp` plus the leeway.
    fn expiry(&self, exp: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(exp.saturating_add(self.validation.leeway))
    }

    /// The principal of verified claims.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, AuthError> {
        let user = user_name(claims.get(&self.user_claim)).ok_or_else(|| {
            REFUSE.unauthenticated(
                "no_user",
                "the token has no user claim (auth.jwt.user_claim)",
            )
        })?;
        let rooms = self
            .rooms_claim
            .as_ref()
            .map(|claim| strings(claims.get(claim)))
            .unwrap_or_default();
        let mut principal = Principal::new(user).with_rooms(rooms);
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            principal = principal.with_expiry(self.expiry(exp));
        }
        Ok(principal)
    }

    /// Whether `claims` grant publishing to `rooms` (empty: everyone, which needs `*`).
    fn may_publish(&self, claims: &Map<String, Value>, user: &str, rooms: &[String]) -> bool {
        let Some(claim) = &self.publish_claim else {
            return false;
        };
        let patterns = strings(claims.get(claim));
        if rooms.is_empty() {
            return patterns.iter().any(|p| p == "*");
        }
        let rules = SessionRooms::new(patterns);
        rooms.iter().all(|room| rules.allows(user, room))
    }

    /// The token of a request: `auth: {token}` / bearer, else the configured cookie.
    fn token<'r>(&self, req: &'r AuthRequest<'_>) -> Option<&'r str> {
        req.token
            .or_else(|| cookie(req.headers, self.cookie_name.as_deref()?))
    }
}

fn not_accepted() -> AuthError {
    REFUSE.unauthenticated(
        "algorithm",
        "the token's algorithm is not accepted (never \"none\")",
    )
}

/// Whether the token's header is JSON with an `alg` (one jsonwebtoken could not read).
fn has_alg(token: &str) -> bool {
    use base64::Engine as _;
    token
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h)
                .ok()
        })
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .is_some_and(|h| h.get("alg").is_some())
}

/// Whether the algorithms need keys of more than one kind (RSA, EC, EdDSA).
fn algorithms_span_families(algorithms: &[Algorithm]) -> bool {
    let family = |a: &Algorithm| match a {
        Algorithm::ES256 | Algorithm::ES384 => 1,
        Algorithm::EdDSA => 2,
        _ => 0,
    };
    algorithms
        .iter()
        .any(|a| family(a) != family(&algorithms[0]))
}

/// The refusal for a `jsonwebtoken` error.
fn refusal(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => REFUSE.unauthenticated("expired", "the token has expired"),
        ErrorKind::ImmatureSignature => {
            REFUSE.unauthenticated("not_yet_valid", "the token is not valid yet (nbf)")
        }
        ErrorKind::InvalidIssuer => {
            REFUSE.unauthenticated("issuer", "the token's issuer is not accepted")
        }
        ErrorKind::InvalidAudience => {
            REFUSE.unauthenticated("audience", "the token is not meant for this server (aud)")
        }
        ErrorKind::MissingRequiredClaim(_) => {
            REFUSE.unauthenticated("claims", "the token lacks a required claim (exp)")
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            REFUSE.unauthenticated("algorithm", "the token's algorithm does not match the key")
        }
        ErrorKind::InvalidSignature => {
            REFUSE.unauthenticated("bad_signature", "the token's signature does not verify")
        }
        _ => REFUSE.unauthenticated("malformed", "the token is malformed"),
    }
}

/// A claim holding a list of strings (or one string), as strings.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        other => string_array(other),
    }
}

#[async_trait]
impl AuthPolicy for JwtAuth {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        let token = self.token(req).ok_or_else(|| {
            REFUSE.unauthenticated(
                "missing",
                "missing token (auth: {token}, Authorization: Bearer)",
            )
        })?;
        let claims = self.claims(token).await?;
        let principal = self.principal(&claims)?;
        match req.action {
            Action::Connect { .. } => Ok(principal),
            Action::Publish { rooms, .. } if self.may_publish(&claims, &principal.id, rooms) => {
                Ok(principal)
            }
            Action::Publish { .. } => Err(REFUSE.forbidden(
                "publish_not_granted",
                "this token may not publish to these rooms (auth.jwt.publish_claim)",
            )),
            Action::Presence { .. } => Err(REFUSE.forbidden("presence", PRESENCE_NEEDS_A_TOKEN)),
            _ => Err(REFUSE.forbidden("action", ROOM_OPERATIONS_NEED_A_TOKEN)),
        }
    }

    /// The cookie named by `auth.jwt.cookie`, when set (the token's other places are the
    /// connect's `auth` payload and `Authorization`).
    fn connect_headers(&self) -> ConnectHeaders {
        match self.cookie_name {
            Some(_) => ConnectHeaders::Only(vec![http::header::COOKIE]),
            None => ConnectHeaders::none(),
        }
    }
}
