//! `[session]`: cookie sessions and where they are stored.

use serde::{Deserialize, Serialize};

use super::Secret;

/// Where sessions live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStoreKind {
    /// In a signed cookie: stateless, any node with the same secret accepts it.
    #[default]
    Cookie,
    /// In this process's memory.
    Memory,
    /// In Redis: server-side, revocable, shared by every node.
    Redis,
}

/// `[session]`: cookie sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// `"cookie"`, `"memory"` or `"redis"`.
    pub store: SessionStoreKind,
    /// Redis URL of the `redis` store; empty means `broker.url` when the broker is Redis.
    pub url: String,
    /// Key that signs session cookies, at least 32 bytes. Empty: a random key per process (a
    /// warning says so), which logs everybody out on restart and does not work across nodes.
    pub secret: Secret,
    /// Name of the session cookie.
    pub cookie_name: String,
    /// Whether the cookie is marked `Secure` (sent over HTTPS only). Turn on behind TLS.
    pub secure: bool,
    /// How long one operation of the `redis` store may take, in milliseconds; past it the request
    /// counts as logged out rather than hanging.
    pub timeout_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            store: SessionStoreKind::default(),
            url: String::new(),
            secret: Secret::default(),
            cookie_name: "sidecast.session".to_owned(),
            secure: false,
            timeout_ms: 1_000,
        }
    }
}
