//! `[admin]`: the namespace the Socket.IO Admin UI (`@socket.io/admin-ui`) connects to, its
//! credentials, what it may see and do, and where its static files are.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;

/// What the Admin UI is sent, as in socket.io's `instrument({mode})`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdminMode {
    /// The configuration and every node's `server_stats`; no socket lists, no socket events.
    Production,
    /// Also every socket of the cluster with its rooms (`all_sockets`), and their connections,
    /// disconnections, joins and leaves as they happen (decision 38: the default).
    #[default]
    Development,
}

impl AdminMode {
    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Development => "development",
        }
    }
}

/// `[admin]`: the Socket.IO Admin UI's namespace. Off by default; when on, a UI that logs in
/// with `username` and the password whose bcrypt hash is `password_hash` sees every node's
/// figures and (in development mode) every socket, and may move or disconnect sockets unless
/// `read_only`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin namespace (and the UI's files when `ui_dir` is set).
    pub enabled: bool,
    /// The namespace the UI connects to, on `server.socketio_path`; never one of
    /// `server.namespaces`.
    pub namespace: String,
    /// The user name the UI logs in with.
    pub username: String,
    /// The bcrypt hash of the password (`$2b$12$…`), made with `sidecast admin hash-password`
    /// or `htpasswd -nbBC 12 "" 'password' | cut -d: -f2`; never the password itself.
    pub password_hash: Secret,
    /// Advertise and accept no action (join, leave, disconnect): the UI only looks.
    pub read_only: bool,
    /// `"development"` (every socket, its rooms and its events) or `"production"` (figures only).
    pub mode: AdminMode,
    /// A folder holding the UI's built files (`node_modules/@socket.io/admin-ui/ui/dist`),
    /// served at `/admin/`; unset, nothing is served there (use the hosted UI).
    pub ui_dir: Option<PathBuf>,
    /// Origins of UIs served elsewhere that may connect (`"https://admin.socket.io"`): their
    /// handshakes pass the origin check with CORS credentials, for the admin namespace only.
    pub allowed_origins: Vec<String>,
    /// At most this many admin sockets connected to one node; more are refused.
    pub max_connections: usize,
    /// At most this many login attempts per minute on one node (each costs a bcrypt check);
    /// more are refused until the minute passes.
    pub login_attempts_per_minute: u32,
    /// At most this many actions (join, leave, disconnect) per minute from one admin socket;
    /// more are dropped with a warning.
    pub actions_per_minute: u32,
    /// How often every node sends its `server_stats`, in milliseconds (the UI expects 2000 and
    /// marks a node unhealthy after 10 s without them).
    pub stats_interval_ms: u64,
    /// How long a login stays valid for the UI's reload (its `sessionId`), in seconds.
    pub session_ttl_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            namespace: "/admin".to_owned(),
            username: "admin".to_owned(),
            password_hash: Secret::default(),
            read_only: false,
            mode: AdminMode::default(),
            ui_dir: None,
            allowed_origins: Vec::new(),
            max_connections: 10,
            login_attempts_per_minute: 30,
            actions_per_minute: 120,
            stats_interval_ms: 2000,
            // As socket.io's session stores (24 h).
            session_ttl_secs: 86_400,
        }
    }
}

/// The bcrypt hash prefixes the Admin UI's server side and Sidecast accept.
const BCRYPT_VERSIONS: [&str; 4] = ["$2a$", "$2b$", "$2x$", "$2y$"];

/// How to make a hash, said in every refusal of one.
pub const HASH_HOWTO: &str = "make one with `sidecast admin hash-password` (or `htpasswd -nbBC 12 \"\" 'your password' | cut -d: -f2`) and put the `$2b$...` string there";

/// Whether `hash` has the shape of a bcrypt hash: `$2b$` (or `$2a$`, `$2x$`, `$2y$`), a two-digit
/// cost from 04 to 31, `$`, then 53 characters of bcrypt's base64 (22 of salt, 31 of hash).
/// `Err` says what is wrong with it.
pub fn check_bcrypt_hash(hash: &str) -> Result<(), String> {
    if hash.is_empty() {
        return Err("is not set".to_owned());
    }
    let Some(rest) = BCRYPT_VERSIONS
        .iter()
        .find_map(|version| hash.strip_prefix(version))
    else {
        return Err(
            "is not a bcrypt hash (it must start with `$2b$`, `$2a$` or `$2y$`; a plain password \
             is never accepted)"
                .to_owned(),
        );
    };
    let (cost, digest) = rest.split_at_checked(2).unwrap_or(("", ""));
    let cost: u32 = cost
        .parse()
        .map_err(|_| "is not a bcrypt hash (no two-digit cost after the version)".to_owned())?;
    if !(4..=31).contains(&cost) {
        return Err(format!(
            "has the bcrypt cost {cost}; bcrypt costs run from 04 to 31"
        ));
    }
    let Some(digest) = digest.strip_prefix('$') else {
        return Err("is not a bcrypt hash (no `$` after the cost)".to_owned());
    };
    if digest.len() != 53
        || !digest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return Err(
            "is not a complete bcrypt hash (53 characters of salt and hash must follow the cost; \
             was it cut, or quoted so that `$` was expanded?)"
                .to_owned(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$04$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

    #[test]
    fn bcrypt_hashes_pass_and_the_rest_is_named() {
        assert_eq!(check_bcrypt_hash(HASH), Ok(()));
        assert_eq!(check_bcrypt_hash(&HASH.replacen("2b", "2y", 1)), Ok(()));
        assert!(check_bcrypt_hash("").unwrap_err().contains("not set"));
        assert!(
            check_bcrypt_hash("hunter2")
                .unwrap_err()
                .contains("plain password")
        );
        assert!(
            check_bcrypt_hash("$2b$99$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW")
                .unwrap_err()
                .contains("cost 99")
        );
        assert!(
            check_bcrypt_hash(&HASH[..40])
                .unwrap_err()
                .contains("53 characters")
        );
        assert!(check_bcrypt_hash("$2b$1").is_err());
        assert!(check_bcrypt_hash("$2b$xx$").is_err());
        assert!(check_bcrypt_hash("$argon2id$v=19$m=65536").is_err());
    }
}
