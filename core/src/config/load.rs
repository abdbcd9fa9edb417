//! Loading: built-in defaults < file < `SIDECAST_*` environment < command-line flags, with figment,
//! and figment's errors worded as "`key` in FILE: what is wrong".

use std::path::Path;

use figment::Figment;
use figment::error::{Kind, OneOf};
use figment::providers::{Env, Format, Serialized, Toml};

use super::suggest::{fields_at, nearest_key};
use super::{Config, ConfigError};

/// The default configuration file, read from the working directory when it exists.
pub const DEFAULT_FILE: &str = "sidecast.toml";

/// Environment variable prefix; `SIDECAST_BROKER__URL` sets `broker.url`.
pub const ENV_PREFIX: &str = "SIDECAST_";

/// The sections an environment variable may set; other `SIDECAST_*` variables (such as the test
/// suite's `SIDECAST_TEST_REDIS_URL`) are not configuration and are left alone.
const SECTIONS: &[&str] = &["server", "broker", "auth", "session", "log"];

impl Config {
    /// The figment of defaults < `file` (or `sidecast.toml` when it exists) < `SIDECAST_*`
    /// environment variables. Merge command-line flags on top, then call [`Config::from_figment`].
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.is_file() => return Err(ConfigError::FileNotFound(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_FILE));
            }
            None => {}
        }
        let env = Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
            // Keys are not lower-cased yet at this point.
            let key = key.as_str().to_ascii_lowercase();
            SECTIONS.iter().any(|s| {
                key.strip_prefix(s)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
        });
        Ok(figment.merge(env))
    }

    /// Loads defaults < file < environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(&Self::figment(file)?)
    }

    /// Extracts and validates a configuration.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(|e| {
            ConfigError::Invalid(
                e.into_iter()
                    .map(|e| describe(&e))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// One figment error as "`key` in FILE: what is wrong"; an unknown key with the valid key nearest
/// to it.
fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(src) => format!(" in {src}"),
            None => format!(" from {}", m.name),
        })
        .unwrap_or_default();
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            let fix = match nearest_key(&e.path, e.path.len().saturating_sub(1), expected) {
                Some(near) if fields_at(&near).is_some() => format!(
                    "rename it to `[{}]` if you mean that table, or remove it",
                    near.join(".")
                ),
                Some(near) => format!(
                    "rename it to `{}` if you mean that key, or remove it",
                    near.join(".")
                ),
                None => "remove it".to_owned(),
            };
            format!(
                "`{key}`{source} is no configuration key (unknown field `{field}`, expected {}): {fix}",
                OneOf(expected)
            )
        }
        _ if key.is_empty() => format!("{}{source}", e.kind),
        _ => format!("`{key}`{source}: {}", e.kind),
    }
}

/// The error of loading `toml` written to `file` in a fresh jail (`sidecast.toml` is read without
/// `--config`, any other file is given as if with `--config`).
#[cfg(test)]
// figment::Jail's closures return figment's large error type; that is its API.
#[allow(clippy::result_large_err)]
pub(super) fn load_refusal(file: &str, toml: &str) -> String {
    let mut refusal = String::new();
    figment::Jail::expect_with(|jail| {
        jail.create_file(file, toml)?;
        let given = (file != DEFAULT_FILE).then(|| Path::new(file));
        refusal = Config::load(given).unwrap_err().to_string();
        Ok(())
    });
    refusal
}

#[cfg(test)]
// figment::Jail's closures return figment's large error type; that is its API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use crate::config::BrokerKind;
    use figment::Jail;

    #[test]
    fn file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "sidecast.toml",
                r#"
                [server]
                bind = "127.0.0.1:7000"
                socketio_path = "/rt"
                [broker]
                kind = "memory"
                channel = "from-file"
                "#,
            )?;
            jail.set_env("SIDECAST_BROKER__CHANNEL", "from-env");
            jail.set_env("SIDECAST_SERVER__BIND", "127.0.0.1:7001");
            jail.set_env("SIDECAST_TEST_REDIS_URL", "redis://ignored");
            let figment = Config::figment(None).unwrap();
            let c = Config::from_figment(&figment).unwrap();
            assert_eq!(c.server.socketio_path, "/rt", "file beats defaults");
            assert_eq!(c.broker.kind, BrokerKind::Memory);
            assert_eq!(c.broker.channel, "from-env", "env beats file");
            assert_eq!(c.server.bind.to_string(), "127.0.0.1:7001");
            let flagged = figment.merge(("server.bind", "127.0.0.1:7002"));
            let c = Config::from_figment(&flagged).unwrap();
            assert_eq!(
                c.server.bind.to_string(),
                "127.0.0.1:7002",
                "flag beats env"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = load_refusal("custom.toml", "[broker]\nchanel = \"typo\"\n");
        assert!(err.contains("broker"), "{err}");
        assert!(err.contains("chanel"), "{err}");
        assert!(err.contains("custom.toml"), "{err}");
        assert!(err.contains("`broker.channel`"), "the nearest key: {err}");
        let err = load_refusal("sidecast.toml", "[auth.jwt]\nisuer = \"x\"\n");
        assert!(err.contains("`auth.jwt.issuer`"), "{err}");
        let err = load_refusal("sidecast.toml", "[servr]\nbind = \"0.0.0.0:80\"\n");
        assert!(err.contains("`[server]`"), "{err}");
    }

    #[test]
    fn bad_value_names_key_and_file() {
        let err = load_refusal("sidecast.toml", "[server]\nbind = \"localhost\"\n");
        assert!(err.contains("`server.bind`"), "{err}");
        assert!(err.contains("sidecast.toml"), "{err}");
        let err = load_refusal("sidecast.toml", "[broker]\nkind = \"kafka\"\n");
        assert!(err.contains("`broker.kind`"), "{err}");
        assert!(err.contains("redis"), "{err}");
    }

    #[test]
    fn env_typo_is_an_error_too() {
        Jail::expect_with(|jail| {
            jail.set_env("SIDECAST_SERVER__BINDD", "x");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("bindd"), "{err}");
            Ok(())
        });
    }
}
