//! The Socket.IO side: authorizing connects and emitting broker envelopes to sockets.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use serde::Serialize;
use serde::ser::SerializeTuple;
use serde_json::Value;
use sidecast_core::codec::control::Control;
use sidecast_core::config::SlowClientPolicy;
use sidecast_core::rooms::DISCONNECT_REASON_EVENT;
use sidecast_core::{Action, AuthError, AuthPolicy, AuthRequest, Envelope, Principal, RefusalKind};
use socketioxide::extract::{MaybeHttpExtension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SendError, SocketError, SocketIo};

use crate::recovery::{Delivery, OFFSETS_ROOM, PLAIN_ROOM, RECOVERING_ROOM};

/// What the connect middleware needs; registered as socketioxide state.
#[derive(Clone)]
pub(crate) struct SocketContext {
    pub(crate) auth: Arc<dyn AuthPolicy>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The rooms users joined through `user:<name>`, joined again by their new sockets.
    pub(crate) memberships: crate::memberships::SharedMemberships,
    /// Where the node's start stands, and connection state recovery once started (when on).
    pub(crate) startup: Arc<crate::start::Startup>,
}

/// Registers the handlers of the namespaces served (`server.namespaces`) on `io`; clients of
/// other namespaces get socketioxide's `Invalid namespace` connect error.
pub(crate) fn register(io: &SocketIo, namespaces: &[String]) {
    for namespace in namespaces {
        io.ns(namespace.clone(), on_connect.with(authorize_connect));
    }
}

/// Why a connect was refused; its text is what the client's `connect_error` shows.
#[derive(Debug)]
pub(crate) struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connect middleware: runs the [`AuthPolicy`] on the handshake request and remembers the
/// principal in the socket's extensions.
async fn authorize_connect(
    socket: SocketRef,
    State(ctx): State<SocketContext>,
    MaybeHttpExtension(user): MaybeHttpExtension<crate::handshake::HandshakeUser>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refusal> {
    if !ctx.startup.is_started() {
        // Handshakes are refused before this (crate::gate); an embedding without that layer
        // still gets a refusal rather than a socket that would receive nothing.
        return Err(Refusal(
            "the node is starting: its broker has not answered yet".to_owned(),
        ));
    }
    let parts = socket.req_parts();
    let token = auth
        .as_ref()
        .ok()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .or_else(|| bearer_token(&parts.headers));
    let peer = peer_addr(&parts.extensions);
    let request = AuthRequest {
        action: Action::Connect {
            namespace: socket.ns(),
        },
        headers: &parts.headers,
        session_user: user.as_ref().map(|u| &*u.0),
        token,
        peer,
    };
    match ctx.auth.authorize(&request).await {
        Ok(principal) => {
            socket.extensions.insert(principal);
            if let Some(recovery) = ctx.startup.recovery() {
                // Out of live events from before the socket enters the namespace until it has
                // caught up (crate::recovery); socketioxide forgets the rooms if the connect
                // fails after this.
                let start = recovery.admit(&socket, auth.as_ref().ok()).await;
                socket.extensions.insert(start);
            }
            Ok(())
        }
        Err(e) => {
            ctx.metrics.refused(match e.kind() {
                Some(RefusalKind::Unauthenticated) => "unauthenticated",
                Some(RefusalKind::Forbidden) => "forbidden",
                Some(RefusalKind::Unavailable) => "unavailable",
                _ => "internal",
            });
            ctx.metrics.auth_refused(&e, "connect");
            let reason = match &e {
                AuthError::Internal(inner) => {
                    tracing::error!(error = %inner, "auth policy failed on connect");
                    "authorization failed".to_owned()
                }
                other => other.to_string(),
            };
            tracing::info!(peer = ?peer, reason = %reason, "socket connect refused");
            Err(Refusal(reason))
        }
    }
}

/// Connect handler: the socket joins the room of its principal, `user:<name>`, the room named by
/// its own id (as in Socket.IO, so that room operations and events can address one socket), and
/// the rooms its user joined through `user:<name>` ([`crate::memberships`]).
async fn on_connect(socket: SocketRef, State(ctx): State<SocketContext>) {
    socket.join(socket.id.to_string());
    if let Some(principal) = socket.extensions.get::<Principal>() {
        tracing::debug!(sid = %socket.id, user = %principal, "socket connected");
        socket.join(principal.room());
        if !principal.rooms.is_empty() {
            // Rooms the policy handed out at connect, within the room rules.
            let (valid, invalid): (Vec<String>, Vec<String>) = principal
                .rooms
                .iter()
                .cloned()
                .partition(|r| sidecast_core::rooms::validate_room(r).is_ok());
            if !invalid.is_empty() {
                tracing::warn!(user = %principal, rooms = ?invalid, "the auth policy gave room names that break the room rules; left out");
            }
            socket.join(valid);
        }
        match ctx.memberships.rooms_of(socket.ns(), &principal.id).await {
            Ok(rooms) if !rooms.is_empty() => {
                tracing::debug!(sid = %socket.id, ?rooms, "rejoined the user's rooms");
                socket.join(rooms);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(sid = %socket.id, user = %principal, error = %e, "the user's rooms are unknown; the socket is in its own rooms only")
            }
        }
    }
    ctx.metrics.sockets_connected.inc();
    if let Some(at) = socket
        .extensions
        .get::<Principal>()
        .and_then(|p| p.expires_at)
    {
        // The credential (a token's exp) ends the socket: the client sees why, and reconnects
        // with a fresh one. Aborted when the socket goes first.
        let expiring = socket.clone();
        let delay = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            tracing::debug!(sid = %expiring.id, "credential expired; disconnecting the socket");
            let _ = expiring.emit(DISCONNECT_REASON_EVENT, TOKEN_EXPIRED);
            let _ = expiring.disconnect();
        });
        socket.extensions.insert(ExpiryTask(task.abort_handle()));
    }
    let recovery = ctx.startup.recovery();
    if let Some(recovery) = &recovery {
        // Counted before it goes live, and uncounted by the disconnect handler below.
        let with_offsets = socket
            .extensions
            .get::<crate::recovery::WithOffsets>()
            .is_some();
        recovery.count_socket(with_offsets, true);
    }
    socket.on_disconnect(
        async |socket: SocketRef, State(ctx): State<SocketContext>| {
            ctx.metrics.sockets_connected.dec();
            if let Some(ExpiryTask(task)) = socket.extensions.get::<ExpiryTask>() {
                task.abort();
            }
            if let Some(recovery) = ctx.startup.recovery() {
                let with_offsets = socket
                    .extensions
                    .get::<crate::recovery::WithOffsets>()
                    .is_some();
                recovery.count_socket(with_offsets, false);
            }
        },
    );
    if let Some(recovery) = recovery {
        // After the rooms are joined: the replay selects by them.
        let start = match socket.extensions.remove::<crate::recovery::Start>() {
            Some(start) => start,
            // Not expected (the middleware sets it); start at the node's position.
            None => recovery.start_now().await,
        };
        recovery.recover(socket, start).await;
    }
}

/// The reason a socket whose credential expired gets (as `sidecast:disconnect`) before it is
/// disconnected.
pub(crate) const TOKEN_EXPIRED: &str = "token expired; reconnect with a fresh token";

/// The task that disconnects a socket when its credential expires.
#[derive(Clone)]
struct ExpiryTask(tokio::task::AbortHandle);

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The peer address recorded by `into_make_service_with_connect_info`, when served that way.
pub(crate) fn peer_addr(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
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
    if !except.is_empty() {
        op = op.except(except.to_vec());
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
