//! The node's one delivery path: broker subscription → verify → decode → emit to sockets.

use std::sync::Arc;
use std::time::Duration;

use sidecast_core::codec::{control, native};
use sidecast_core::config::SlowClientPolicy;
use sidecast_core::envelope::now_millis;
use sidecast_core::{
    BrokerMessage, ChannelSpec, SharedBroker, SignatureError, Signer, Subscription,
};
use socketioxide::SocketIo;
use tokio::task::JoinHandle;

use crate::metrics::{Metrics, Source};
use crate::socket;

/// What the relay needs to know about the bus.
pub(crate) struct Bus {
    pub(crate) channel: String,
    pub(crate) control_channel: String,
    pub(crate) signer: Option<Arc<Signer>>,
    pub(crate) slow_client: SlowClientPolicy,
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
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Sockets that overflowed under the `disconnect` policy and are not gone yet.
        let mut lagging = std::collections::HashSet::new();
        while let Some(message) = subscription.recv().await {
            handle(&bus, &io, &metrics, &mut lagging, message).await;
            metrics.subscription_overflow(subscription.dropped());
        }
        tracing::debug!("broker subscription ended; relay stopped");
    })
}

async fn handle(
    bus: &Bus,
    io: &SocketIo,
    metrics: &Metrics,
    lagging: &mut std::collections::HashSet<socketioxide::socket::Sid>,
    message: BrokerMessage,
) {
    let verified;
    let payload: &[u8] = match &bus.signer {
        None => &message.payload,
        Some(signer) => match signer.open(&message.payload, now_millis()) {
            Ok(inner) => {
                verified = inner;
                &verified
            }
            Err(e) => {
                metrics.dropped(match e {
                    SignatureError::Unsigned => "unsigned",
                    _ => "bad_signature",
                });
                tracing::warn!(channel = %message.channel, error = %e, "bus message dropped");
                return;
            }
        },
    };
    if message.channel == bus.control_channel {
        metrics
            .bus_received
            .get_or_create(&Source { source: "control" })
            .inc();
        apply_control(io, metrics, payload).await;
        return;
    }
    metrics
        .bus_received
        .get_or_create(&Source { source: "native" })
        .inc();
    let envelope = match native::decode(payload) {
        Ok(envelope) => envelope,
        Err(e) => {
            metrics.dropped("undecodable");
            tracing::warn!(channel = %message.channel, error = %e, "undecodable message dropped");
            return;
        }
    };
    match socket::emit(io, &envelope, bus.slow_client, lagging).await {
        Ok(outcome) => {
            metrics.events_emitted.inc();
            if outcome.dropped > 0 {
                metrics.slow_client_drops.inc_by(outcome.dropped);
                tracing::debug!(event = %envelope.event, sockets = outcome.dropped, "slow clients missed an event");
            }
            if outcome.disconnected > 0 {
                metrics.slow_client_disconnects.inc_by(outcome.disconnected);
                tracing::info!(sockets = outcome.disconnected, "slow clients disconnected");
            }
            if let Some(ts) = envelope.ts {
                let lag = now_millis().saturating_sub(ts);
                metrics
                    .delivery_lag
                    .observe(Duration::from_millis(lag).as_secs_f64());
            }
        }
        Err(e) => {
            metrics.dropped("unknown_namespace");
            tracing::warn!(event = %envelope.event, namespace = %envelope.namespace, error = %e, "emit failed");
        }
    }
}

async fn apply_control(io: &SocketIo, metrics: &Metrics, payload: &[u8]) {
    match control::decode(payload) {
        Ok(control::Control::Disconnect { rooms, namespace }) => {
            let Some(op) = io.of(&namespace) else {
                return;
            };
            tracing::info!(?rooms, "disconnecting sockets on request of another node");
            if let Err(e) = op.to(rooms).disconnect().await {
                tracing::warn!(error = %e, "disconnect failed");
            }
        }
        Ok(other) => tracing::warn!(control = ?other, "unknown control message ignored"),
        Err(e) => {
            metrics.dropped("undecodable");
            tracing::warn!(error = %e, "undecodable control message dropped");
        }
    }
}
