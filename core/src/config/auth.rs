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
    /// A JSON Web Token (`auth.jwt`).
    Jwt,
    /// Ask the application over HTTP (`auth.http`).
    Http,
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
    /// `[auth.jwt]`: the `jwt` policy.
    pub jwt: JwtConfig,
    /// `[auth.http]`: the `http` policy.
    pub http: HttpAuthConfig,
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
            jwt: JwtConfig::default(),
            http: HttpAuthConfig::default(),
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

/// `[auth.jwt]`: the `jwt` policy, which accepts JSON Web Tokens from the Socket.IO `auth:
/// {token}` payload, `Authorization: Bearer` or a cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The algorithms accepted, such as `["HS256"]` or `["RS256", "ES256"]`; a token's `alg`
    /// must be one of them. `none` is never accepted, and HMAC and public-key algorithms cannot
    /// be mixed.
    pub algorithms: Vec<String>,
    /// The shared secret of the HS256/384/512 algorithms.
    pub secret: Secret,
    /// A PEM file with the public key (RSA, EC or Ed25519) of the RS/PS/ES/EdDSA algorithms.
    pub public_key_file: String,
    /// A JWKS URL publishing the public keys (by `kid`); fetched at start and cached.
    pub jwks_url: String,
    /// How long fetched keys are used before they are fetched again, in seconds.
    pub jwks_refresh_secs: u64,
    /// The least time between two fetches, in seconds: a token with an unknown `kid` causes a
    /// fetch at most this often.
    pub jwks_min_interval_secs: u64,
    /// Time limit of one JWKS fetch, in milliseconds.
    pub jwks_timeout_ms: u64,
    /// The `iss` a token must have; empty: not checked.
    pub issuer: String,
    /// The `aud` values accepted (a token must name one); empty: not checked.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The claim naming the principal.
    pub user_claim: String,
    /// A claim listing rooms the socket joins at connect; empty: none.
    pub rooms_claim: String,
    /// A claim listing room patterns the token may publish to through `POST /api/` (`"*"`:
    /// everyone); empty: tokens only connect, never publish.
    pub publish_claim: String,
    /// A cookie carrying the token, for browsers; empty: none.
    pub cookie_name: String,
    /// The longest token accepted, in bytes.
    pub max_token_bytes: usize,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithms: vec!["HS256".to_owned()],
            secret: Secret::default(),
            public_key_file: String::new(),
            jwks_url: String::new(),
            jwks_refresh_secs: 300,
            jwks_min_interval_secs: 30,
            jwks_timeout_ms: 2_000,
            issuer: String::new(),
            audience: Vec::new(),
            leeway_secs: 30,
            user_claim: "sub".to_owned(),
            rooms_claim: String::new(),
            publish_claim: String::new(),
            cookie_name: String::new(),
            max_token_bytes: 8_192,
        }
    }
}

/// `[auth.http]`: the `http` policy, which asks the application: a JSON request per connect (and
/// per publish, when `publish` is on) to `url`, answered 200 `{"user", "rooms"}` or 401/403.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAuthConfig {
    /// The application's endpoint, such as `http://127.0.0.1:5000/sidecast/auth`.
    pub url: String,
    /// Time limit of one request, in milliseconds; past it the caller is refused (retryable).
    pub timeout_ms: u64,
    /// The most requests in flight at once; more wait (within the time limit) for a slot.
    pub max_concurrency: usize,
    /// Whether publishes through `POST /api/` are asked too; off: the policy refuses them (403).
    pub publish: bool,
}

impl Default for HttpAuthConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_ms: 2_000,
            max_concurrency: 64,
            publish: false,
        }
    }
}
