//! [`NodeBroker`]: the node's handle on its broker, which exists before the broker answers.
//!
//! A node started while its broker is down serves at once (decision 21): its [`crate::Emitter`],
//! [`crate::Sidecast::broker`] and health checks need a broker from the first request on. This
//! handle is that broker: until the start connects the real one it fails fast with a transient
//! error (`POST /api/` answers 503 with `Retry-After`) and reports itself as reconnecting; once
//! bound it passes everything through.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use axum::body::Bytes;
use sidecast_core::broker::{BrokerCapabilities, History};
use sidecast_core::{Broker, BrokerError, BrokerHealth, ChannelSpec, SharedBroker, Subscription};

/// The broker of a node: unbound while the node starts, then the connected broker.
pub(crate) struct NodeBroker {
    /// The transport's name (`broker.kind`), for errors.
    backend: &'static str,
    /// `broker.url`, password redacted.
    url: String,
    /// When the node started waiting.
    since: SystemTime,
    /// Start attempts made so far.
    attempts: AtomicU32,
    bound: OnceLock<SharedBroker>,
    closed: AtomicBool,
}

impl std::fmt::Debug for NodeBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bound.get() {
            Some(broker) => broker.fmt(f),
            None => f
                .debug_struct("NodeBroker")
                .field("url", &self.url)
                .field("bound", &false)
                .finish_non_exhaustive(),
        }
    }
}

impl NodeBroker {
    /// An unbound handle for the broker `backend` at `url` (password already redacted).
    pub(crate) fn unbound(backend: &'static str, url: String) -> Self {
        Self {
            backend,
            url,
            since: SystemTime::now(),
            attempts: AtomicU32::new(0),
            bound: OnceLock::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Binds the connected broker; every later call goes to it.
    pub(crate) fn bind(&self, broker: SharedBroker) {
        // Bound once, by the one start of the node.
        let _ = self.bound.set(broker);
    }

    /// `broker.url`, password redacted.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Whether [`Broker::close`] was called: a start still in progress gives up.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Counts a start attempt, for [`Broker::health`] and the errors before the broker answers.
    pub(crate) fn attempted(&self) -> u32 {
        self.attempts.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// What calls fail with before the broker answered: unavailable, which is transient.
    pub(crate) fn not_started(&self) -> BrokerError {
        if self.closed.load(Ordering::Acquire) {
            return BrokerError::Closed;
        }
        BrokerError::unavailable(
            self.backend,
            self.url.clone(),
            format!(
                "it has not answered since the node started (attempt {}); the node keeps \
                 trying (broker.start_timeout_ms)",
                self.attempts.load(Ordering::Relaxed)
            ),
        )
    }
}

#[async_trait]
impl Broker for NodeBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        match self.bound.get() {
            Some(broker) => broker.publish(channel, payload).await,
            None => Err(self.not_started()),
        }
    }

    async fn subscribe(&self, channels: &[ChannelSpec]) -> Result<Subscription, BrokerError> {
        match self.bound.get() {
            Some(broker) => broker.subscribe(channels).await,
            None => Err(self.not_started()),
        }
    }

    fn health(&self) -> BrokerHealth {
        match self.bound.get() {
            Some(broker) => broker.health(),
            None if self.closed.load(Ordering::Acquire) => BrokerHealth::Closed,
            None => BrokerHealth::Reconnecting {
                attempt: self.attempts.load(Ordering::Relaxed).max(1),
                since: self.since,
            },
        }
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(broker) = self.bound.get() {
            broker.close().await;
        }
    }

    fn history(&self) -> Option<&dyn History> {
        self.bound.get().and_then(|broker| broker.history())
    }

    fn capabilities(&self) -> BrokerCapabilities {
        self.bound
            .get()
            .map_or(BrokerCapabilities::NONE, |broker| broker.capabilities())
    }

    fn connection_report(&self) -> Option<sidecast_core::broker::ConnectionReport> {
        self.bound
            .get()
            .and_then(|broker| broker.connection_report())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sidecast_core::MemoryBroker;

    use super::*;

    #[tokio::test]
    async fn unbound_fails_fast_and_transiently_then_passes_through() {
        let node = NodeBroker::unbound("redis", "redis://127.0.0.1:1".to_owned());
        node.attempted();
        let error = node
            .publish("c", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(error.is_transient(), "{error}");
        assert!(error.to_string().contains("redis://127.0.0.1:1"), "{error}");
        assert!(matches!(
            node.health(),
            BrokerHealth::Reconnecting { attempt: 1, .. }
        ));
        assert!(node.history().is_none());

        let memory: SharedBroker = Arc::new(MemoryBroker::default());
        node.bind(memory);
        assert!(node.health().is_connected());
        let mut subscription = node.subscribe(&[ChannelSpec::exact("c")]).await.unwrap();
        node.publish("c", Bytes::from_static(b"x")).await.unwrap();
        assert_eq!(subscription.recv().await.unwrap().payload, "x");
        node.close().await;
        assert_eq!(node.health(), BrokerHealth::Closed);
    }

    #[tokio::test]
    async fn closed_before_bound_is_closed() {
        let node = NodeBroker::unbound("amqp", "amqp://h".to_owned());
        node.close().await;
        assert!(node.is_closed());
        assert_eq!(node.health(), BrokerHealth::Closed);
        assert!(matches!(
            node.publish("c", Bytes::new()).await,
            Err(BrokerError::Closed)
        ));
    }
}
