//! The presence bus task: subscribes to `<broker.channel>:presence`, asks the running nodes for
//! their state, sends this node's changes (numbered), its heartbeat and its snapshots when asked,
//! applies the other nodes' messages to the replica, drops the nodes that fell silent, and asks
//! again after the broker reconnects.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sidecast_core::envelope::now_millis;
use sidecast_core::presence::wire::{self, Message};
use sidecast_core::{BrokerError, ChannelSpec, SharedBroker, Signer, Subscription};
use tokio::task::JoinHandle;

use crate::presence::tracker::{Bus, Presence};

/// Subscribes, asks every node for its state and spawns the task; it ends when the broker closes
/// the subscription.
pub(crate) async fn start(
    presence: Arc<Presence>,
    broker: SharedBroker,
    base: &str,
    signer: Option<Arc<Signer>>,
) -> Result<JoinHandle<()>, BrokerError> {
    let channel = sidecast_core::presence::channel(base);
    let subscription = broker
        .subscribe(&[ChannelSpec::exact(channel.clone())])
        .await?;
    let _ = presence.bus.set(Bus {
        broker,
        channel,
        signer,
    });
    // After subscribing, so that no answer is missed.
    send(
        &presence,
        &Message::SnapshotRequest {
            node: presence.node_id.clone(),
            to: None,
        },
    )
    .await?;
    let _diffs = spawn_diffs(presence.clone());
    Ok(tokio::spawn(run(presence, subscription)))
}

/// Publishes `message` on the presence channel.
pub(crate) async fn send(presence: &Presence, message: &Message) -> Result<(), BrokerError> {
    let Some(bus) = presence.bus.get() else {
        return Ok(());
    };
    presence.metrics.presence_message("sent", kind(message));
    bus.broker
        .publish(&bus.channel, wire::encode(message, bus.signer.as_deref()))
        .await
}

/// Tells the other nodes that this one stops: they drop its sockets at once, with leaves.
pub(crate) async fn stop(presence: &Presence) {
    let message = Message::Stop {
        node: presence.node_id.clone(),
    };
    if let Err(e) = send(presence, &message).await {
        tracing::debug!(error = %e, "presence stop not sent; the other nodes drop this one after its missed heartbeats");
    }
}

fn kind(message: &Message) -> &'static str {
    match message {
        Message::Heartbeat { .. } => "heartbeat",
        Message::Delta { .. } => "delta",
        Message::SnapshotRequest { .. } => "snapshot_request",
        Message::Snapshot { .. } => "snapshot",
        Message::Stop { .. } => "stop",
        _ => "other",
    }
}

async fn run(presence: Arc<Presence>, mut subscription: Subscription) {
    let heartbeat_ms = presence.config.heartbeat_ms;
    let timeout_ms = heartbeat_ms * u64::from(presence.config.missed_heartbeats);
    let mut heartbeat = tokio::time::interval(Duration::from_millis(heartbeat_ms));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0_u64;
    let mut connected = true;
    loop {
        tokio::select! {
            received = subscription.recv() => {
                let Some(received) = received else {
                    tracing::debug!("presence subscription ended");
                    return;
                };
                let signer = presence.bus.get().and_then(|b| b.signer.as_deref());
                let Some(message) = wire::decode(&received.payload, signer) else {
                    presence.metrics.presence_message("received", "unreadable");
                    continue;
                };
                presence.metrics.presence_message("received", kind(&message));
                let received = {
                    let mut replica = presence.replica();
                    let received = replica.receive(message, now_millis());
                    presence.metrics.presence_view(&replica);
                    received
                };
                presence.dispatch(received.events);
                if received.answer {
                    answer(&presence, &mut seq).await;
                }
                if let Some(node) = received.ask {
                    tracing::debug!(node = %node, "asking a node for its presence state");
                    let request = Message::SnapshotRequest { node: presence.node_id.clone(), to: Some(node) };
                    if let Err(e) = send(&presence, &request).await {
                        tracing::debug!(error = %e, "presence snapshot request not sent");
                    }
                }
            }
            () = presence.outbox_ready.notified() => {
                flush(&presence, &mut seq).await;
            }
            _ = heartbeat.tick() => {
                presence.refresh_transports();
                flush(&presence, &mut seq).await;
                let sockets = presence.replica().own().1.len();
                let beat = Message::Heartbeat { node: presence.node_id.clone(), seq, sockets };
                let sent = send(&presence, &beat).await;
                let expired = presence.replica().expire(now_millis(), timeout_ms);
                for event in &expired {
                    if let sidecast_core::presence::Event::NodeDown { node } = event {
                        tracing::info!(node = %node, timeout_ms, "a node missed its presence heartbeats; its sockets are dropped");
                    }
                }
                presence.dispatch(expired);
                // Back from an outage: what was missed meanwhile is asked for again, and the
                // other nodes, which may have dropped this one, learn its state.
                let up = sent.is_ok()
                    && presence.bus.get().is_some_and(|b| b.broker.health().is_connected());
                if up && !connected {
                    tracing::info!("broker back: asking every node for its presence state again");
                    let request = Message::SnapshotRequest { node: presence.node_id.clone(), to: None };
                    let _ = send(&presence, &request).await;
                    answer(&presence, &mut seq).await;
                }
                connected = up;
                presence.metrics.presence_view(&presence.replica());
            }
        }
    }
}

/// Sends the changes waiting in the outbox as the next numbered delta.
async fn flush(presence: &Presence, seq: &mut u64) {
    let changes = {
        // Under the replica's lock, so that a snapshot taken later carries this number.
        let mut replica = presence.replica();
        let changes = presence.take_outbox();
        if changes.is_empty() {
            return;
        }
        *seq += 1;
        replica.set_own_seq(*seq);
        changes
    };
    let delta = Message::Delta {
        node: presence.node_id.clone(),
        seq: *seq,
        changes,
    };
    if let Err(e) = send(presence, &delta).await {
        // The others see the gap in the numbers and ask for a snapshot.
        tracing::debug!(error = %e, "presence changes not sent");
    }
}

/// Sends this node's whole state (after what is waiting in the outbox).
async fn answer(presence: &Presence, seq: &mut u64) {
    flush(presence, seq).await;
    let (own_seq, sockets) = presence.replica().own();
    let snapshot = Message::Snapshot {
        node: presence.node_id.clone(),
        seq: own_seq.max(*seq),
        sockets,
    };
    if let Err(e) = send(presence, &snapshot).await {
        tracing::debug!(error = %e, "presence snapshot not sent");
    }
}

/// Sends the pending diffs every `presence.diff_interval_ms` while there are some, until the
/// node stops.
pub(crate) fn spawn_diffs(presence: Arc<Presence>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_millis(presence.config.diff_interval_ms);
        loop {
            presence.diffs.ready.notified().await;
            tokio::time::sleep(interval).await;
            flush_diffs(&presence).await;
        }
    })
}

/// Sends every pending diff to the sockets of its room on this node.
async fn flush_diffs(presence: &Presence) {
    let pending = presence.diffs.take();
    let Some(io) = presence.io() else {
        return;
    };
    let max = presence.config.max_members;
    for ((nsp, room), joins, leaves) in pending {
        if joins.is_empty() && leaves.is_empty() {
            continue;
        }
        let Some(op) = io.of(nsp.as_str()) else {
            continue;
        };
        let state = presence.room(&nsp, &room);
        // Past `max_members` changes in one interval, the lists are cut (the counts stay exact):
        // a reconnect storm in a large room must not send each socket every user.
        let truncated = joins.len() > max || leaves.len() > max;
        let joins: Vec<Value> = joins
            .into_iter()
            .take(max)
            .map(|(user, info)| match info {
                Some(info) => json!({ "user": user, "info": info }),
                None => json!({ "user": user }),
            })
            .collect();
        let leaves: Vec<Value> = leaves
            .into_iter()
            .take(max)
            .map(|user| json!({ "user": user }))
            .collect();
        let payload = json!({
            "room": room,
            "joins": joins,
            "leaves": leaves,
            "user_count": state.user_count,
            "connection_count": state.connection_count,
            "truncated": truncated,
        });
        if let Err(e) = op
            .to(room.clone())
            .emit(crate::presence::notify::DIFF_EVENT, &payload)
            .await
        {
            tracing::debug!(room = %room, error = %e, "presence diff not sent to every socket");
        }
    }
}
