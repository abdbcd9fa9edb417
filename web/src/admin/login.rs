//! The Admin UI's login: the handshake `auth` of its connect, `{username, password}` from the
//! login form (checked against `admin.username` and the bcrypt `admin.password_hash`) or
//! `{sessionId}` when the page is reloaded (decision 39: a signed, expiring id that every node
//! of the cluster verifies without a store).

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sidecast_core::config::AdminConfig;

/// What the UI shows when a login is refused (socket.io's own text).
pub(crate) const INVALID_CREDENTIALS: &str = "invalid credentials";

/// What a refused login says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoginError {
    /// Wrong user name or password, or a session id that is forged or expired.
    Invalid,
    /// More than `admin.login_attempts_per_minute` password checks on this node.
    TooManyAttempts,
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Invalid => INVALID_CREDENTIALS,
            Self::TooManyAttempts => "too many login attempts; wait a minute",
        })
    }
}

/// An accepted login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Login {
    /// A password was checked: the UI gets this new session id (the `session` event).
    Password(String),
    /// A session id from an earlier login, still valid.
    Session,
}

/// The configured credentials and the limit on password checks.
pub(crate) struct Credentials {
    username: String,
    hash: String,
    /// The key session ids are signed with: derived from the password hash, so that every node
    /// of a cluster shares it and a new password ends every session.
    session_key: [u8; 32],
    ttl: Duration,
    attempts: governor::DefaultDirectRateLimiter,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The credentials of a validated `[admin]` section.
    pub(crate) fn new(config: &AdminConfig) -> Self {
        let hash = config.password_hash.expose().to_owned();
        let session_key = Sha256::new()
            .chain_update(b"sidecast admin session\0")
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        let per_minute =
            NonZeroU32::new(config.login_attempts_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            username: config.username.clone(),
            hash,
            session_key,
            ttl: Duration::from_secs(config.session_ttl_secs),
            attempts: governor::RateLimiter::direct(governor::Quota::per_minute(per_minute)),
        }
    }

    /// Checks the handshake `auth` of an admin connect.
    pub(crate) async fn check(&self, auth: Option<&Value>) -> Result<Login, LoginError> {
        let field = |name: &str| auth.and_then(|a| a.get(name)).and_then(Value::as_str);
        if let Some(session) = field("sessionId") {
            return if self.verify_session(session, SystemTime::now()) {
                Ok(Login::Session)
            } else {
                Err(LoginError::Invalid)
            };
        }
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            return Err(LoginError::Invalid);
        };
        // Each check costs a bcrypt computation (tens of milliseconds at cost 10 to 12): bounded
        // per node, so that a guessing client cannot take the CPU.
        if self.attempts.check().is_err() {
            return Err(LoginError::TooManyAttempts);
        }
        let hash = self.hash.clone();
        let password = password.to_owned();
        let password_ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        // The password is checked whatever the user name, so that timing does not tell names.
        if password_ok && username == self.username {
            Ok(Login::Password(self.new_session(SystemTime::now())))
        } else {
            Err(LoginError::Invalid)
        }
    }

    /// A session id valid for `admin.session_ttl_secs` from `now`: `<expiry>.<signature>`.
    fn new_session(&self, now: SystemTime) -> String {
        let expiry = (now + self.ttl)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        format!("{expiry}.{}", hex::encode(self.sign(expiry)))
    }

    /// Whether `session` is a session id these credentials issued that is still valid at `now`.
    pub(crate) fn verify_session(&self, session: &str, now: SystemTime) -> bool {
        let Some((expiry, signature)) = session.split_once('.') else {
            return false;
        };
        let (Ok(expiry), Ok(signature)) = (expiry.parse::<u64>(), hex::decode(signature)) else {
            return false;
        };
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        now < expiry && self.mac(expiry).verify_slice(&signature).is_ok()
    }

    fn sign(&self, expiry: u64) -> Vec<u8> {
        self.mac(expiry).finalize().into_bytes().to_vec()
    }

    fn mac(&self, expiry: u64) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.session_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(self.username.as_bytes());
        mac.update(b"\0");
        mac.update(&expiry.to_be_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn credentials(password: &str) -> Credentials {
        Credentials::new(&AdminConfig {
            password_hash: bcrypt::hash(password, 4).unwrap().as_str().into(),
            login_attempts_per_minute: 3,
            ..AdminConfig::default()
        })
    }

    #[tokio::test]
    async fn passwords_sessions_and_the_attempt_limit() {
        let c = credentials("s3cret");
        let Login::Password(session) = c
            .check(Some(&json!({"username": "admin", "password": "s3cret"})))
            .await
            .unwrap()
        else {
            panic!("a password login hands out a session id");
        };
        assert_eq!(
            c.check(Some(&json!({"sessionId": session}))).await,
            Ok(Login::Session)
        );
        // The last hex digit changed (to another digit: a session ending in `0` stays itself
        // with a `0`, which made this test fail one run in sixteen).
        let last = if session.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &session[..session.len() - 1]);
        assert_eq!(
            c.check(Some(&json!({"sessionId": forged}))).await,
            Err(LoginError::Invalid)
        );
        assert!(!c.verify_session(&session, SystemTime::now() + Duration::from_secs(86_401)));
        // Another password: the old session ends.
        assert_eq!(
            credentials("other")
                .check(Some(&json!({"sessionId": session})))
                .await,
            Err(LoginError::Invalid)
        );
        assert_eq!(
            c.check(Some(&json!({"username": "admin", "password": "wrong"})))
                .await,
            Err(LoginError::Invalid)
        );
        assert_eq!(
            c.check(Some(&json!({"username": "root", "password": "s3cret"})))
                .await,
            Err(LoginError::Invalid)
        );
        assert_eq!(c.check(None).await, Err(LoginError::Invalid));
        // Three password checks were made: the fourth is refused without one.
        assert_eq!(
            c.check(Some(&json!({"username": "admin", "password": "s3cret"})))
                .await,
            Err(LoginError::TooManyAttempts)
        );
    }
}
