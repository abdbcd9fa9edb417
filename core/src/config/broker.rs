//! `[broker]` and `[[broker.ingress]]`: the message queue, and the channels in other emitters'
//! formats that nodes also read.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Secret;

/// Which message queue carries events between processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// Redis pub/sub (the default, as in the original application).
    #[default]
    Redis,
    /// AMQP 0.9.1 (RabbitMQ).
    Amqp,
    /// In-process only: events cannot come from other processes.
    Memory,
}

impl BrokerKind {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Amqp => "amqp",
            Self::Memory => "memory",
        }
    }

    /// The URL used when `broker.url` is not set.
    pub fn default_url(self) -> &'static str {
        match self {
            Self::Redis => "redis://127.0.0.1:6379",
            Self::Amqp => "amqp://guest:guest@127.0.0.1:5672/%2f",
            Self::Memory => "memory://",
        }
    }
}

impl fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[broker]`: the message queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `"redis"`, `"amqp"` or `"memory"`.
    pub kind: BrokerKind,
    /// The broker's URL; when not set, the default of `kind` (`redis://127.0.0.1:6379`,
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`). For `kind = "amqp"` it may name several nodes
    /// of a RabbitMQ cluster: a TOML list, or one string with the URLs separated by commas (the
    /// form of the environment variable); a list is kept in the comma form
    /// ([`crate::broker::url_list`] splits it). See `url_order` and decision 32.
    #[serde(deserialize_with = "url_or_list")]
    pub url: Option<String>,
    /// AMQP with several URLs: the order in which they are tried on every (re)connect,
    /// `"in-order"` (the default: the first that answers, then on to the next when it is
    /// lost) or `"shuffle"` (a new random order each time, so that nodes spread over the
    /// cluster). Other brokers ignore it.
    pub url_order: UrlOrder,
    /// The channel (Redis) or fanout exchange (AMQP) carrying Sidecast's own messages.
    pub channel: String,
    /// How long a publish may take before it fails, in milliseconds.
    pub publish_timeout_ms: u64,
    /// How long connecting to the broker may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long a node that starts while its broker is unavailable waits for it, in
    /// milliseconds. Not set (the default): it waits as long as it takes, serving `/healthz` and
    /// answering 503 meanwhile; `0`: it fails at once, as before decision 21; `N`: it fails after
    /// `N` ms. Permanent errors (a bad URL, refused credentials, a mismatched setting) fail at
    /// once whatever this says.
    pub start_timeout_ms: Option<u64>,
    /// Messages a node buffers between the broker and the sockets; beyond that, messages are
    /// dropped and counted rather than stalling the broker connection.
    pub subscription_capacity: usize,
    /// Key that signs and verifies Sidecast's bus messages. Empty: messages are not signed. When
    /// set, nodes drop (and count) unsigned, altered, stale and replayed messages.
    pub signing_key: Secret,
    /// How far a signed message's time may be from a node's clock, in milliseconds.
    pub signing_max_age_ms: u64,
    /// Channels in other emitters' formats that nodes also emit to their clients
    /// (`[[broker.ingress]]`), so that python-socketio / Flask-SocketIO programs and Node's
    /// `@socket.io/redis-emitter` reach Sidecast's clients unchanged. Empty: none.
    pub ingress: Vec<IngressConfig>,
    /// Lets ingress channels run on a signed bus (`signing_key` set). Their formats cannot be
    /// signed, so anybody who can publish on them reaches the sockets; off, such a configuration is
    /// refused at start.
    pub ingress_unsigned_ok: bool,
    /// AMQP only: declare the fanout exchanges durable. Off, as python-socketio / Flask-SocketIO
    /// (kombu) declare theirs; turn it on when the exchanges already exist as durable ones
    /// (RabbitMQ refuses a declaration whose durability differs). Other brokers ignore it.
    pub durable_exchanges: bool,
    /// Redis only: an append to the history (an event accepted with recovery on) is
    /// acknowledged only once this many replicas of the Redis master confirmed it (`WAIT`);
    /// fewer within `replica_timeout_ms` fails it as unavailable (503 from `/api/`). `0` (the
    /// default): acknowledged once the master holds it. Needs `recovery.enabled` (pub/sub
    /// keeps nothing to replicate). See docs/deploying.md and decision 30.
    pub min_replicas: u32,
    /// How long an append waits for `min_replicas` replicas, in milliseconds; must be below
    /// `publish_timeout_ms`, which bounds the whole append.
    pub replica_timeout_ms: u64,
    /// AMQP only: how many RabbitMQ nodes hold a replica of each history stream queue
    /// (`x-initial-cluster-size`, applied when the queue is first declared; RabbitMQ places no
    /// more than the cluster has). Default 3. See decision 33.
    pub stream_replicas: u16,
}

/// The order in which several broker URLs are tried (`broker.url_order`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UrlOrder {
    /// As listed: each (re)connect starts at the URL after the one last connected to.
    #[default]
    InOrder,
    /// In a new random order on each round of attempts.
    Shuffle,
}

impl UrlOrder {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InOrder => "in-order",
            Self::Shuffle => "shuffle",
        }
    }
}

impl fmt::Display for UrlOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `broker.url` as one string or a list of strings; a list is joined with commas, the form
/// the environment variable takes, so that the rest of the configuration sees one string.
fn url_or_list<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Ok(None),
        Some(OneOrMany::One(url)) => Ok(Some(url)),
        Some(OneOrMany::Many(urls)) => {
            if let Some(url) = urls.iter().find(|url| url.contains(',')) {
                return Err(serde::de::Error::custom(format!(
                    "a URL in the list has a comma ({}); give one URL per entry, and write a \
                     comma inside a password as %2C",
                    crate::broker::redact_url(url)
                )));
            }
            Ok(Some(urls.join(",")))
        }
    }
}

/// The message-queue format of an existing emitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IngressFormat {
    /// python-socketio / Flask-SocketIO (python-socketio 5.14 or later: JSON), on Redis or AMQP.
    PythonSocketio,
    /// Node's `@socket.io/redis-emitter` (msgpack), on Redis only.
    NodeEmitter,
}

impl IngressFormat {
    /// The name used in configuration and in the `source` label of metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PythonSocketio => crate::ingress::python_socketio::FORMAT,
            Self::NodeEmitter => crate::ingress::node_emitter::FORMAT,
        }
    }

    /// The channel used when `channel` is not set: `flask-socketio` (Flask-SocketIO's default)
    /// or `socket.io` (the emitter's default `key`).
    pub fn default_channel(self) -> &'static str {
        match self {
            Self::PythonSocketio => crate::ingress::python_socketio::DEFAULT_CHANNEL,
            Self::NodeEmitter => crate::ingress::node_emitter::DEFAULT_KEY,
        }
    }
}

impl fmt::Display for IngressFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[broker.ingress]]`: one channel in an existing emitter's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressConfig {
    /// `"python-socketio"` or `"node-emitter"`.
    pub format: IngressFormat,
    /// python-socketio: the Redis channel or AMQP fanout exchange (the `channel` given to
    /// Flask-SocketIO / python-socketio), default `flask-socketio`. node-emitter: the emitter's
    /// `key`, default `socket.io`; nodes subscribe to the pattern `<key>#*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl IngressConfig {
    /// An ingress of `format` on its default channel.
    pub fn new(format: IngressFormat) -> Self {
        Self {
            format,
            channel: None,
        }
    }

    /// The channel in effect: `channel`, or the default of `format`.
    pub fn channel(&self) -> &str {
        self.channel
            .as_deref()
            .unwrap_or(self.format.default_channel())
    }

    /// What nodes subscribe to: the channel itself (python-socketio), or every channel of the
    /// emitter's key, `<key>#*` (node-emitter).
    pub fn channel_spec(&self) -> crate::ChannelSpec {
        match self.format {
            IngressFormat::PythonSocketio => crate::ChannelSpec::exact(self.channel()),
            IngressFormat::NodeEmitter => {
                crate::ChannelSpec::pattern(crate::ingress::node_emitter::pattern(self.channel()))
            }
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::default(),
            url: None,
            url_order: UrlOrder::default(),
            channel: "sidecast".to_owned(),
            publish_timeout_ms: 2_000,
            connect_timeout_ms: 3_000,
            start_timeout_ms: None,
            subscription_capacity: 4_096,
            signing_key: Secret::default(),
            signing_max_age_ms: 60_000,
            ingress: Vec::new(),
            ingress_unsigned_ok: false,
            durable_exchanges: false,
            min_replicas: 0,
            replica_timeout_ms: 500,
            stream_replicas: 3,
        }
    }
}

impl BrokerConfig {
    /// The URL to connect to: `url`, or the default of `kind`.
    pub fn effective_url(&self) -> &str {
        self.url.as_deref().unwrap_or(self.kind.default_url())
    }
}

#[cfg(test)]
// figment::Jail's closures return figment's large error type; that is its API.
#[allow(clippy::result_large_err)]
mod ingress_tests {
    use super::*;
    use crate::ChannelSpec;
    use crate::config::Config;
    use crate::config::load_refusal;
    use figment::Jail;

    #[test]
    fn ingress_from_the_file_with_default_channels() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "sidecast.toml",
                r#"
                [[broker.ingress]]
                format = "python-socketio"

                [[broker.ingress]]
                format = "node-emitter"

                [[broker.ingress]]
                format = "python-socketio"
                channel = "jobs"
                "#,
            )?;
            let c = Config::load(None).unwrap();
            let ingress = &c.broker.ingress;
            assert_eq!(ingress.len(), 3);
            assert_eq!(ingress[0].channel(), "flask-socketio");
            assert_eq!(
                ingress[0].channel_spec(),
                ChannelSpec::exact("flask-socketio")
            );
            assert_eq!(ingress[1].format, IngressFormat::NodeEmitter);
            assert_eq!(ingress[1].channel(), "socket.io");
            assert_eq!(
                ingress[1].channel_spec(),
                ChannelSpec::pattern("socket.io#*")
            );
            assert_eq!(ingress[2].channel(), "jobs");
            // `sidecast config` shows what was given.
            assert!(c.to_toml().contains("[[broker.ingress]]"));
            Ok(())
        });
    }

    #[test]
    fn ingress_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "SIDECAST_BROKER__INGRESS",
                r#"[{format="python-socketio"}, {format="node-emitter", channel="app"}]"#,
            );
            let c = Config::load(None).unwrap();
            assert_eq!(
                c.broker.ingress[0],
                IngressConfig::new(IngressFormat::PythonSocketio)
            );
            assert_eq!(c.broker.ingress[1].channel(), "app");
            Ok(())
        });
    }

    #[test]
    fn bad_ingress_names_the_key_and_the_fix() {
        let err = load_refusal(
            "sidecast.toml",
            "[[broker.ingress]]\nformat = \"socket.io-php\"\n",
        );
        assert!(err.contains("broker.ingress"), "{err}");
        assert!(err.contains("python-socketio"), "{err}");
        let err = load_refusal(
            "sidecast.toml",
            "[[broker.ingress]]\nformat = \"node-emitter\"\nchanel = \"x\"\n",
        );
        assert!(err.contains("chanel"), "{err}");
    }

    fn with(ingress: &[(IngressFormat, Option<&str>)]) -> Config {
        let mut c = Config::default();
        c.broker.ingress = ingress
            .iter()
            .map(|&(format, channel)| IngressConfig {
                format,
                channel: channel.map(str::to_owned),
            })
            .collect();
        c
    }

    fn refusal(c: &Config) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn validation_rules() {
        use IngressFormat::{NodeEmitter, PythonSocketio};
        with(&[(PythonSocketio, None), (NodeEmitter, None)])
            .validate()
            .unwrap();

        let mut amqp = with(&[(PythonSocketio, None), (NodeEmitter, None)]);
        amqp.broker.kind = BrokerKind::Amqp;
        let err = refusal(&amqp);
        assert!(err.contains("`broker.ingress[1]`"), "{err}");
        assert!(err.contains("needs Redis"), "{err}");
        amqp.broker.ingress.pop();
        amqp.validate().unwrap();

        let err = refusal(&with(&[(PythonSocketio, Some(""))]));
        assert!(
            err.contains("empty channel") && err.contains("flask-socketio"),
            "{err}"
        );
        let err = refusal(&with(&[(PythonSocketio, Some("sidecast"))]));
        assert!(err.contains("Sidecast's own"), "{err}");
        let err = refusal(&with(&[(NodeEmitter, Some("sidecast:control"))]));
        assert!(err.contains("Sidecast's own"), "{err}");
        let err = refusal(&with(&[
            (PythonSocketio, None),
            (PythonSocketio, Some("flask-socketio")),
        ]));
        assert!(err.contains("repeats"), "{err}");
    }

    #[test]
    fn a_signed_bus_takes_ingress_only_when_told() {
        let mut c = with(&[(IngressFormat::PythonSocketio, None)]);
        c.broker.signing_key = "key".into();
        let err = refusal(&c);
        assert!(err.contains("broker.ingress_unsigned_ok = true"), "{err}");
        c.broker.ingress_unsigned_ok = true;
        c.validate().unwrap();
    }
}

#[cfg(test)]
// figment::Jail's closures return figment's large error type; that is its API.
#[allow(clippy::result_large_err)]
mod url_list_tests {
    use super::*;
    use crate::broker::url_list;
    use crate::config::Config;
    use crate::config::load_refusal;
    use figment::Jail;

    #[test]
    fn several_amqp_urls_as_a_toml_list() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "sidecast.toml",
                r#"
                [broker]
                kind = "amqp"
                url = ["amqp://u:hunter2@a:5672/%2f", "amqp://u:hunter2@b:5673/%2f"]
                url_order = "shuffle"
                "#,
            )?;
            let c = Config::load(None).unwrap();
            let url = c.broker.url.as_deref().unwrap();
            assert_eq!(
                url_list(url),
                ["amqp://u:hunter2@a:5672/%2f", "amqp://u:hunter2@b:5673/%2f"]
            );
            assert_eq!(c.broker.url_order, UrlOrder::Shuffle);
            let shown = c.redacted().to_toml();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("amqp://u:***@b:5673/%2f"), "{shown}");
            assert!(!c.redacted_broker_url().contains("hunter2"));
            Ok(())
        });
    }

    #[test]
    fn several_amqp_urls_from_the_environment_separated_by_commas() {
        Jail::expect_with(|jail| {
            jail.set_env("SIDECAST_BROKER__KIND", "amqp");
            jail.set_env(
                "SIDECAST_BROKER__URL",
                "amqp://u:pw@a:5672/%2f, amqp://u:pw@b:5673/%2f,amqps://c",
            );
            let c = Config::load(None).unwrap();
            assert_eq!(url_list(c.broker.url.as_deref().unwrap()).len(), 3);
            assert_eq!(c.broker.url_order, UrlOrder::InOrder, "the default");
            Ok(())
        });
    }

    #[test]
    fn one_url_is_unchanged() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "sidecast.toml",
                "[broker]\nkind = \"amqp\"\nurl = \"amqp://u:p@h:5672/%2f\"\n",
            )?;
            let c = Config::load(None).unwrap();
            assert_eq!(c.broker.url.as_deref(), Some("amqp://u:p@h:5672/%2f"));
            Ok(())
        });
    }

    #[test]
    fn a_bad_entry_is_named_by_its_place_with_the_password_redacted() {
        let err = load_refusal(
            "sidecast.toml",
            "[broker]\nkind = \"amqp\"\nurl = [\"amqp://u:hunter2@a\", \"redis://u:hunter2@b\", \"amqp://c\"]\n",
        );
        assert!(err.contains("entry 2 of 3 of `broker.url`"), "{err}");
        assert!(err.contains("scheme must be amqp"), "{err}");
        assert!(err.contains("SIDECAST_BROKER__URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        for (url, why) in [
            ("amqp://a,", "is empty"),
            ("amqp://a,amqp://:1", "has no host"),
            (
                "amqp://a,amqp://u:hunter2@b:port",
                "port that is not a number",
            ),
            ("amqp://u:hunter2@[::1", "unclosed"),
        ] {
            let err = load_refusal(
                "sidecast.toml",
                &format!("[broker]\nkind = \"amqp\"\nurl = \"{url}\"\n"),
            );
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = load_refusal(
            "sidecast.toml",
            "[broker]\nkind = \"amqp\"\nurl = [\"amqp://a,amqp://b\"]\n",
        );
        assert!(err.contains("one URL per entry"), "{err}");
        let err = load_refusal(
            "sidecast.toml",
            "[broker]\nkind = \"amqp\"\nurl_order = \"random\"\n",
        );
        assert!(err.contains("shuffle"), "{err}");
    }

    #[test]
    fn several_urls_are_for_amqp_only_and_redis_urls_are_unchanged() {
        let err = load_refusal(
            "sidecast.toml",
            "[broker]\nurl = [\"redis://a:6379\", \"redis://b:6379\"]\n",
        );
        assert!(
            err.contains("has 2 URLs") && err.contains("kind = \"amqp\""),
            "{err}"
        );
        Jail::expect_with(|jail| {
            jail.create_file(
                "sidecast.toml",
                "[broker]\nurl = \"redis+sentinel://h1:26379,h2:26379/mymaster\"\n",
            )?;
            Config::load(None).unwrap();
            Ok(())
        });
    }
}
