//! The Socket.IO connect path: the connect middleware (runs the [`AuthPolicy`] on the handshake),
//! the rooms a socket starts in, and bringing it live (through recovery, when on).

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use sidecast_core::rooms::DISCONNECT_REASON_EVENT;
use sidecast_core::{Action, AuthError, AuthPolicy, AuthRequest, Principal, RefusalKind};
use socketioxide::SocketIo;
use socketioxide::extract::{MaybeHttpExtension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;

use crate::identity::request::{bearer_token, peer_addr};

/// What the connect middleware needs; registered as socketioxide state.
#[derive(Clone)]
pub(crate) struct SocketContext {
    pub(crate) auth: Arc<dyn AuthPolicy>,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The rooms users joined through `user:<name>`, joined again by their new sockets.
    pub(crate) memberships: crate::delivery::memberships::SharedMemberships,
    /// Whether the node started, and connection state recovery once started (when on).
    pub(crate) readiness: Arc<crate::delivery::readiness::Readiness>,
    /// Cluster-wide presence (when on), told when sockets connect and disconnect.
    pub(crate) presence: Option<Arc<crate::presence::tracker::Presence>>,
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
    MaybeHttpExtension(user): MaybeHttpExtension<crate::delivery::handshake::HandshakeUser>,
    TryData(auth): TryData<Value>,
    MaybeHttpExtension(admin_origin): MaybeHttpExtension<crate::identity::origin::AdminOrigin>,
) -> Result<(), Refusal> {
    if admin_origin.is_some() {
        // Let through for the admin namespace only (admin.allowed_origins).
        ctx.metrics.refused("origin");
        return Err(Refusal(
            "this origin may open the admin namespace only".to_owned(),
        ));
    }
    if !ctx.readiness.is_started() {
        // Handshakes are refused before this (crate::node::gate); an embedding without that layer
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
            if let Some(recovery) = ctx.readiness.recovery() {
                // Out of live events from before the socket enters the namespace until it has
                // caught up (crate::delivery::recovery); socketioxide forgets the rooms if the connect
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
/// the rooms its user joined through `user:<name>` ([`crate::delivery::memberships`]).
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
    if let Some(presence) = &ctx.presence {
        // After its first rooms are joined: one entry with all of them.
        presence.socket_connected(&socket);
    }
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
    let recovery = ctx.readiness.recovery();
    if let Some(recovery) = &recovery {
        // Counted before it goes live, and uncounted by the disconnect handler below.
        recovery.count_socket(&socket, true);
    }
    socket.on_disconnect(
        async |socket: SocketRef, reason: DisconnectReason, State(ctx): State<SocketContext>| {
            ctx.metrics.sockets_connected.dec();
            if let Some(presence) = &ctx.presence {
                presence.socket_disconnected(
                    socket.ns(),
                    socket.id.as_str(),
                    crate::presence::tracker::reason_name(reason),
                );
            }
            if let Some(ExpiryTask(task)) = socket.extensions.get::<ExpiryTask>() {
                task.abort();
            }
            if let Some(recovery) = ctx.readiness.recovery() {
                recovery.count_socket(&socket, false);
            }
        },
    );
    if let Some(recovery) = recovery {
        // After the rooms are joined: the replay selects by them.
        let start = match socket
            .extensions
            .remove::<crate::delivery::recovery::Start>()
        {
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
