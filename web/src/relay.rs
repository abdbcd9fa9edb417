//! The node's one delivery path: broker subscription → verify → decode → emit to sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sidecast_core::codec::{control, native};
use sidecast_core::envelope::now_millis;
use sidecast_core::{
    BrokerMessage, ChannelSpec, SharedBroker, SignatureError, Signer, Subscription,
};
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
    /// Messages dropped because they were not signed although `broker.signing_key` is set.
    pub unsigned: AtomicU64,
    /// Messages dropped because their signature did not verify, or they were stale or replayed.
    pub bad_signature: AtomicU64,
    /// Control messages applied (disconnects).
    pub controls: AtomicU64,
}

/// What the relay needs to know about the bus.
pub(crate) struct Bus {
    pub(crate) channel: String,
    pub(crate) control_channel: String,
    pub(crate) signer: Option<Arc<Signer>>,
}

/// Subscribes to Sidecast's event and control channels. Done before the server accepts
/// requests, so that an event published right after start-up is not lost.
pub(crate) async fn subscribe(
    broker: &SharedBroker,
    bus: &Bus,
) -> Result<Subscription, sidecast_core::BrokerError> {
    broker
        .subscribe(&[
            ChannelSpec::exact(bus.channel.clone()),
            ChannelSpec::exact(bus.control_channel.clone()),
        ])
        .await
}

/// Runs until the broker closes the subscription.
pub(crate) fn spawn(
    mut subscription: Subscription,
    bus: Bus,
    io: SocketIo,
    stats: Arc<RelayStats>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = subscription.recv().await {
            handle(&bus, &io, &stats, message).await;
        }
        tracing::debug!("broker subscription ended; relay stopped");
    })
}

async fn handle(bus: &Bus, io: &SocketIo, stats: &RelayStats, message: BrokerMessage) {
    let verified;
    let payload: &[u8] = match &bus.signer {
        None => &message.payload,
        Some(signer) => match signer.open(&message.payload, now_millis()) {
            Ok(inner) => {
                verified = inner;
                &verified
            }
            Err(e) => {
                let counter = match e {
                    SignatureError::Unsigned => &stats.unsigned,
                    _ => &stats.bad_signature,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(channel = %message.channel, error = %e, "bus message dropped");
                return;
            }
        },
    };
    if message.channel == bus.control_channel {
        apply_control(io, stats, payload).await;
        return;
    }
    let envelope = match native::decode(payload) {
        Ok(envelope) => envelope,
        Err(e) => {
            stats.undecodable.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(channel = %message.channel, error = %e, "undecodable message dropped");
            return;
        }
    };
    match socket::emit(io, &envelope).await {
        Ok(()) => {
            stats.emitted.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(event = %envelope.event, namespace = %envelope.namespace, error = %e, "emit failed");
        }
    }
}

async fn apply_control(io: &SocketIo, stats: &RelayStats, payload: &[u8]) {
    match control::decode(payload) {
        Ok(control::Control::Disconnect { rooms, namespace }) => {
            let Some(op) = io.of(&namespace) else {
                return;
            };
            tracing::info!(?rooms, "disconnecting sockets on request of another node");
            if let Err(e) = op.to(rooms).disconnect().await {
                tracing::warn!(error = %e, "disconnect failed");
            }
            stats.controls.fetch_add(1, Ordering::Relaxed);
        }
        Ok(other) => tracing::warn!(control = ?other, "unknown control message ignored"),
        Err(e) => {
            stats.undecodable.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "undecodable control message dropped");
        }
    }
}
