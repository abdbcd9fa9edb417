//! `[auth]`: who may connect and publish.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Secret;

/// A built-in authorization policy, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// The session has a user (the original's rule).
    Session,
    /// A bearer token from `auth.tokens`.
    Token,
    /// Everybody; for development.
    AllowAll,
    /// The signed `session` cookie of a Flask application (`auth.flask_session`).
    FlaskSession,
}

/// One policy name or a list of them (meaning: any of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PolicyList {
    /// One policy.
    One(PolicyKind),
    /// Any of several policies, tried in order.
    Any(Vec<PolicyKind>),
}

impl PolicyList {
    /// The policies, in order.
    pub fn kinds(&self) -> &[PolicyKind] {
        match self {
            Self::One(kind) => std::slice::from_ref(kind),
            Self::Any(kinds) => kinds,
        }
    }
}

/// `[auth]`: who may connect and publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `"session"`, `"token"`, `"allow-all"`, or a list of them meaning "any of".
    pub policy: PolicyList,
    /// Bearer tokens for the `token` policy: principal name = token.
    pub tokens: BTreeMap<String, Secret>,
    /// Whether `GET /login` (the demo login of the original application) is served.
    pub demo_login: bool,
    /// The user `GET /login` logs in.
    pub demo_user: String,
    /// Lets the `allow-all` policy run on an address other than loopback. Off: such a server
    /// refuses to start, since anybody who can reach it could publish.
    pub allow_all_public: bool,
    /// Room patterns a logged-in page may join and leave for its own sockets through
    /// `POST /api/rooms` (`"to": "user:<name>"`): `*` matches any text, `{user}` is the user's
    /// name (`["game:*", "team:{user}"]`). Empty: pages operate no rooms; services use a token.
    pub session_rooms: Vec<String>,
    /// `[auth.flask_session]`: the `flask-session` policy.
    pub flask_session: FlaskSessionConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            policy: PolicyList::One(PolicyKind::Session),
            tokens: BTreeMap::new(),
            demo_login: true,
            demo_user: "Gonzalo".to_owned(),
            allow_all_public: false,
            session_rooms: Vec::new(),
            flask_session: FlaskSessionConfig::default(),
        }
    }
}

/// Flask's default `PERMANENT_SESSION_LIFETIME`: 31 days, in seconds.
pub const FLASK_SESSION_LIFETIME_SECS: u64 = 31 * 24 * 60 * 60;

/// `[auth.flask_session]`: the `flask-session` policy, which accepts the signed session cookie of
/// a Flask application (Flask's default `SecureCookieSessionInterface`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlaskSessionConfig {
    /// The Flask application's `SECRET_KEY`.
    pub secret_key: Secret,
    /// Older keys still accepted (Flask's `SECRET_KEY_FALLBACKS`), for rotating the key.
    pub fallback_keys: Vec<Secret>,
    /// The cookie's name (Flask's `SESSION_COOKIE_NAME`).
    pub cookie_name: String,
    /// The itsdangerous salt (`SecureCookieSessionInterface.salt`).
    pub salt: String,
    /// The session key holding the user's name (`session['user']` in the original).
    pub user_key: String,
    /// A session key holding a list of rooms the socket joins at connect; empty: none.
    pub rooms_key: String,
    /// How old a cookie may be, in seconds (Flask's `PERMANENT_SESSION_LIFETIME`).
    pub max_age_secs: u64,
}

impl Default for FlaskSessionConfig {
    fn default() -> Self {
        Self {
            secret_key: Secret::default(),
            fallback_keys: Vec::new(),
            cookie_name: "session".to_owned(),
            salt: "cookie-session".to_owned(),
            user_key: "user".to_owned(),
            rooms_key: String::new(),
            max_age_secs: FLASK_SESSION_LIFETIME_SECS,
        }
    }
}
