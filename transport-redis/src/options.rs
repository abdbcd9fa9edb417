//! [`RedisOptions`]: how [`crate::RedisBroker`] connects and how patient it is, and the checks of
//! those options.

use std::time::Duration;

use sidecast_core::BrokerError;
use sidecast_core::BrokerUrl;
use sidecast_core::broker::HistoryRetention;
use sidecast_core::config::BrokerConfig;

use crate::error;

/// The default [`RedisOptions::history_key_prefix`].
pub const DEFAULT_HISTORY_KEY_PREFIX: &str = "sidecast:history:";

/// Connection settings of a [`crate::RedisBroker`].
///
/// ```
/// use std::time::Duration;
/// use sidecast_transport_redis::RedisOptions;
///
/// let options = RedisOptions {
///     publish_timeout: Duration::from_millis(500),
///     ..RedisOptions::new("redis://:secret@127.0.0.1:6380/0")
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user][:password@]host[:port][/db]`, or `rediss://...` for TLS (rustls, the
    /// system's trust store). The password (and ACL user) go in the URL; it shows redacted.
    pub url: BrokerUrl,
    /// Bound on establishing one connection: TCP, TLS, `AUTH`/`HELLO`, `SELECT` and the first
    /// `SUBSCRIBE`s.
    pub connect_timeout: Duration,
    /// Bound on one publish, from the call until Redis acknowledged it.
    pub publish_timeout: Duration,
    /// Messages each subscription buffers for its consumer; beyond that they are dropped and
    /// counted ([`sidecast_core::Subscription::dropped`]).
    pub subscription_capacity: usize,
    /// Delay before the first reconnect attempt; it doubles with every failed attempt...
    pub backoff_min: Duration,
    /// ...up to this cap. Each delay is jittered (between half and all of it) so that nodes
    /// cut off together do not reconnect in lockstep.
    pub backoff_max: Duration,
    /// Idle connections are checked with a `PING` this often, so that a connection that died
    /// silently (no `RST`, e.g. a network partition) is noticed and replaced.
    pub keepalive_interval: Duration,
    /// Each subscription publishes a probe on a private channel (`sidecast:probe:...`) this
    /// often and expects it back within the same time; a subscription whose probe does not come
    /// back is silent (its connection answers `PING` but delivers nothing) and is rebuilt, logged
    /// and counted.
    pub probe_interval: Duration,
    /// What the history keeps per channel ([`sidecast_core::History`]): `max_age` (`MINID ~`
    /// at each append) and `max_entries` (`MAXLEN ~`), both approximate, see
    /// [`crate::RedisBroker`]. `max_bytes` is not applied by Redis: bound memory with
    /// `max_entries` and Redis' own `maxmemory`.
    pub history: HistoryRetention,
    /// Prefix of the stream key that holds a channel's history: the key of channel `c` is
    /// `{history_key_prefix}{c}`, or `{history_key_prefix}{{c}}` on a Redis Cluster (the channel
    /// as hash tag, so that its keys share one slot; the prefix must then not contain `{`).
    pub history_key_prefix: String,
    /// An append to the history is acknowledged only once this many replicas confirmed it
    /// (`WAIT`); `0`: once the master holds it. See [`crate::RedisBroker`], "Replicas".
    pub min_replicas: u32,
    /// How long an append waits for [`RedisOptions::min_replicas`] replicas; below
    /// [`RedisOptions::publish_timeout`], which bounds the whole append.
    pub replica_timeout: Duration,
    /// On a Redis Cluster, the channels that use sharded pub/sub (`SPUBLISH`, `SSUBSCRIBE` on
    /// the primary of the channel's slot) instead of classic pub/sub, whose messages cross every
    /// node. Ignored elsewhere. Order is kept per channel; across sharded channels only when
    /// they share a slot (a common hash tag). Every publisher and subscriber of such a channel
    /// must name it here: a classic `PUBLISH` does not reach a sharded subscriber. Empty by
    /// default.
    pub sharded_channels: Vec<String>,
}

impl RedisOptions {
    /// The default options for `url`: connect time-out 3 s, publish time-out 2 s, 4096 buffered
    /// messages per subscription, reconnect backoff 100 ms doubling to 5 s, keep-alive 15 s, a
    /// liveness probe every 5 s, the
    /// default [`HistoryRetention`] under keys `sidecast:history:<channel>`.
    pub fn new(url: impl Into<BrokerUrl>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: Duration::from_secs(3),
            publish_timeout: Duration::from_secs(2),
            subscription_capacity: sidecast_core::memory::DEFAULT_CAPACITY,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(15),
            probe_interval: Duration::from_secs(5),
            history: HistoryRetention::default(),
            history_key_prefix: DEFAULT_HISTORY_KEY_PREFIX.to_owned(),
            min_replicas: 0,
            replica_timeout: Duration::from_millis(500),
            sharded_channels: Vec::new(),
        }
    }

    /// The options of a `[broker]` configuration section: `broker.url` (or the default Redis
    /// URL), `publish_timeout_ms`, `connect_timeout_ms`, `subscription_capacity`, `min_replicas`
    /// and `replica_timeout_ms`; the backoff
    /// and keep-alive keep their defaults.
    pub fn from_config(config: &BrokerConfig) -> Self {
        Self {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            publish_timeout: Duration::from_millis(config.publish_timeout_ms),
            subscription_capacity: config.subscription_capacity,
            min_replicas: config.min_replicas,
            replica_timeout: Duration::from_millis(config.replica_timeout_ms),
            ..Self::new(config.effective_url())
        }
    }
}

impl Default for RedisOptions {
    /// [`RedisOptions::new`] with `redis://127.0.0.1:6379`, the default of `broker.url`.
    fn default() -> Self {
        Self::new(sidecast_core::config::BrokerKind::Redis.default_url())
    }
}

impl RedisOptions {
    /// Refuses options that would make the transport misbehave rather than fail: zero time-outs
    /// fail every call, a zero backoff reconnects in a busy loop, a zero keep-alive panics
    /// tokio's interval.
    pub(crate) fn validate(&self) -> Result<(), BrokerError> {
        BrokerError::require_nonzero(
            error::BACKEND,
            [
                ("connect_timeout", self.connect_timeout.is_zero()),
                ("publish_timeout", self.publish_timeout.is_zero()),
                ("backoff_min", self.backoff_min.is_zero()),
                ("keepalive_interval", self.keepalive_interval.is_zero()),
                ("probe_interval", self.probe_interval.is_zero()),
                ("subscription_capacity", self.subscription_capacity == 0),
                ("history.max_age", self.history.max_age.is_zero()),
                ("history.max_entries", self.history.max_entries == 0),
                (
                    "replica_timeout",
                    self.min_replicas > 0 && self.replica_timeout.is_zero(),
                ),
            ],
        )?;
        if self.min_replicas > 0 && self.replica_timeout >= self.publish_timeout {
            return Err(BrokerError::Config {
                backend: error::BACKEND,
                reason: format!(
                    "replica_timeout ({:?}) must be below publish_timeout ({:?}), which bounds \
                     the whole append",
                    self.replica_timeout, self.publish_timeout
                ),
            });
        }
        Ok(())
    }

    /// Whether the URL asks for TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(
            self.url.scheme(),
            Some("rediss" | "valkeys" | "rediss+sentinel" | "rediss+cluster")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_config_takes_every_broker_key() {
        let config = BrokerConfig {
            url: Some("redis://:pw@example:7000/2".to_owned()),
            publish_timeout_ms: 250,
            connect_timeout_ms: 750,
            subscription_capacity: 16,
            ..BrokerConfig::default()
        };
        let options = RedisOptions::from_config(&config);
        assert_eq!(options.url, "redis://:pw@example:7000/2");
        assert_eq!(options.publish_timeout, Duration::from_millis(250));
        assert_eq!(options.connect_timeout, Duration::from_millis(750));
        assert_eq!(options.subscription_capacity, 16);

        let default = RedisOptions::from_config(&BrokerConfig::default());
        assert_eq!(default.url, "redis://127.0.0.1:6379");
    }

    #[test]
    fn debug_redacts_the_password() {
        let shown = format!("{:?}", RedisOptions::new("redis://u:hunter2@h:1"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
