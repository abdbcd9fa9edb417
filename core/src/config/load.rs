//! Loading: built-in defaults < file < `SIDECAST_*` environment < command-line flags, with figment,
//! and figment's errors worded as "`key` in FILE: what is wrong" (or "`key` from VARIABLE").

use std::path::Path;

use figment::error::{Kind, OneOf};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};

use super::suggest::{fields_at, nearest_key};
use super::{Config, ConfigError};

/// The default configuration file, read from the working directory when it exists.
pub const DEFAULT_FILE: &str = "sidecast.toml";

/// Environment variable prefix; `SIDECAST_BROKER__URL` sets `broker.url`.
pub const ENV_PREFIX: &str = "SIDECAST_";

/// The `SIDECAST_*` variables that are not configuration: the project's own tools read them (the
/// binary the end-to-end tests and the benchmark script run, the test suites' servers, the
/// benchmark script's options). A trailing `*` stands for any rest. Every other `SIDECAST_*`
/// variable must name a configuration key.
pub(crate) const TOOL_VARIABLES: &[&str] = &["SIDECAST_BIN", "SIDECAST_TEST_*", "SIDECAST_BENCH_*"];

/// The name of the environment's figment metadata, by which errors from it are recognized.
const ENV_SOURCE: &str = "the environment";

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
        if let Some(variable) = variable_with_an_empty_part() {
            return Err(ConfigError::Invalid(format!(
                "environment variable `{variable}` names no configuration key: a part between \
                 `__` is empty; name a key as in SIDECAST_SERVER__BIND, or unset the variable"
            )));
        }
        Ok(figment.merge(Environment))
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
                    .map(|e| describe(&e, figment))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// The `SIDECAST_*` variables, tool variables left out, `__` separating levels.
fn env() -> Env {
    Env::prefixed(ENV_PREFIX)
        // The key is the name without the prefix here, before `__` becomes `.`.
        .filter(|key| !is_tool_variable(&format!("{ENV_PREFIX}{key}")))
        .split("__")
}

/// Whether `name` is one of [`TOOL_VARIABLES`].
fn is_tool_variable(name: &str) -> bool {
    TOOL_VARIABLES
        .iter()
        .any(|tool| match tool.strip_suffix('*') {
            Some(prefix) => strip_prefix_ignoring_case(name, prefix).is_some(),
            None => name.eq_ignore_ascii_case(tool),
        })
}

/// `name` without `prefix`, whatever the case of either, as figment's [`Env::prefixed`] takes it.
fn strip_prefix_ignoring_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = name.get(prefix.len()..)?;
    name.get(..prefix.len())?
        .eq_ignore_ascii_case(prefix)
        .then_some(rest)
}

/// A `SIDECAST_*` variable with an empty part (`SIDECAST_SERVER__`): figment would skip it
/// silently, but it names no key.
fn variable_with_an_empty_part() -> Option<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .find(|name| {
            // As figment reads the name: trimmed, `__` as `.`, no part may be empty.
            strip_prefix_ignoring_case(name, ENV_PREFIX).is_some_and(|key| {
                !is_tool_variable(name)
                    && key.trim().replace("__", ".").split('.').any(str::is_empty)
            })
        })
}

/// The variable of `key`: `["server", "bind"]` is `SIDECAST_SERVER__BIND`.
fn variable(key: &[&str]) -> String {
    format!("{ENV_PREFIX}{}", key.join("__")).to_ascii_uppercase()
}

/// The `SIDECAST_*` variables as a figment provider whose metadata names a key's variable, so
/// that errors name what was set rather than the key it became.
struct Environment;

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE).interpolater(|_: &Profile, key: &[&str]| variable(key))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        env().data()
    }
}

/// One figment error as "`key` in FILE: what is wrong", or, for the environment, naming the
/// variable; an unknown key with the valid key nearest to it.
fn describe(e: &figment::Error, figment: &Figment) -> String {
    let key = e.path.join(".");
    let Some(metadata) = e.metadata.as_ref() else {
        return if key.is_empty() {
            e.kind.to_string()
        } else {
            format!("`{key}`: {}", e.kind)
        };
    };
    if metadata.name == ENV_SOURCE {
        let profile = e.profile.as_ref().unwrap_or(figment.profile());
        return describe_env(e, metadata, profile);
    }
    let source = match &metadata.source {
        Some(src) => format!(" in {src}"),
        None => format!(" from {}", metadata.name),
    };
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

/// An error from the environment, naming the variable(s) it comes from.
fn describe_env(e: &figment::Error, metadata: &Metadata, profile: &Profile) -> String {
    let variables = variables_of(&e.path);
    let Kind::UnknownField(field, expected) = &e.kind else {
        let named: Vec<String> = variables
            .iter()
            .map(|key| format!("`{}`", metadata.interpolate(profile, key)))
            .collect();
        return format!(
            "`{}` from {}: {}",
            e.path.join("."),
            named.join(", "),
            e.kind
        );
    };
    variables
        .iter()
        .map(|set| {
            let name = metadata.interpolate(profile, set);
            let at = e.path.len().saturating_sub(1);
            if set.len() < e.path.len() {
                // The unknown name is in the variable's value (a table or list in TOML syntax).
                let fix = match nearest_key(&e.path, at, expected) {
                    Some(near) => format!(
                        "write `{}` for `{field}` in its value if you mean `{}`, or remove it",
                        near[at],
                        near.join(".")
                    ),
                    None => format!("remove `{field}` from its value"),
                };
                return format!(
                    "environment variable `{name}` sets `{}`, which is no configuration key \
                     (unknown field `{field}`, expected {}): {fix}",
                    e.path.join("."),
                    OneOf(expected)
                );
            }
            // The variable may name more levels than the error: `servr.bind` is refused at
            // `servr`.
            let fix = match nearest_key(set, at, expected) {
                Some(near) if fields_at(&near).is_some() => format!(
                    "if you mean a key of `[{}]`, rename it to `{}__<KEY>`; otherwise unset it",
                    near.join("."),
                    metadata.interpolate(profile, &near),
                ),
                Some(near) => format!(
                    "rename it to `{}` if you mean `{}`, or unset it",
                    metadata.interpolate(profile, &near),
                    near.join(".")
                ),
                None => "unset it".to_owned(),
            };
            format!(
                "environment variable `{name}` names no configuration key (unknown field \
                 `{field}`, expected {}): {fix}",
                OneOf(expected)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The keys of the variables that set `path`, a table above it, or keys below it.
fn variables_of(path: &[String]) -> Vec<Vec<String>> {
    let mut keys: Vec<Vec<String>> = env()
        .iter()
        .map(|(key, _)| {
            key.as_str()
                .split('.')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|key: &Vec<String>| key.starts_with(path) || path.starts_with(key))
        .collect();
    if keys.is_empty() {
        // Changed since it was read: name the key's own variable.
        keys.push(path.to_vec());
    }
    keys.sort();
    keys
}

#[cfg(test)]
// figment::Jail's closures return figment's large error type; that is its API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use crate::config::BrokerKind;
    use crate::config::load_refusal;
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

    /// The refusal of the environment `vars` (none of which may be set already).
    fn env_refusal(vars: &[(&str, &str)]) -> String {
        let mut refusal = String::new();
        Jail::expect_with(|jail| {
            for (name, value) in vars {
                jail.set_env(name, value);
            }
            refusal = Config::load(None).unwrap_err().to_string();
            Ok(())
        });
        refusal
    }

    /// Scalar keys (bool, integer, string) of `table` and its sub-tables, with the value that
    /// proves a variable was read: a bool negated, an integer plus one, a string as it is.
    fn scalar_keys(
        table: &toml::Table,
        above: &[String],
        keys: &mut Vec<(Vec<String>, toml::Value)>,
    ) {
        for (name, value) in table {
            let mut key = above.to_vec();
            key.push(name.clone());
            let set = match value {
                toml::Value::Boolean(b) => toml::Value::Boolean(!b),
                toml::Value::Integer(i) => toml::Value::Integer(i + 1),
                toml::Value::String(_) => value.clone(),
                toml::Value::Table(sub) => {
                    scalar_keys(sub, &key, keys);
                    continue;
                }
                _ => continue,
            };
            keys.push((key, set));
        }
    }

    /// Every scalar key of every section, found in the serialized defaults (so that a new section
    /// or key is covered without a list to update), is read from `SIDECAST_<SECTION>__<KEY>`.
    #[test]
    fn every_key_is_read_from_its_variable() {
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        let mut keys = Vec::new();
        scalar_keys(&defaults, &[], &mut keys);
        for section in defaults.keys() {
            assert!(keys.iter().any(|(k, _)| &k[0] == section), "{section}");
        }
        // Keys not set by default are absent from the serialized defaults.
        for (key, value) in [
            ("broker.url", toml::Value::from("amqp://h:5673/%2f")),
            ("broker.start_timeout_ms", toml::Value::from(7)),
            (
                "server.client_js",
                toml::Value::from("/srv/socket.io.min.js"),
            ),
        ] {
            keys.push((key.split('.').map(str::to_owned).collect(), value));
        }
        Jail::expect_with(|jail| {
            for (key, value) in &keys {
                let name = format!("SIDECAST_{}", key.join("__")).to_uppercase();
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                jail.set_env(name, text);
            }
            let figment = Config::figment(None).unwrap();
            let config: Config = figment.extract().unwrap();
            let loaded = toml::Table::try_from(&config).unwrap();
            let mut not_read = Vec::new();
            for (key, set) in &keys {
                let name = format!("SIDECAST_{}", key.join("__")).to_uppercase();
                let dotted = key.join(".");
                let metadata = figment.find_metadata(&dotted).unwrap();
                let from = metadata.interpolate(figment.profile(), key);
                let value = key[1..].iter().try_fold(&loaded[&key[0]], |v, k| v.get(k));
                if metadata.name != ENV_SOURCE || from != name || value != Some(set) {
                    not_read.push(format!("{name}: {value:?} from {} ({from})", metadata.name));
                }
            }
            assert!(not_read.is_empty(), "variables not read: {not_read:#?}");
            Ok(())
        });
    }

    #[test]
    fn recovery_is_read_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env("SIDECAST_RECOVERY__ENABLED", "false");
            jail.set_env("SIDECAST_RECOVERY__MAX_EVENTS", "5");
            let c = Config::load(None).unwrap();
            assert!(!c.recovery.enabled);
            assert_eq!(c.recovery.max_events, 5);
            Ok(())
        });
    }

    #[test]
    fn unknown_variables_are_refused_with_the_nearest_key() {
        for (set, nearest, its_variable) in [
            (
                "SIDECAST_SERVR__BIND",
                "`server.bind`",
                "`SIDECAST_SERVER__BIND`",
            ),
            (
                "SIDECAST_SESSION__SECRT",
                "`session.secret`",
                "`SIDECAST_SESSION__SECRET`",
            ),
            (
                "SIDECAST_SERVER_BIND",
                "`server.bind`",
                "`SIDECAST_SERVER__BIND`",
            ),
            (
                "SIDECAST_RECOVERY_ENABLED",
                "`recovery.enabled`",
                "`SIDECAST_RECOVERY__ENABLED`",
            ),
            (
                "SIDECAST_AUTH__JWT_ISSUER",
                "`auth.jwt.issuer`",
                "`SIDECAST_AUTH__JWT__ISSUER`",
            ),
            (
                "SIDECAST_AUTH__TOKNS__ALICE",
                "`auth.tokens.alice`",
                "`SIDECAST_AUTH__TOKENS__ALICE`",
            ),
        ] {
            let err = env_refusal(&[(set, "0.0.0.0:80")]);
            assert!(err.contains(&format!("`{set}`")), "{set}: {err}");
            assert!(err.contains(nearest), "{set}: {err}");
            assert!(err.contains(its_variable), "{set}: {err}");
        }
        let err = env_refusal(&[("SIDECAST_SERVER__", "x")]);
        assert!(err.contains("`SIDECAST_SERVER__`"), "{err}");
        // A variable of a table, not of a key: name the table's keys' variables.
        let err = env_refusal(&[("SIDECAST_SERVERS", "x")]);
        assert!(err.contains("`SIDECAST_SERVER__<KEY>`"), "{err}");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = env_refusal(&[("SIDECAST_SERVER__BIND", "localhost")]);
        assert!(err.contains("`SIDECAST_SERVER__BIND`"), "{err}");
        assert!(err.contains("`server.bind`"), "{err}");
        let err = env_refusal(&[("SIDECAST_BROKER__INGRESS", r#"[{format="kafka"}]"#)]);
        assert!(err.contains("`SIDECAST_BROKER__INGRESS`"), "{err}");
        // An unknown key inside a variable's value.
        let err = env_refusal(&[(
            "SIDECAST_BROKER__INGRESS",
            r#"[{format="node-emitter", chanel="app"}]"#,
        )]);
        assert!(err.contains("`SIDECAST_BROKER__INGRESS`"), "{err}");
        assert!(err.contains("write `channel` for `chanel`"), "{err}");
    }

    #[test]
    fn tool_variables_are_not_configuration() {
        Jail::expect_with(|jail| {
            jail.set_env("SIDECAST_BIN", "/usr/local/bin/sidecast");
            jail.set_env("SIDECAST_TEST_REDIS_URL", "redis://127.0.0.1:6390");
            jail.set_env("SIDECAST_BENCH_OUT", "/tmp/bench");
            assert_eq!(Config::load(None).unwrap(), Config::default());
            Ok(())
        });
        // Only the tool variable itself: `SIDECAST_BINARY` is no tool's.
        let err = env_refusal(&[("SIDECAST_BINARY", "x")]);
        assert!(err.contains("`SIDECAST_BINARY`"), "{err}");
    }
}
