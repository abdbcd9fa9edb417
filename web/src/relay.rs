//! The node's one delivery path: broker subscription → decode → emit to sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sidecast_core::codec::native;
use sidecast_core::{ChannelSpec, SharedBroker, Subscription};
use socketioxide::SocketIo;
use tokio::task::JoinHandle;

use crate::socket;

/// Counters of the relay, readable while it runs.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Envelopes emitted to sockets.
    pub emitted: AtomicU64,
    /// Messages that could not be decoded.
    pub undecodable: AtomicU64,
    /// Envelopes that reached no socket because of an error (unknown namespace, full buffers).
    pub failed: AtomicU64,
}

/// Subscribes to Sidecast's channel. Done before the server accepts requests, so that an event
/// published right after start-up is not lost.
pub(crate) async fn subscribe(
    broker: &SharedBroker,
    channel: &str,
) -> Result<Subscription, sidecast_core::BrokerError> {
    broker.subscribe(&[ChannelSpec::exact(channel)]).await
}

/// Runs until the broker closes the subscription.
pub(crate) fn spawn(
    mut subscription: Subscription,
    io: SocketIo,
    stats: Arc<RelayStats>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = subscription.recv().await {
            let envelope = match native::decode(&message.payload) {
                Ok(envelope) => envelope,
                Err(e) => {
                    stats.undecodable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(channel = %message.channel, error = %e, "undecodable message dropped");
                    continue;
                }
            };
            match socket::emit(&io, &envelope).await {
                Ok(()) => {
                    tracing::trace!(event = %envelope.event, origin = ?envelope.origin, "emitted");
                    stats.emitted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(event = %envelope.event, namespace = %envelope.namespace, error = %e, "emit failed");
                }
            }
        }
        tracing::debug!("broker subscription ended; relay stopped");
    })
}
