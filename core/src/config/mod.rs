//! Configuration: serde types and their loading with figment.
//!
//! Precedence, lowest first: built-in defaults < `sidecast.toml` (or the file given with
//! `--config`) < environment variables `SIDECAST_<SECTION>__<KEY>` < command-line flags (merged by
//! the caller with [`Figment::merge`]). Unknown keys are errors that name the key and the file.
//!
//! [`Figment::merge`]: figment::Figment::merge

// One file per section (`[server]`, `[broker]` with its ingress, `[auth]`, `[session]`, `[log]`,
// `[recovery]`, `[presence]`, `[admin]`), plus `load` (figment), `suggest` (the valid key nearest
// to an unknown one) and
// `validate` (the checks across keys); everything is re-exported here, so that every type is
// `sidecast_core::config::Name`.
mod admin;
mod auth;
mod broker;
mod load;
mod log;
mod presence;
mod recovery;
mod secret;
mod server;
mod session;
mod suggest;
mod validate;

use serde::{Deserialize, Serialize};

pub use admin::{AdminConfig, AdminMode, HASH_HOWTO, check_bcrypt_hash};
pub use auth::{
    AuthConfig, FLASK_SESSION_LIFETIME_SECS, FlaskSessionConfig, HttpAuthConfig, JwtConfig,
    PolicyKind, PolicyList,
};
pub use broker::{BrokerConfig, BrokerKind, IngressConfig, IngressFormat, UrlOrder};
pub use load::{DEFAULT_FILE, ENV_PREFIX};
pub use log::{LogConfig, LogFormat};
pub use presence::PresenceConfig;
pub use recovery::RecoveryConfig;
pub use secret::Secret;
pub use server::{DEFAULT_CLIENT_JS_URL, ServerConfig, SlowClientPolicy};
pub use session::{SessionConfig, SessionStoreKind};
pub use validate::ConfigError;

/// The whole configuration of a Sidecast node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP and Socket.IO server.
    pub server: ServerConfig,
    /// The message queue every node subscribes to.
    pub broker: BrokerConfig,
    /// Who may connect and publish.
    pub auth: AuthConfig,
    /// Cookie sessions.
    pub session: SessionConfig,
    /// Logging.
    pub log: LogConfig,
    /// The history events go through, and what reconnecting clients recover.
    pub recovery: RecoveryConfig,
    /// Cluster-wide presence: who is in which room (opt-in).
    pub presence: PresenceConfig,
    /// The Socket.IO Admin UI's namespace (off by default).
    pub admin: AdminConfig,
}

impl Config {
    /// A copy with every secret replaced by `***`, for printing.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.session.secret = c.session.secret.redacted();
        c.broker.signing_key = c.broker.signing_key.redacted();
        c.session.url = crate::broker::redact_url(&c.session.url);
        c.admin.password_hash = c.admin.password_hash.redacted();
        c.broker.url = c.broker.url.as_deref().map(crate::broker::redact_url);
        c.auth.tokens.values_mut().for_each(|t| *t = t.redacted());
        let flask = &mut c.auth.flask_session;
        flask.secret_key = flask.secret_key.redacted();
        flask
            .fallback_keys
            .iter_mut()
            .for_each(|k| *k = k.redacted());
        c
    }

    /// `broker.url` in effect (the default of `broker.kind` when unset), password redacted.
    pub fn redacted_broker_url(&self) -> String {
        crate::broker::redact_url(self.broker.effective_url())
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// The error of loading `toml` written to `file` in a fresh jail (`sidecast.toml` is read without
/// `--config`, any other file is given as if with `--config`).
#[cfg(test)]
// figment::Jail's closures return figment's large error type; that is its API.
#[allow(clippy::result_large_err)]
pub(crate) fn load_refusal(file: &str, toml: &str) -> String {
    let mut refusal = String::new();
    figment::Jail::expect_with(|jail| {
        jail.create_file(file, toml)?;
        let given = (file != DEFAULT_FILE).then(|| std::path::Path::new(file));
        refusal = Config::load(given).unwrap_err().to_string();
        Ok(())
    });
    refusal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_original() {
        let c = Config::default();
        assert_eq!(c.server.bind.to_string(), "127.0.0.1:5000");
        assert_eq!(c.server.socketio_path, "/ws/socket.io");
        assert_eq!(c.broker.kind, BrokerKind::Redis);
        assert_eq!(c.broker.effective_url(), "redis://127.0.0.1:6379");
        assert_eq!(c.broker.channel, "sidecast");
        assert_eq!(c.auth.demo_user, "Gonzalo");
        assert_eq!(c.session.store, SessionStoreKind::Cookie);
        c.validate().unwrap();
    }

    #[test]
    fn redaction_hides_secrets() {
        let mut c = Config::default();
        c.session.secret = Secret::new("x".repeat(40));
        c.broker.signing_key = "signing-key".into();
        c.admin.password_hash =
            "$2b$04$adminhashadminhashadminhashadminhashadminhashadminhas".into();
        c.broker.url = Some("redis://u:pw@h:1".into());
        c.auth.tokens.insert("cron".into(), "tok".into());
        let shown = c.redacted().to_toml();
        assert!(!shown.contains(&"x".repeat(40)));
        assert!(!shown.contains("signing-key"));
        assert!(
            !shown.contains("adminhash"),
            "the admin password hash is redacted"
        );
        assert!(!format!("{c:?}").contains("adminhash"));
        assert!(
            !format!("{c:?}").contains("signing-key"),
            "Debug hides secrets"
        );
        assert!(!format!("{c:?}").contains("tok\""), "Debug hides tokens");
        assert!(!shown.contains("pw"));
        assert!(!shown.contains("tok\""));
        assert!(shown.contains("***"));
    }

    #[test]
    fn redaction_hides_cluster_passwords() {
        let mut c = Config::default();
        c.broker.url = Some("redis+cluster://u:hunter2@h1:7000,h2:7000".into());
        c.session.url = "rediss+cluster://:hunter3@h1:7000".into();
        let shown = c.redacted().to_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        assert!(
            shown.contains("redis+cluster://u:***@h1:7000,h2:7000"),
            "{shown}"
        );
        assert!(!c.redacted_broker_url().contains("hunter2"));
    }
}

#[cfg(test)]
mod doc_tests {
    use std::path::PathBuf;

    use super::*;

    /// Every key of the configuration is documented in docs/configuration.md with its
    /// environment variable.
    #[test]
    fn configuration_doc_lists_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        let mut config = Config::default();
        // Optional keys are absent from the serialized defaults; give them a value to list them.
        config.broker.url = Some(String::new());
        config.broker.start_timeout_ms = Some(0);
        config.server.client_js = Some(PathBuf::from("x"));
        config.admin.ui_dir = Some(PathBuf::from("x"));
        config.broker.ingress = vec![IngressConfig {
            format: IngressFormat::PythonSocketio,
            channel: Some("x".into()),
        }];
        let value = toml::Value::try_from(&config).unwrap();
        let mut missing = Vec::new();
        for (section, table) in value.as_table().unwrap() {
            assert!(
                doc.contains(&format!("## `[{section}]`")),
                "section {section}"
            );
            for (key, value) in table.as_table().unwrap() {
                let env = format!("SIDECAST_{}__{}", section, key).to_uppercase();
                if !doc.contains(&format!("| `{key}` |")) || !doc.contains(&env) {
                    missing.push(format!("{section}.{key} ({env})"));
                }
                // Sub-tables (`[auth.flask_session]`) have a section of their own, listing every
                // key with its environment variable.
                if let Some(sub) = value.as_table().filter(|t| !t.is_empty()) {
                    let heading = format!("## `[{section}.{key}]`");
                    let Some(at) = doc.find(&heading) else {
                        missing.push(heading);
                        continue;
                    };
                    let part = &doc[at..];
                    let part = &part[..part[3..].find("\n## ").map_or(part.len(), |end| end + 3)];
                    for name in sub.keys() {
                        let env = format!("SIDECAST_{section}__{key}__{name}").to_uppercase();
                        if !part.contains(&format!("| `{name}` |")) || !part.contains(&env) {
                            missing.push(format!("{section}.{key}.{name} ({env})"));
                        }
                    }
                    continue;
                }
                // Arrays of tables (`[[broker.ingress]]`) have a section of their own.
                let Some(first) = value.as_array().and_then(|a| a.first()) else {
                    continue;
                };
                let Some(entry) = first.as_table() else {
                    continue;
                };
                let heading = format!("## `[[{section}.{key}]]`");
                let Some(at) = doc.find(&heading) else {
                    missing.push(heading);
                    continue;
                };
                let part = &doc[at..];
                let part = &part[..part[3..].find("\n## ").map_or(part.len(), |end| end + 3)];
                for sub in entry.keys() {
                    if !part.contains(&format!("| `{sub}` |")) {
                        missing.push(format!("{section}.{key}[].{sub}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    }

    /// The `SIDECAST_*` variables that are not configuration are documented as such.
    #[test]
    fn configuration_doc_lists_the_tool_variables() {
        let doc = include_str!("../../../docs/configuration.md");
        for tool in load::TOOL_VARIABLES {
            assert!(doc.contains(&format!("| `{tool}` |")), "{tool}");
        }
    }
}
