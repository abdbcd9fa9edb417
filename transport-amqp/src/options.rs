//! [`AmqpOptions`]: how to reach RabbitMQ and how to behave when it goes away, and the checks of
//! those options.

use std::time::Duration;

use sidecast_core::broker::HistoryRetention;
use sidecast_core::config::{BrokerConfig, BrokerKind, UrlOrder};
use sidecast_core::{BrokerError, BrokerUrl};

use crate::error;

/// The default [`AmqpOptions::history_queue_prefix`].
pub const DEFAULT_HISTORY_QUEUE_PREFIX: &str = "sidecast.history.";

/// The default [`AmqpOptions::stream_replicas`]: a quorum of 2 survives one node.
pub const DEFAULT_STREAM_REPLICAS: u16 = 3;

/// The default [`AmqpOptions::history_segment_bytes`]: 1 MiB.
pub const DEFAULT_HISTORY_SEGMENT_BYTES: usize = 1 << 20;

/// The largest segment RabbitMQ accepts for a stream queue (`x-stream-max-segment-size-bytes`).
const MAX_SEGMENT_BYTES: usize = 3_000_000_000;

/// The options of an [`crate::AmqpBroker`].
///
/// Build them from the `[broker]` configuration section with [`AmqpOptions::from_config`], or
/// from a URL with [`AmqpOptions::new`] and adjust the fields:
///
/// ```
/// use std::time::Duration;
/// use sidecast_transport_amqp::AmqpOptions;
///
/// let options = AmqpOptions {
///     publish_timeout: Duration::from_millis(500),
///     durable_exchanges: true,
///     ..AmqpOptions::new("amqps://node:secret@rabbit.example/sidecast")
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpOptions {
    /// `amqp://[user:password@]host[:port][/vhost][?query]`, or `amqps://...` for TLS (rustls,
    /// the system's trust store; `SSL_CERT_FILE` names extra CA certificates). The virtual host
    /// is percent-encoded: the default vhost `/` is `%2f`. Query parameters of the AMQP URI spec
    /// (`heartbeat`, `frame_max`, `channel_max`, `connection_timeout`) are honoured; a
    /// `heartbeat` there takes precedence over [`AmqpOptions::heartbeat`]. The password shows
    /// redacted.
    ///
    /// Several URLs separated by commas name the nodes of a RabbitMQ cluster: the broker
    /// connects to one at a time and, when that connection fails or is lost, to the next, in
    /// the order of [`AmqpOptions::url_order`].
    pub url: BrokerUrl,
    /// With several URLs: tried as listed (each reconnect starting after the node last
    /// connected to) or in a new random order on each reconnect.
    pub url_order: UrlOrder,
    /// Bound on establishing the connection (TCP, TLS, AMQP handshake, login, first channel),
    /// and on setting up a subscription's queue.
    pub connect_timeout: Duration,
    /// Bound on one publish, from the call until RabbitMQ confirmed it (publisher confirm).
    pub publish_timeout: Duration,
    /// Messages each subscription buffers for its consumer; beyond that they are dropped and
    /// counted ([`sidecast_core::Subscription::dropped`]).
    pub subscription_capacity: usize,
    /// Delay before the first reconnect attempt; it doubles with every failed attempt...
    pub backoff_min: Duration,
    /// ...up to this cap. Each delay is jittered (between half and all of it) so that nodes
    /// cut off together do not reconnect in lockstep.
    pub backoff_max: Duration,
    /// The AMQP heartbeat proposed to RabbitMQ (whole seconds; the smaller of this and the
    /// server's wins). A connection that stays silent for two heartbeats is considered dead and
    /// replaced, which is how a network partition (no `RST`) is noticed. Zero asks for none,
    /// which leaves such outages undetected: not recommended.
    pub heartbeat: Duration,
    /// Declare exchanges durable. Off by default because python-socketio / Flask-SocketIO
    /// (kombu) declare their fanout exchanges `durable=False`, and RabbitMQ refuses
    /// (`PRECONDITION_FAILED`) to redeclare an existing exchange with different settings. Set
    /// it when the exchanges already exist as durable ones.
    pub durable_exchanges: bool,
    /// What the history keeps per channel ([`sidecast_core::History`]), as the arguments of
    /// the channel's stream queue: `max_age` (`x-max-age`, whole seconds, rounded up) and
    /// `max_bytes` (`x-max-length-bytes`, bytes on disk, which include RabbitMQ's per-message
    /// overhead). Both are applied by whole segments, see
    /// [`AmqpOptions::history_segment_bytes`] and [`crate::AmqpBroker`]. `max_entries` is not
    /// applied: RabbitMQ cannot bound a stream by its number of messages.
    ///
    /// Every node must use the same values: RabbitMQ fixes them when the queue is first declared
    /// and refuses a declaration with others ([`crate::HistoryMismatch`]).
    pub history: HistoryRetention,
    /// Prefix of the stream queue that holds a channel's history: the queue of channel `c` is
    /// `{history_queue_prefix}{c}`. Names starting with `amq.` are reserved by RabbitMQ.
    pub history_queue_prefix: String,
    /// The segment size of each history stream queue (`x-stream-max-segment-size-bytes`).
    /// RabbitMQ trims a stream by deleting whole segments, only when a new one is started, so
    /// this is the granularity of both retention bounds: a history keeps up to this many bytes
    /// more than `history.max_bytes`, and an entry may outlive `history.max_age` until its
    /// segment is full. RabbitMQ's own default (500 MB) would never trim at Sidecast's volumes.
    /// Like the retention, fixed when the queue is first declared.
    pub history_segment_bytes: usize,
    /// How many RabbitMQ nodes hold a replica of each history stream queue
    /// (`x-initial-cluster-size`): publisher confirms come once a quorum of them holds a message.
    /// Applied when a queue is first declared (later replicas are added or removed with
    /// `rabbitmq-streams add_replica` / `delete_replica`); RabbitMQ places no more than the
    /// cluster has nodes, so 3 on one node is one replica. Unlike the retention, not compared
    /// with an existing queue's (decision 33).
    pub stream_replicas: u16,
}

impl AmqpOptions {
    /// The default options for `url`: connect time-out 3 s, publish time-out 2 s, 4096 buffered
    /// messages per subscription, reconnect backoff 100 ms doubling to 5 s, heartbeat 10 s,
    /// non-durable exchanges, the default [`HistoryRetention`] in stream queues
    /// `sidecast.history.<channel>` of 1 MiB segments with 3 replicas.
    pub fn new(url: impl Into<BrokerUrl>) -> Self {
        Self {
            url: url.into(),
            url_order: UrlOrder::InOrder,
            connect_timeout: Duration::from_secs(3),
            publish_timeout: Duration::from_secs(2),
            subscription_capacity: sidecast_core::memory::DEFAULT_CAPACITY,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            heartbeat: Duration::from_secs(10),
            durable_exchanges: false,
            history: HistoryRetention::default(),
            history_queue_prefix: DEFAULT_HISTORY_QUEUE_PREFIX.to_owned(),
            history_segment_bytes: DEFAULT_HISTORY_SEGMENT_BYTES,
            stream_replicas: DEFAULT_STREAM_REPLICAS,
        }
    }

    /// The options of a `[broker]` configuration section: `broker.url` (or the default AMQP URL
    /// when `kind = "amqp"`), `publish_timeout_ms`, `connect_timeout_ms` and
    /// `subscription_capacity`, `durable_exchanges`, `url_order` and `stream_replicas`; the backoff
    /// and heartbeat keep their
    /// defaults (the heartbeat can be set in the URL: `?heartbeat=5`).
    pub fn from_config(config: &BrokerConfig) -> Self {
        // Whatever `kind` says, this is the AMQP transport: an unset URL means the AMQP default,
        // never the Redis one.
        let url = config
            .url
            .clone()
            .unwrap_or_else(|| BrokerKind::Amqp.default_url().to_owned());
        Self {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            publish_timeout: Duration::from_millis(config.publish_timeout_ms),
            subscription_capacity: config.subscription_capacity,
            durable_exchanges: config.durable_exchanges,
            url_order: config.url_order,
            stream_replicas: config.stream_replicas,
            ..Self::new(url)
        }
    }
}

impl Default for AmqpOptions {
    /// [`AmqpOptions::new`] with `amqp://guest:guest@127.0.0.1:5672/%2f`, the default of
    /// `broker.url` for `kind = "amqp"`.
    fn default() -> Self {
        Self::new(BrokerKind::Amqp.default_url())
    }
}

impl AmqpOptions {
    /// Refuses options that would make the transport misbehave rather than fail: zero time-outs
    /// fail every call, a zero backoff reconnects in a busy loop.
    pub(crate) fn validate(&self) -> Result<(), BrokerError> {
        BrokerError::require_nonzero(
            error::BACKEND,
            [
                ("connect_timeout", self.connect_timeout.is_zero()),
                ("publish_timeout", self.publish_timeout.is_zero()),
                ("backoff_min", self.backoff_min.is_zero()),
                ("subscription_capacity", self.subscription_capacity == 0),
                ("history.max_age", self.history.max_age.is_zero()),
                ("history.max_bytes", self.history.max_bytes == 0),
                ("history_segment_bytes", self.history_segment_bytes == 0),
                ("stream_replicas", self.stream_replicas == 0),
            ],
        )?;
        if self.history_segment_bytes > MAX_SEGMENT_BYTES {
            return Err(error::config(format!(
                "history_segment_bytes must be at most {MAX_SEGMENT_BYTES} (RabbitMQ's limit for \
                 x-stream-max-segment-size-bytes)"
            )));
        }
        if self.history_queue_prefix.starts_with("amq.") {
            return Err(error::config(format!(
                "history_queue_prefix {:?} starts with `amq.`, which RabbitMQ reserves for its \
                 own queues; choose another prefix",
                self.history_queue_prefix
            )));
        }
        if self.heartbeat > Duration::from_secs(u64::from(u16::MAX)) {
            return Err(error::config(format!(
                "heartbeat must be at most {} s (AMQP carries it as a 16-bit number of seconds)",
                u16::MAX
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_config_takes_every_broker_key() {
        let config = BrokerConfig {
            kind: BrokerKind::Amqp,
            url: Some("amqp://u:pw@example:7000/v".to_owned()),
            publish_timeout_ms: 250,
            connect_timeout_ms: 750,
            subscription_capacity: 16,
            durable_exchanges: true,
            url_order: UrlOrder::Shuffle,
            ..BrokerConfig::default()
        };
        let options = AmqpOptions::from_config(&config);
        assert_eq!(options.url_order, UrlOrder::Shuffle);
        assert_eq!(options.url, "amqp://u:pw@example:7000/v");
        assert_eq!(options.publish_timeout, Duration::from_millis(250));
        assert_eq!(options.connect_timeout, Duration::from_millis(750));
        assert_eq!(options.subscription_capacity, 16);
        assert!(options.durable_exchanges);

        let default = AmqpOptions::from_config(&BrokerConfig {
            kind: BrokerKind::Amqp,
            ..BrokerConfig::default()
        });
        assert_eq!(default.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(default, AmqpOptions::default());
    }

    #[test]
    fn history_options_are_checked() {
        let valid = AmqpOptions::default();
        assert!(valid.validate().is_ok());
        let reserved = AmqpOptions {
            history_queue_prefix: "amq.history.".to_owned(),
            ..AmqpOptions::default()
        };
        assert!(
            matches!(reserved.validate(), Err(BrokerError::Config { reason, .. }) if reason.contains("amq."))
        );
        let huge = AmqpOptions {
            history_segment_bytes: MAX_SEGMENT_BYTES + 1,
            ..AmqpOptions::default()
        };
        assert!(huge.validate().is_err());
        let no_age = AmqpOptions {
            history: HistoryRetention {
                max_age: Duration::ZERO,
                ..HistoryRetention::default()
            },
            ..AmqpOptions::default()
        };
        assert!(no_age.validate().is_err());
    }

    #[test]
    fn debug_redacts_the_password() {
        let shown = format!("{:?}", AmqpOptions::new("amqp://u:hunter2@h:1/%2f"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
