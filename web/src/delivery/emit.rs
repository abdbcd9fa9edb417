//! Emitting to this node's sockets: a broker envelope to the sockets it addresses (once per kind
//! of socket, with or without offsets), and a room operation applied to them.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;
use serde::ser::SerializeTuple;
use serde_json::Value;
use sidecast_core::Envelope;
use sidecast_core::codec::control::Control;
use sidecast_core::config::SlowClientPolicy;
use sidecast_core::envelope::now_millis;
use sidecast_core::rooms::DISCONNECT_REASON_EVENT;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SendError, SocketError, SocketIo};

use crate::delivery::memberships;
use crate::metrics::Metrics;

/// The room of sockets that are recovering: live events skip them. Its name has a control
/// character, which no room name from a client, a policy or an operation may have.
pub(crate) const RECOVERING_ROOM: &str = "\u{1}sidecast:recovering";

/// The room of the sockets that asked for offsets (an `offset` key in their CONNECT `auth`).
pub(crate) const OFFSETS_ROOM: &str = "\u{1}sidecast:offsets";

/// The room of every other socket while recovery is on: they get the published arguments only.
/// Needed because a broadcast can only add rooms and subtract rooms: "the event's rooms, but only
/// sockets with offsets" is "the event's rooms, except the plain ones".
pub(crate) const PLAIN_ROOM: &str = "\u{1}sidecast:plain";

/// The room of the Admin UI's sockets (crate::admin): every broadcast and room operation from
/// the bus leaves it out, so that no event, join or disconnect published by anyone reaches them.
pub(crate) const ADMIN_ROOM: &str = "\u{1}sidecast:admin";

/// Whether `room` is one of the internal rooms above (named with a control character, which no
/// application room may have): left out of what the node reports of its rooms.
pub(crate) fn is_internal_room(room: &str) -> bool {
    room.starts_with('\u{1}')
}

/// Which kinds of socket an event delivered with recovery on must be encoded for, and its offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery<'a> {
    /// The offset of the event (or of the last history entry before a live-only event).
    pub(crate) offset: &'a str,
    /// Whether sockets without offsets are connected to this node.
    pub(crate) plain: bool,
    /// Whether sockets with offsets are connected to this node.
    pub(crate) with_offsets: bool,
}

/// Emits an event to this node's sockets (with its offset to those that asked, when recovery is
/// on) and counts it.
pub(crate) async fn deliver_emit(
    io: &SocketIo,
    metrics: &Metrics,
    slow_client: SlowClientPolicy,
    lagging: &mut HashSet<Sid>,
    envelope: &Envelope,
    delivery: Option<Delivery<'_>>,
) {
    match emit(io, envelope, delivery, slow_client, lagging).await {
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

/// Serializes event arguments as a tuple, which socketioxide spreads into separate Socket.IO
/// arguments (`["event", a, b]`) instead of one array argument (`["event", [a, b]]`), followed by
/// the event's offset for a socket that asked for offsets (socket.io's convention: the offset
/// is the last argument, a string).
pub(crate) struct Args<'a>(pub(crate) &'a [Value], pub(crate) Option<&'a str>);

impl Serialize for Args<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len() + usize::from(self.1.is_some()))?;
        for arg in self.0 {
            tuple.serialize_element(arg)?;
        }
        if let Some(offset) = self.1 {
            tuple.serialize_element(offset)?;
        }
        tuple.end()
    }
}

/// Why an envelope reached no socket.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EmitFailure {
    #[error("namespace {0} does not exist on this server")]
    UnknownNamespace(String),
    #[error("{0}")]
    Broadcast(String),
}

/// Sockets that could not take an event.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EmitOutcome {
    /// Sockets whose queue was full and that missed the event.
    pub(crate) dropped: u64,
    /// Sockets disconnected because their queue was full.
    pub(crate) disconnected: u64,
}

/// Emits an envelope to the local sockets it addresses. With recovery on (`delivery`), sockets
/// that are still recovering are skipped (they get the event from the history, in order), and
/// the sockets that asked for offsets get the event's offset as the last argument while the
/// others get the published arguments only: one broadcast per kind of socket present.
///
/// With the `drop` policy the packet is encoded once per broadcast; sockets whose queue is full
/// miss it. The `disconnect` policy must know *which* sockets are full, which only a per-socket
/// send tells, so it encodes per socket. A full socket cannot even take the disconnect packet:
/// it is remembered in `lagging`, gets no more events, and the disconnect is retried on every
/// emit; engine.io closes it anyway at its next ping, which cannot be queued either.
pub(crate) async fn emit(
    io: &SocketIo,
    envelope: &Envelope,
    delivery: Option<Delivery<'_>>,
    policy: SlowClientPolicy,
    lagging: &mut HashSet<Sid>,
) -> Result<EmitOutcome, EmitFailure> {
    let op = addressed(io, &envelope.namespace, &envelope.rooms, &envelope.except)?;
    let mut outcome = EmitOutcome::default();
    let Some(delivery) = delivery else {
        emit_to(op, envelope, None, policy, lagging, &mut outcome).await?;
        return Ok(outcome);
    };
    if delivery.plain {
        let plain = op.clone().except([RECOVERING_ROOM, OFFSETS_ROOM]);
        emit_to(plain, envelope, None, policy, lagging, &mut outcome).await?;
    }
    if delivery.with_offsets {
        let with_offsets = if envelope.rooms.is_empty() {
            // Everyone: the room of the sockets with offsets is the smaller set to walk.
            op.to(OFFSETS_ROOM)
        } else {
            op
        }
        .except([RECOVERING_ROOM, PLAIN_ROOM]);
        let offset = Some(delivery.offset);
        emit_to(
            with_offsets,
            envelope,
            offset,
            policy,
            lagging,
            &mut outcome,
        )
        .await?;
    }
    if policy == SlowClientPolicy::Disconnect && !lagging.is_empty() {
        // Forget sockets that are gone (closed by engine.io's heartbeat).
        let live: HashSet<Sid> = io.sockets().iter().map(|s| s.id).collect();
        lagging.retain(|sid| live.contains(sid));
    }
    Ok(outcome)
}

/// Emits `envelope` to the sockets of `op` with the same arguments (`offset` last, when given),
/// adding the sockets that could not take it to `outcome`.
async fn emit_to(
    op: BroadcastOperators,
    envelope: &Envelope,
    offset: Option<&str>,
    policy: SlowClientPolicy,
    lagging: &mut HashSet<Sid>,
    outcome: &mut EmitOutcome,
) -> Result<(), EmitFailure> {
    let args = Args(&envelope.data, offset);
    match policy {
        SlowClientPolicy::Drop => match op.emit(&envelope.event, &args).await {
            Ok(()) => {}
            Err(BroadcastError::Socket(errors)) => {
                outcome.dropped += errors
                    .iter()
                    .filter(|e| matches!(e, SocketError::InternalChannelFull))
                    .count() as u64;
            }
            Err(e) => return Err(EmitFailure::Broadcast(e.to_string())),
        },
        SlowClientPolicy::Disconnect => {
            for socket in op.sockets() {
                if lagging.contains(&socket.id) {
                    if socket.clone().disconnect().is_ok() {
                        lagging.remove(&socket.id);
                    }
                    continue;
                }
                if let Err(SendError::Socket(SocketError::InternalChannelFull)) =
                    socket.emit(&envelope.event, &args)
                {
                    outcome.disconnected += 1;
                    if socket.clone().disconnect().is_err() {
                        lagging.insert(socket.id);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The sockets of a namespace that `rooms` and `except` address; everyone when `rooms` is empty.
fn addressed(
    io: &SocketIo,
    namespace: &str,
    rooms: &[String],
    except: &[String],
) -> Result<BroadcastOperators, EmitFailure> {
    let Some(mut op) = io.of(namespace) else {
        return Err(EmitFailure::UnknownNamespace(namespace.to_owned()));
    };
    if !rooms.is_empty() {
        op = op.to(rooms.to_vec());
    }
    if except.is_empty() {
        op = op.except(ADMIN_ROOM);
    } else {
        let mut except = except.to_vec();
        except.push(ADMIN_ROOM.to_owned());
        op = op.except(except);
    }
    Ok(op)
}

/// Applies a room operation to this node's sockets.
pub(crate) async fn apply(io: &SocketIo, operation: &Control) -> Result<(), EmitFailure> {
    // The local adapter cannot fail; its error type is uninhabited.
    match operation {
        Control::Join {
            rooms,
            namespace,
            except,
            join,
        } => {
            let _ = addressed(io, namespace, rooms, except)?
                .join(join.clone())
                .await;
        }
        Control::Leave {
            rooms,
            namespace,
            except,
            leave,
        } => {
            let _ = addressed(io, namespace, rooms, except)?
                .leave(leave.clone())
                .await;
        }
        Control::Disconnect {
            rooms,
            namespace,
            except,
            reason,
        } => {
            let op = addressed(io, namespace, rooms, except)?;
            if let Some(reason) = reason {
                // Queued before the DISCONNECT packet on each socket, so it arrives first.
                if let Err(e) = op.clone().emit(DISCONNECT_REASON_EVENT, reason).await {
                    tracing::debug!(error = %e, "disconnect reason not sent to every socket");
                }
            }
            op.disconnect()
                .await
                .map_err(|e| EmitFailure::Broadcast(e.to_string()))?;
        }
        Control::CloseRoom { rooms, namespace } => {
            let _ = addressed(io, namespace, rooms, &[])?
                .leave(rooms.clone())
                .await;
        }
        other => {
            return Err(EmitFailure::Broadcast(format!(
                "unknown room operation {}",
                other.name()
            )));
        }
    }
    Ok(())
}

/// Applies a decoded room operation (of the control channel, an ingress format or the history)
/// to this node's sockets, records what it changes in the remembered memberships, and tells
/// presence which sockets it may have moved in or out of tracked rooms.
pub(crate) async fn apply_operation(
    io: &SocketIo,
    metrics: &Metrics,
    memberships: &dyn memberships::MembershipStore,
    presence: Option<&crate::presence::tracker::Presence>,
    operation: &Control,
) {
    // Which sockets the operation may move in or out of tracked rooms: found before it applies.
    let affected = presence.and_then(|p| Some((p, p.affected(io, operation)?)));
    match apply(io, operation).await {
        Ok(()) => {
            if let Some((presence, sockets)) = affected {
                for socket in &sockets {
                    presence.resync(socket);
                }
            }
            metrics.room_operation(operation.name());
            if let Err(e) = memberships::record(memberships, operation).await {
                tracing::warn!(op = operation.name(), error = %e, "room operation applied to this node's sockets, but not remembered for their reconnects");
            }
            tracing::debug!(op = operation.name(), ?operation, "room operation applied");
        }
        Err(e) => {
            metrics.dropped("unknown_namespace");
            tracing::warn!(op = operation.name(), namespace = operation.namespace(), error = %e, "room operation dropped");
        }
    }
}
