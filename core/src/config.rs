//! Configuration: serde types and their loading with figment.
//!
//! Precedence, lowest first: built-in defaults < `sidecast.toml` (or the file given with
//! `--config`) < environment variables `SIDECAST_<SECTION>__<KEY>` < command-line flags (merged by
//! the caller with [`Figment::merge`]). Unknown keys are errors that name the key and the file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The default configuration file, read from the working directory when it exists.
pub const DEFAULT_FILE: &str = "sidecast.toml";

/// The default Socket.IO client script: the public CDN build of socket.io 4.x.
pub const DEFAULT_CLIENT_JS_URL: &str = "https://cdn.socket.io/4.8.1/socket.io.min.js";

/// Environment variable prefix; `SIDECAST_BROKER__URL` sets `broker.url`.
pub const ENV_PREFIX: &str = "SIDECAST_";

/// The sections an environment variable may set; other `SIDECAST_*` variables (such as the test
/// suite's `SIDECAST_TEST_REDIS_URL`) are not configuration and are left alone.
const SECTIONS: &[&str] = &["server", "broker", "auth", "session", "log"];

/// A secret value (key, token): shown as `***` by `Debug`, so that it never reaches a log by
/// accident. Serialized as the plain string (configuration files hold it as such).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; use it, never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `***` for a set secret, empty for an unset one.
    fn redacted(&self) -> Self {
        if self.is_empty() {
            Self::default()
        } else {
            Self("***".to_owned())
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() { "\"\"" } else { "***" })
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

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
}

/// `[server]`: the HTTP and Socket.IO server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// The path the Socket.IO server answers on (the client's `path` option).
    pub socketio_path: String,
    /// Origins, besides the server's own, whose browsers may open sockets and publish
    /// (`"https://app.example.com"`). Empty: same origin only.
    pub allowed_origins: Vec<String>,
    /// URL the page loads the official Socket.IO client from.
    pub client_js_url: String,
    /// A local copy of the Socket.IO client script; when set, the server serves it itself and the
    /// page loads it from there instead of `client_js_url`.
    pub client_js: Option<PathBuf>,
    /// Largest accepted `POST /api/` body, in bytes.
    pub max_body_bytes: usize,
    /// Largest Socket.IO packet a client may send, in bytes.
    pub max_socket_payload_bytes: u64,
    /// `POST /api/` requests each principal may make per second; 0 turns the limit off.
    pub api_rate_limit: u32,
    /// Requests a principal may make at once above the rate before being limited.
    pub api_rate_burst: u32,
    /// Engine.IO ping interval (socket.io's `pingInterval`), in milliseconds. A client that does not
    /// answer a ping within `ping_timeout_ms` is disconnected, and so is one whose queue is too full
    /// to take the ping.
    pub ping_interval_ms: u64,
    /// Engine.IO ping timeout (socket.io's `pingTimeout`), in milliseconds.
    pub ping_timeout_ms: u64,
    /// Packets each socket may have waiting to be sent; beyond that the socket is a slow client.
    pub socket_buffer: usize,
    /// What happens to a slow client: `"drop"` (the events it cannot take are dropped and counted;
    /// it stays connected) or `"disconnect"` (it is disconnected and its client reconnects).
    pub slow_client: SlowClientPolicy,
    /// How long a graceful shutdown may take before remaining connections are cut, in
    /// milliseconds.
    pub shutdown_timeout_ms: u64,
    /// At shutdown the node closes its sockets after a random delay of up to this many
    /// milliseconds, so that the clients of nodes restarted together do not all reconnect at the
    /// same instant.
    pub shutdown_jitter_ms: u64,
}

/// What happens to a socket whose queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowClientPolicy {
    /// Drop the events it cannot take (counted); keep the socket.
    #[default]
    Drop,
    /// Disconnect it; its client reconnects and starts afresh.
    Disconnect,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 5000)),
            socketio_path: "/ws/socket.io".to_owned(),
            allowed_origins: Vec::new(),
            client_js_url: DEFAULT_CLIENT_JS_URL.to_owned(),
            client_js: None,
            max_body_bytes: 64 * 1024,
            max_socket_payload_bytes: 100_000,
            api_rate_limit: 100,
            api_rate_burst: 200,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            socket_buffer: 1_024,
            slow_client: SlowClientPolicy::Drop,
            shutdown_timeout_ms: 10_000,
            shutdown_jitter_ms: 1_000,
        }
    }
}

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
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub url: Option<String>,
    /// The channel (Redis) or fanout exchange (AMQP) carrying Sidecast's own messages.
    pub channel: String,
    /// How long a publish may take before it fails, in milliseconds.
    pub publish_timeout_ms: u64,
    /// How long connecting to the broker may take, in milliseconds.
    pub connect_timeout_ms: u64,
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
            channel: "sidecast".to_owned(),
            publish_timeout_ms: 2_000,
            connect_timeout_ms: 3_000,
            subscription_capacity: 4_096,
            signing_key: Secret::default(),
            signing_max_age_ms: 60_000,
            ingress: Vec::new(),
            ingress_unsigned_ok: false,
            durable_exchanges: false,
        }
    }
}

impl BrokerConfig {
    /// The URL to connect to: `url`, or the default of `kind`.
    pub fn effective_url(&self) -> &str {
        self.url.as_deref().unwrap_or(self.kind.default_url())
    }
}

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
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            policy: PolicyList::One(PolicyKind::Session),
            tokens: BTreeMap::new(),
            demo_login: true,
            demo_user: "Gonzalo".to_owned(),
            allow_all_public: false,
        }
    }
}

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

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter, such as `"info"` or `"sidecast_web=debug,info"`. The `RUST_LOG`
    /// environment variable, when set, wins.
    pub filter: String,
    /// `"text"` or `"json"`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            // lapin logs every lost connection at ERROR; the AMQP transport already logs each
            // outage once, with the fix.
            filter: "info,lapin=off".to_owned(),
            format: LogFormat::default(),
        }
    }
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file given with `--config` does not exist.
    #[error("config file {} not found; check the path given with --config", .0.display())]
    FileNotFound(PathBuf),
    /// A key is unknown or has a bad value; figment's message names the key and the file.
    #[error("invalid configuration: {0}; see docs/configuration.md for every key and its values")]
    Invalid(String),
}

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

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("`{key}` {why}")));
        if !self.server.socketio_path.starts_with('/') || self.server.socketio_path.len() < 2 {
            return bad(
                "server.socketio_path",
                "must be an absolute path other than `/`, such as \"/ws/socket.io\"",
            );
        }
        if self.broker.channel.is_empty() {
            return bad(
                "broker.channel",
                "must not be empty; the default is \"sidecast\"",
            );
        }
        if !self.session.secret.is_empty() && self.session.secret.expose().len() < 32 {
            return bad(
                "session.secret",
                "must be at least 32 bytes long; generate one with `openssl rand -hex 32`",
            );
        }
        if self.auth.policy.kinds().is_empty() {
            return bad(
                "auth.policy",
                "needs at least one policy: \"session\", \"token\" or \"allow-all\"",
            );
        }
        if self.auth.policy.kinds().contains(&PolicyKind::Token) && self.auth.tokens.is_empty() {
            return bad(
                "auth.tokens",
                "is empty but auth.policy includes \"token\"; add `[auth.tokens] name = \"token\"`",
            );
        }
        if self.auth.policy.kinds().contains(&PolicyKind::AllowAll)
            && !self.server.bind.ip().is_loopback()
            && !self.auth.allow_all_public
        {
            return bad(
                "auth.policy",
                &format!(
                    "is \"allow-all\" on the public address {}: anybody who can reach it could \
                     connect and publish. Bind to 127.0.0.1, choose another policy, or set \
                     auth.allow_all_public = true if that is really intended",
                    self.server.bind
                ),
            );
        }
        if self.auth.tokens.values().any(Secret::is_empty) {
            return bad("auth.tokens", "has an empty token; give every name a token");
        }
        if self.server.socket_buffer == 0 {
            return bad("server.socket_buffer", "must be at least 1");
        }
        if self.server.shutdown_jitter_ms > self.server.shutdown_timeout_ms {
            return bad(
                "server.shutdown_jitter_ms",
                "must not be larger than server.shutdown_timeout_ms",
            );
        }
        if self.broker.subscription_capacity == 0 {
            return bad("broker.subscription_capacity", "must be at least 1");
        }
        self.validate_ingress()
    }

    /// The rules of `[[broker.ingress]]`.
    fn validate_ingress(&self) -> Result<(), ConfigError> {
        let broker = &self.broker;
        let control = crate::codec::control::channel(&broker.channel);
        let mut seen: Vec<&str> = Vec::new();
        for (i, ingress) in broker.ingress.iter().enumerate() {
            let key = format!("broker.ingress[{i}]");
            let bad = |why: String| Err(ConfigError::Invalid(format!("`{key}` {why}")));
            let channel = ingress.channel();
            if channel.is_empty() {
                return bad(format!(
                    "has an empty channel; leave `channel` out for the default of {} (\"{}\")",
                    ingress.format,
                    ingress.format.default_channel()
                ));
            }
            if ingress.format == IngressFormat::NodeEmitter && broker.kind == BrokerKind::Amqp {
                return bad(
                    "is \"node-emitter\", which needs Redis: @socket.io/redis-emitter publishes \
                     with Redis PUBLISH on channels matched by a pattern, which AMQP has no \
                     equivalent of. Remove this ingress, or run the nodes on Redis \
                     (broker.kind = \"redis\")"
                        .to_owned(),
                );
            }
            if channel == broker.channel || channel == control {
                return bad(format!(
                    "uses the channel \"{channel}\", which carries Sidecast's own messages; give \
                     the ingress the channel its emitters publish on"
                ));
            }
            if seen.contains(&channel) {
                return bad(format!(
                    "repeats the channel \"{channel}\"; a channel carries one format, list it once"
                ));
            }
            seen.push(channel);
        }
        if !broker.ingress.is_empty()
            && !broker.signing_key.is_empty()
            && !broker.ingress_unsigned_ok
        {
            return Err(ConfigError::Invalid(
                "`broker.ingress` cannot be signed, but broker.signing_key is set: messages on the \
                 ingress channels are not verified, so anybody who can publish on them reaches the \
                 sockets. Set broker.ingress_unsigned_ok = true to accept that (for example when \
                 only trusted programs can reach the broker), or remove the ingress"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// A copy with every secret replaced by `***`, for printing.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.session.secret = c.session.secret.redacted();
        c.broker.signing_key = c.broker.signing_key.redacted();
        c.session.url = crate::broker::redact_url(&c.session.url);
        c.broker.url = c.broker.url.as_deref().map(crate::broker::redact_url);
        c.auth.tokens.values_mut().for_each(|t| *t = t.redacted());
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

/// One figment error as "`key` in FILE: what is wrong".
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
    if key.is_empty() {
        format!("{}{source}", e.kind)
    } else {
        format!("`{key}`{source}: {}", e.kind)
    }
}

#[cfg(test)]
// figment::Jail's closures return figment's large error type; that is its API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

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
        Jail::expect_with(|jail| {
            jail.create_file("custom.toml", "[broker]\nchanel = \"typo\"\n")?;
            let err = Config::load(Some(Path::new("custom.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("broker"), "{err}");
            assert!(err.contains("chanel"), "{err}");
            assert!(err.contains("custom.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_value_names_key_and_file() {
        Jail::expect_with(|jail| {
            jail.create_file("sidecast.toml", "[server]\nbind = \"localhost\"\n")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("`server.bind`"), "{err}");
            assert!(err.contains("sidecast.toml"), "{err}");
            jail.create_file("sidecast.toml", "[broker]\nkind = \"kafka\"\n")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("`broker.kind`"), "{err}");
            assert!(err.contains("redis"), "{err}");
            Ok(())
        });
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

    #[test]
    fn missing_explicit_file_and_rules() {
        let err = Config::load(Some(Path::new("/nonexistent/s.toml"))).unwrap_err();
        assert!(matches!(err, ConfigError::FileNotFound(_)));
        let mut c = Config::default();
        c.session.secret = "short".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("session.secret")
        );
        let mut c = Config::default();
        c.auth.policy = PolicyList::One(PolicyKind::Token);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("auth.tokens")
        );
    }

    #[test]
    fn redaction_hides_secrets() {
        let mut c = Config::default();
        c.session.secret = Secret::new("x".repeat(40));
        c.broker.signing_key = "signing-key".into();
        c.broker.url = Some("redis://u:pw@h:1".into());
        c.auth.tokens.insert("cron".into(), "tok".into());
        let shown = c.redacted().to_toml();
        assert!(!shown.contains(&"x".repeat(40)));
        assert!(!shown.contains("signing-key"));
        assert!(
            !format!("{c:?}").contains("signing-key"),
            "Debug hides secrets"
        );
        assert!(!format!("{c:?}").contains("tok\""), "Debug hides tokens");
        assert!(!shown.contains("pw"));
        assert!(!shown.contains("tok\""));
        assert!(shown.contains("***"));
    }
}

#[cfg(test)]
// figment::Jail's closures return figment's large error type; that is its API.
#[allow(clippy::result_large_err)]
mod ingress_tests {
    use super::*;
    use crate::ChannelSpec;
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
        Jail::expect_with(|jail| {
            jail.create_file(
                "sidecast.toml",
                "[[broker.ingress]]\nformat = \"socket.io-php\"\n",
            )?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("broker.ingress"), "{err}");
            assert!(err.contains("python-socketio"), "{err}");
            jail.create_file(
                "sidecast.toml",
                "[[broker.ingress]]\nformat = \"node-emitter\"\nchanel = \"x\"\n",
            )?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("chanel"), "{err}");
            Ok(())
        });
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
mod doc_tests {
    use super::*;

    /// Every key of the configuration is documented in docs/configuration.md with its
    /// environment variable.
    #[test]
    fn configuration_doc_lists_every_key() {
        let doc = include_str!("../../docs/configuration.md");
        let mut config = Config::default();
        // Optional keys are absent from the serialized defaults; give them a value to list them.
        config.broker.url = Some(String::new());
        config.server.client_js = Some(PathBuf::from("x"));
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
}
