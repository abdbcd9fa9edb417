//! The [`Broker`] trait: bytes on named channels, and the pieces every transport shares.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

/// A message bus that carries opaque payloads on named channels.
///
/// A broker knows nothing of Socket.IO: codecs (see [`crate::codec`]) turn payloads into
/// [`crate::Envelope`]s. Implementations are chosen at run time from configuration, hence the
/// object-safe `async_trait` form and [`SharedBroker`].
///
/// # Delivery contract
///
/// * **Guarantee.** Each transport documents its own. Redis pub/sub is *at-most-once*: a message
///   published while a subscriber is disconnected is lost to that subscriber. AMQP is
///   *at-least-once while connected*. The in-memory broker delivers every message to every live
///   subscription of the same process unless that subscription overflows.
/// * **Order** is kept per publisher connection: two messages published one after the other by the
///   same broker value reach every subscriber in that order.
/// * **Echo.** A node receives the messages it published itself through its own subscriptions, like
///   everybody else's. Sidecast relies on this: there is exactly one delivery path.
///
/// # Errors
///
/// `Err` from [`Broker::publish`] means the message was *not* accepted by the backend (it may
/// still have reached it if the error is a time-out; callers that retry may deliver twice).
/// [`BrokerError::is_transient`] tells whether retrying later can succeed.
///
/// # Reconnection
///
/// Reconnection belongs to the transport. A [`Subscription`] survives outages: the transport
/// reconnects with capped, jittered backoff and re-subscribes by itself, and reports its state
/// through [`Broker::health`]. During an outage [`Broker::publish`] fails fast with a transient
/// error; it never blocks until the backend returns.
///
/// # Cancellation
///
/// Dropping a `publish` future before it completes leaves it unknown whether the message was
/// sent. Dropping a [`Subscription`] unsubscribes it; the transport frees its resources without
/// waiting for the caller.
#[async_trait]
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Publishes `payload` on `channel`.
    ///
    /// Returns once the backend accepted the message (AMQP: publisher confirm). During an outage
    /// it fails fast with a transient error, and it never hangs: every transport bounds it with a
    /// time-out. After [`Broker::close`] it fails with [`BrokerError::Closed`].
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError>;

    /// Opens one long-lived stream of messages published on any of `channels`.
    ///
    /// The stream survives reconnects (the transport re-subscribes by itself) and ends only when
    /// the broker is closed. Messages are buffered in a bounded queue: a consumer that falls behind
    /// loses the overflow (dropped, logged and counted, see [`Subscription::dropped`]) but never
    /// stalls the transport. A [`ChannelSpec::Pattern`] is refused with
    /// [`BrokerError::Unsupported`] by transports that cannot match patterns.
    async fn subscribe(&self, channels: &[ChannelSpec]) -> Result<Subscription, BrokerError>;

    /// The connection state right now. Cheap: never does I/O.
    fn health(&self) -> BrokerHealth;

    /// Closes the broker: every subscription stream ends and later publishes fail with
    /// [`BrokerError::Closed`]. Idempotent.
    async fn close(&self);
}

/// A broker shared by the tasks of a node; the implementation is picked from configuration.
pub type SharedBroker = Arc<dyn Broker>;

/// What a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelSpec {
    /// One channel, by its exact name.
    Exact(String),
    /// Every channel whose name matches a Redis-style glob (`*`, `?`, `[abc]`, `\` escapes).
    /// Only transports that can match patterns accept it (Redis `PSUBSCRIBE`, the memory broker).
    Pattern(String),
}

impl ChannelSpec {
    /// A subscription to one channel by name.
    pub fn exact(name: impl Into<String>) -> Self {
        Self::Exact(name.into())
    }

    /// A subscription to every channel matching a glob pattern.
    pub fn pattern(glob: impl Into<String>) -> Self {
        Self::Pattern(glob.into())
    }

    /// The channel name or the pattern, as written.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Exact(s) | Self::Pattern(s) => s,
        }
    }

    /// Whether a message published on `channel` belongs to this subscription.
    pub fn matches(&self, channel: &str) -> bool {
        match self {
            Self::Exact(name) => name == channel,
            Self::Pattern(glob) => crate::glob::matches(glob.as_bytes(), channel.as_bytes()),
        }
    }
}

impl fmt::Display for ChannelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(s) => f.write_str(s),
            Self::Pattern(s) => write!(f, "pattern {s}"),
        }
    }
}

/// One message received from a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMessage {
    /// The channel it was published on.
    pub channel: String,
    /// The pattern of the subscription that matched it, for pattern subscriptions.
    pub pattern: Option<String>,
    /// The payload exactly as published.
    pub payload: Bytes,
}

/// The connection state of a broker, as reported by [`Broker::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerHealth {
    /// Connected: publishes are accepted and subscriptions receive.
    Connected,
    /// The connection was lost; the transport is trying again.
    Reconnecting {
        /// Reconnect attempts made so far in this outage (1 for the first).
        attempt: u32,
        /// When the connection was lost.
        since: SystemTime,
    },
    /// Closed by [`Broker::close`]; it will not come back.
    Closed,
}

impl BrokerHealth {
    /// Whether the broker is connected.
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected)
    }
}

impl fmt::Display for BrokerHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connected => f.write_str("connected"),
            Self::Reconnecting { attempt, since } => {
                let secs = since.elapsed().unwrap_or_default().as_secs_f32();
                write!(f, "reconnecting (attempt {attempt}, down for {secs:.1}s)")
            }
            Self::Closed => f.write_str("closed"),
        }
    }
}

/// The error type of every [`Broker`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The backend cannot be reached right now. Transient.
    #[error(
        "{backend} broker at {url} is unavailable: {source}; check that it is running and reachable (broker.url), the request can be retried"
    )]
    Unavailable {
        /// The transport (`"redis"`, `"amqp"`, ...).
        backend: &'static str,
        /// The backend address, with any password redacted.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend did not answer in time. Transient.
    #[error(
        "{backend} broker did not answer within {after:?}; it may be overloaded or unreachable, the request can be retried"
    )]
    Timeout {
        /// The transport.
        backend: &'static str,
        /// The time-out that expired.
        after: Duration,
    },
    /// The broker was closed with [`Broker::close`].
    #[error("broker is closed; create a new one to publish or subscribe again")]
    Closed,
    /// The transport cannot do what was asked (for example a pattern subscription over AMQP).
    #[error("{backend} broker does not support {what}")]
    Unsupported {
        /// The transport.
        backend: &'static str,
        /// What was asked, with the alternative where there is one.
        what: String,
    },
    /// The broker configuration is invalid.
    #[error("invalid {backend} broker configuration: {reason}")]
    Config {
        /// The transport.
        backend: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The backend refused the operation (permissions, protocol error). Not transient.
    #[error("{backend} broker refused the operation: {source}")]
    Rejected {
        /// The transport.
        backend: &'static str,
        /// The backend's answer.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BrokerError {
    /// Whether retrying later can succeed (outages and time-outs).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }

    /// [`BrokerError::Unavailable`]: `backend` at `url` (its password already redacted) cannot
    /// be reached, because of `source` (an error, or words: a `String` works too).
    pub fn unavailable(
        backend: &'static str,
        url: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            backend,
            url: url.into(),
            source: source.into(),
        }
    }

    /// [`BrokerError::Rejected`]: `backend` refused, with `source` as its answer.
    pub fn rejected(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Rejected {
            backend,
            source: source.into(),
        }
    }

    /// A backend error the transport has classified: [`BrokerError::unavailable`] when
    /// `transient`, else [`BrokerError::rejected`].
    pub fn classified(
        transient: bool,
        backend: &'static str,
        url: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        if transient {
            Self::unavailable(backend, url, source)
        } else {
            Self::rejected(backend, source)
        }
    }

    /// What an operation fails fast with while the transport reconnects: unavailable, at
    /// reconnect attempt `attempt`.
    pub fn reconnecting(backend: &'static str, url: &str, attempt: u32) -> Self {
        Self::unavailable(
            backend,
            url,
            format!("the connection is down, reconnecting (attempt {attempt})"),
        )
    }

    /// [`BrokerError::Timeout`] after `after`.
    pub fn timeout(backend: &'static str, after: Duration) -> Self {
        Self::Timeout { backend, after }
    }
}

/// Words with the backend's error underneath: the `source` a transport gives a [`BrokerError`]
/// whose cause needs explaining (the fix to make, or what the transport was doing). Displays as
/// `message (backend error)`; [`std::error::Error::source`] is the backend's error.
#[derive(Debug)]
pub struct Explained {
    message: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Explained {
    /// `message` over the backend's `source` error.
    pub fn new(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.source)
    }
}

impl std::error::Error for Explained {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Removes the password from a broker URL so that it can be logged and shown.
///
/// `redis://user:secret@host:6379` becomes `redis://user:***@host:6379`.
pub fn redact_url(url: &str) -> String {
    // Without a scheme (`user:pw@host`) the authority starts the string: redact it all the same.
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let prefix = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{prefix}{user}:***@{host}{path}")
            } else {
                format!("{prefix}***@{host}{path}")
            }
        }
        None => url.to_owned(),
    }
}

/// A stream of [`BrokerMessage`]s, fed by a transport through a bounded queue.
///
/// Create one with [`Subscription::bounded`]: the transport keeps the [`SubscriptionSender`] and
/// returns the `Subscription` to the caller. The stream ends when every sender is dropped (the
/// broker closed). Dropping the `Subscription` closes the queue, which tells the transport
/// ([`SubscriptionSender::is_closed`]) to stop feeding it.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<BrokerMessage>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// A queue of at most `capacity` messages (at least 1) and its sending half.
    pub fn bounded(capacity: usize) -> (SubscriptionSender, Subscription) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        (
            SubscriptionSender {
                tx,
                dropped: Arc::clone(&dropped),
            },
            Subscription { rx, dropped },
        )
    }

    /// The next message, or `None` once the broker was closed.
    pub async fn recv(&mut self) -> Option<BrokerMessage> {
        self.rx.recv().await
    }

    /// Messages lost so far because this subscription's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Stream for Subscription {
    type Item = BrokerMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BrokerMessage>> {
        self.rx.poll_recv(cx)
    }
}

/// The transport's half of a [`Subscription`].
#[derive(Debug, Clone)]
pub struct SubscriptionSender {
    tx: mpsc::Sender<BrokerMessage>,
    dropped: Arc<AtomicU64>,
}

/// What became of a message handed to [`SubscriptionSender::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the consumer.
    Queued,
    /// The queue was full: the message was dropped and counted.
    Dropped,
    /// The consumer is gone; the transport should forget this sender.
    Closed,
}

impl SubscriptionSender {
    /// Queues a message without waiting: when the consumer lags and the queue is full, the message
    /// is dropped, counted and logged, so a slow consumer never stalls the transport's reader.
    pub fn deliver(&self, message: BrokerMessage) -> Delivery {
        match self.tx.try_send(message) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(message)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first drop and then every 1000th, so that a lagging consumer cannot
                // flood the log.
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    tracing::warn!(
                        channel = %message.channel,
                        dropped,
                        capacity = self.tx.max_capacity(),
                        "subscriber lagging, message dropped"
                    );
                }
                Delivery::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    /// Whether the consumer dropped its [`Subscription`].
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes once the consumer dropped its [`Subscription`] (at once if it already did).
    ///
    /// A transport's reader task selects on this next to its backend's message stream, so that it
    /// unsubscribes as soon as the consumer goes away, even on a channel that stays quiet, without
    /// polling [`SubscriptionSender::is_closed`]. Cancel-safe.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Messages dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_constructors_classify_and_explain() {
        let io = || std::io::Error::other("connection refused");
        let down = BrokerError::classified(true, "redis", "redis://h:1", io());
        assert!(down.is_transient());
        assert!(
            down.to_string()
                .contains("redis broker at redis://h:1 is unavailable: connection refused"),
            "{down}"
        );
        let refused = BrokerError::classified(false, "redis", "redis://h:1", io());
        assert!(
            matches!(
                refused,
                BrokerError::Rejected {
                    backend: "redis",
                    ..
                }
            ),
            "{refused}"
        );
        assert!(!refused.is_transient());

        let reconnecting = BrokerError::reconnecting("amqp", "amqp://h:1", 3);
        assert!(reconnecting.is_transient());
        assert!(
            reconnecting
                .to_string()
                .contains("reconnecting (attempt 3)"),
            "{reconnecting}"
        );
        assert!(BrokerError::timeout("nats", Duration::from_secs(2)).is_transient());

        let explained = Explained::new("check the password in broker.url", io());
        assert_eq!(
            explained.to_string(),
            "check the password in broker.url (connection refused)"
        );
        let source = std::error::Error::source(&explained).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection refused"));
        let error = BrokerError::rejected("redis", explained);
        assert!(error.to_string().contains("check the password"), "{error}");
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("redis://user:pw@h:1/0"),
            "redis://user:***@h:1/0"
        );
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("user:pw@host:1/vh"), "user:***@host:1/vh");
    }

    #[tokio::test]
    async fn overflow_is_dropped_and_counted_not_blocking() {
        let (tx, mut sub) = Subscription::bounded(2);
        let msg = |n: u8| BrokerMessage {
            channel: "c".into(),
            pattern: None,
            payload: Bytes::from(vec![n]),
        };
        assert_eq!(tx.deliver(msg(1)), Delivery::Queued);
        assert_eq!(tx.deliver(msg(2)), Delivery::Queued);
        assert_eq!(tx.deliver(msg(3)), Delivery::Dropped);
        assert_eq!(sub.dropped(), 1);
        assert_eq!(sub.recv().await.unwrap().payload[0], 1);
        assert_eq!(sub.recv().await.unwrap().payload[0], 2);
        drop(sub);
        assert!(tx.is_closed());
        assert_eq!(tx.deliver(msg(4)), Delivery::Closed);
    }

    #[tokio::test]
    async fn closed_completes_when_the_consumer_drops() {
        let (tx, sub) = Subscription::bounded(1);
        let waiter = tokio::spawn({
            let tx = tx.clone();
            async move { tx.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "closed() completed with a live consumer"
        );
        drop(sub);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("closed() did not complete after the consumer dropped")
            .unwrap();
        // Already closed: completes at once.
        tx.closed().await;
    }

    #[test]
    fn channel_spec_matching() {
        assert!(ChannelSpec::exact("a").matches("a"));
        assert!(!ChannelSpec::exact("a").matches("ab"));
        assert!(ChannelSpec::pattern("socket.io#/#*").matches("socket.io#/#room#"));
        assert!(!ChannelSpec::pattern("socket.io#/#*").matches("socket.io#/admin#"));
    }
}
