//! The [`Broker`] trait: bytes on named channels, and the pieces every transport shares.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

// The contract (the trait and the types it speaks of) is here; `error` holds `BrokerError` and
// `Explained`, `subscription` the bounded queue a transport feeds, `url` the URL type that redacts its password.
// Everything is re-exported, so that every path is `sidecast_core::broker::Name`.
mod cluster;
mod error;
mod history;
mod host_list;
mod sentinel;
mod subscription;
mod url;

pub use cluster::{CLUSTER_SCHEMES, ClusterUrl, DEFAULT_CLUSTER_PORT, slot_key};
pub use error::{BrokerError, Explained};
pub use history::{
    BrokerCapabilities, History, HistoryEntry, HistoryRetention, HistorySender,
    HistorySubscription, Offset, Replay,
};
pub use sentinel::{ConnectionReport, DEFAULT_SENTINEL_PORT, SENTINEL_SCHEMES, SentinelUrl};
pub use subscription::{Delivery, Subscription, SubscriptionSender};
pub use url::{BrokerUrl, redact_url, url_list};

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
///
/// # Optional capabilities
///
/// Beyond the required methods, a broker may offer capabilities through methods with defaults,
/// so that a broker written before a capability existed still compiles and simply lacks it:
///
/// * [`Broker::history`]: an ordered [`History`] of each channel with offsets assigned by the
///   backend, for nodes that catch up after an outage and clients that recover what they
///   missed. Default: none.
///
/// [`Broker::capabilities`] reports which ones a broker has; the public conformance suite checks
/// each capability a broker declares, and checks that one it does not declare is absent.
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

    /// The broker's [`History`], if it offers one. Default: `None` (no history).
    ///
    /// A broker with a history returns the same one on every call; its guarantees are
    /// [`History`]'s. Closing the broker closes the history too.
    fn history(&self) -> Option<&dyn History> {
        None
    }

    /// The optional capabilities this broker offers. The default derives them from the other
    /// methods' defaults being overridden ([`Broker::history`] returning `Some`).
    fn capabilities(&self) -> BrokerCapabilities {
        BrokerCapabilities::NONE.with_history(self.history().is_some())
    }

    /// What the broker tells of its connections for metrics: failovers it followed and the
    /// primary it uses (Redis Sentinel), subscriptions it found silent and rebuilt. Default:
    /// `None` (nothing to tell).
    fn connection_report(&self) -> Option<ConnectionReport> {
        None
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_spec_matching() {
        assert!(ChannelSpec::exact("a").matches("a"));
        assert!(!ChannelSpec::exact("a").matches("ab"));
        assert!(ChannelSpec::pattern("socket.io#/#*").matches("socket.io#/#room#"));
        assert!(!ChannelSpec::pattern("socket.io#/#*").matches("socket.io#/admin#"));
    }
}
