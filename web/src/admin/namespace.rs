//! The admin namespace: who may connect (the UI's credentials, `admin.max_connections`), what
//! each admin socket is sent (`session`, `config`, and in development mode the cluster's sockets
//! and their changes), and the actions it may send (`join`, `leave`, `_disconnect`), carried out
//! as room operations published on the bus so that every node applies them to its own sockets.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use sidecast_core::Emitter;
use sidecast_core::config::{AdminConfig, AdminMode};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use tokio::sync::broadcast::error::RecvError;

use crate::admin::login::{Credentials, Login, LoginError};
use crate::admin::wire::{SerializedSocket, now_iso};
use crate::delivery::emit::ADMIN_ROOM;
use crate::metrics::{Metrics, Reason};
use crate::presence::view::{SocketDirectory, ViewChange};

/// The admin namespace's shared state.
pub(crate) struct AdminNamespace {
    pub(crate) config: AdminConfig,
    /// `server.namespaces`: the only ones actions may name and lists show.
    pub(crate) app_namespaces: Vec<String>,
    pub(crate) credentials: Credentials,
    /// The node's emitter: actions travel as room operations, like `POST /api/rooms`.
    pub(crate) emitter: Emitter,
    /// The cluster view (every socket of every node), when the node keeps one.
    pub(crate) directory: Option<Arc<dyn SocketDirectory>>,
    metrics: Arc<Metrics>,
    connected: AtomicUsize,
}

/// Why an admin connect was refused; the text is the UI's `connect_error`.
#[derive(Debug)]
pub(crate) struct AdminRefusal(String);

impl std::fmt::Display for AdminRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session id to hand to the socket once connected (a password login).
#[derive(Clone)]
struct NewSession(String);

/// The task forwarding the cluster view's changes to one admin socket.
#[derive(Clone)]
struct Forwarder(tokio::task::AbortHandle);

impl AdminNamespace {
    /// The namespace's state for `config` (validated, enabled).
    pub(crate) fn new(
        config: AdminConfig,
        app_namespaces: Vec<String>,
        emitter: Emitter,
        directory: Option<Arc<dyn SocketDirectory>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            credentials: Credentials::new(&config),
            config,
            app_namespaces,
            emitter,
            directory,
            metrics,
            connected: AtomicUsize::new(0),
        })
    }

    /// Serves the admin namespace on `io`.
    pub(crate) fn register(self: &Arc<Self>, io: &SocketIo) {
        let on_connect = {
            let admin = self.clone();
            move |socket: SocketRef| {
                let admin = admin.clone();
                async move { admin.connected(socket) }
            }
        };
        let middleware = {
            let admin = self.clone();
            move |socket: SocketRef, TryData(auth): TryData<Value>| {
                let admin = admin.clone();
                async move { admin.authorize(&socket, auth.ok()).await }
            }
        };
        io.ns(self.config.namespace.clone(), on_connect.with(middleware));
    }

    /// The features the UI offers: none of its actions when read-only. `EMIT` is not offered
    /// (Sidecast's sockets receive from the bus; the UI's emit is unfinished too), nor the event
    /// logs (`ALL_EVENTS`, `AGGREGATED_EVENTS`), which would cost a message per event.
    pub(crate) fn supported_features(&self) -> Vec<&'static str> {
        if self.config.read_only {
            Vec::new()
        } else {
            vec![
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
            ]
        }
    }

    fn count_login(&self, reason: &'static str) {
        self.metrics
            .admin_logins
            .get_or_create(&Reason { reason })
            .inc();
    }

    fn count_action(&self, reason: &'static str) {
        self.metrics
            .admin_actions
            .get_or_create(&Reason { reason })
            .inc();
    }

    async fn authorize(&self, socket: &SocketRef, auth: Option<Value>) -> Result<(), AdminRefusal> {
        let peer = crate::identity::request::peer_addr(&socket.req_parts().extensions);
        match self.credentials.check(auth.as_ref()).await {
            Ok(login) => {
                // Counted here, uncounted by the disconnect handler: the limit holds under a rush.
                let before = self.connected.fetch_add(1, Ordering::SeqCst);
                if before >= self.config.max_connections {
                    self.connected.fetch_sub(1, Ordering::SeqCst);
                    self.count_login("too_many_connections");
                    tracing::warn!(peer = ?peer, max = self.config.max_connections, "admin connect refused: admin.max_connections reached");
                    return Err(AdminRefusal("too many admin connections".to_owned()));
                }
                match login {
                    Login::Password(session) => {
                        self.count_login("password");
                        tracing::info!(peer = ?peer, "admin logged in");
                        socket.extensions.insert(NewSession(session));
                    }
                    Login::Session => self.count_login("session"),
                }
                Ok(())
            }
            Err(e) => {
                self.count_login(match e {
                    LoginError::Invalid => "invalid",
                    LoginError::TooManyAttempts => "too_many_attempts",
                });
                tracing::info!(peer = ?peer, reason = %e, "admin connect refused");
                if e == LoginError::TooManyAttempts {
                    tracing::warn!(
                        "admin.login_attempts_per_minute reached: password checks refused for the rest of the minute"
                    );
                }
                Err(AdminRefusal(e.to_string()))
            }
        }
    }

    fn connected(self: Arc<Self>, socket: SocketRef) {
        // Out of reach of anything published on the bus (crate::delivery::emit::addressed).
        socket.join(ADMIN_ROOM);
        if let Some(NewSession(session)) = socket.extensions.remove::<NewSession>() {
            let _ = socket.emit("session", &session);
        }
        let _ = socket.emit(
            "config",
            &json!({"supportedFeatures": self.supported_features()}),
        );
        if !self.config.read_only {
            self.actions(&socket);
        }
        if self.config.mode == AdminMode::Development {
            let task = tokio::spawn(self.clone().forward(socket.clone()));
            socket.extensions.insert(Forwarder(task.abort_handle()));
        }
        let admin = self.clone();
        socket.on_disconnect(move |socket: SocketRef| {
            admin.connected.fetch_sub(1, Ordering::SeqCst);
            if let Some(Forwarder(task)) = socket.extensions.get::<Forwarder>() {
                task.abort();
            }
            async {}
        });
    }

    /// `all_sockets`, then every change of the cluster view, to one admin socket.
    async fn forward(self: Arc<Self>, socket: SocketRef) {
        let Some(directory) = self.directory.clone() else {
            // No view on this node: an empty list, so that the UI does not wait.
            let _ = socket.emit("all_sockets", &Vec::<SerializedSocket>::new());
            return;
        };
        // Subscribed before the list is read: no change falls between the two.
        let mut changes = directory.changes();
        self.send_all(&socket, directory.as_ref());
        loop {
            match changes.recv().await {
                Ok(change) => self.send_change(&socket, change),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        "admin socket lagged behind the cluster view; sending the list again"
                    );
                    self.send_all(&socket, directory.as_ref());
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    fn serves(&self, nsp: &str) -> bool {
        self.app_namespaces.iter().any(|n| n == nsp)
    }

    fn send_all(&self, socket: &SocketRef, directory: &dyn SocketDirectory) {
        let sockets: Vec<SerializedSocket> = directory
            .sockets()
            .iter()
            .filter(|r| self.serves(&r.nsp))
            .map(SerializedSocket::from_record)
            .collect();
        let _ = socket.emit("all_sockets", &sockets);
    }

    fn send_change(&self, socket: &SocketRef, change: ViewChange) {
        let now = now_iso();
        let _ = match change {
            ViewChange::SocketConnected(record) if self.serves(&record.nsp) => socket.emit(
                "socket_connected",
                &(SerializedSocket::from_record(&record), now),
            ),
            ViewChange::SocketDisconnected {
                nsp, sid, reason, ..
            } if self.serves(&nsp) => socket.emit("socket_disconnected", &(nsp, sid, reason, now)),
            ViewChange::RoomJoined { nsp, room, sid } if self.serves(&nsp) => {
                socket.emit("room_joined", &(nsp, room, sid, now))
            }
            ViewChange::RoomLeft { nsp, room, sid } if self.serves(&nsp) => {
                socket.emit("room_left", &(nsp, room, sid, now))
            }
            _ => Ok(()),
        };
    }

    /// The handlers of the UI's actions, limited to `admin.actions_per_minute` per socket.
    fn actions(self: &Arc<Self>, socket: &SocketRef) {
        let per_minute = NonZeroU32::new(self.config.actions_per_minute).unwrap_or(NonZeroU32::MIN);
        let limit = Arc::new(governor::RateLimiter::direct(governor::Quota::per_minute(
            per_minute,
        )));
        let (admin, limiter) = (self.clone(), limit.clone());
        socket.on(
            "join",
            move |Data((nsp, room, filter)): Data<(String, String, Option<String>)>| {
                let (admin, limiter) = (admin.clone(), limiter.clone());
                async move {
                    if limiter.check().is_ok() {
                        admin.act(Action::Join(room), &nsp, filter).await;
                    } else {
                        admin.count_action("rate_limited");
                        tracing::warn!("admin action dropped: admin.actions_per_minute reached");
                    }
                }
            },
        );
        let (admin, limiter) = (self.clone(), limit.clone());
        socket.on(
            "leave",
            move |Data((nsp, room, filter)): Data<(String, String, Option<String>)>| {
                let (admin, limiter) = (admin.clone(), limiter.clone());
                async move {
                    if limiter.check().is_ok() {
                        admin.act(Action::Leave(room), &nsp, filter).await;
                    } else {
                        admin.count_action("rate_limited");
                        tracing::warn!("admin action dropped: admin.actions_per_minute reached");
                    }
                }
            },
        );
        let (admin, limiter) = (self.clone(), limit);
        socket.on(
            "_disconnect",
            move |Data((nsp, _close, filter)): Data<(String, Value, Option<String>)>| {
                let (admin, limiter) = (admin.clone(), limiter.clone());
                async move {
                    if limiter.check().is_ok() {
                        admin.act(Action::Disconnect, &nsp, filter).await;
                    } else {
                        admin.count_action("rate_limited");
                        tracing::warn!("admin action dropped: admin.actions_per_minute reached");
                    }
                }
            },
        );
    }

    /// Publishes one action as a room operation. `filter` is a room (a socket's id is a room:
    /// the UI's per-socket buttons pass it); no filter means every socket of `nsp`, which a
    /// disconnect does not accept.
    pub(crate) async fn act(&self, action: Action, nsp: &str, filter: Option<String>) {
        if !self.serves(nsp) {
            self.count_action("refused");
            tracing::warn!(namespace = %nsp, "admin action refused: not one of server.namespaces");
            return;
        }
        let mut emitter = self.emitter.of(nsp);
        if let Some(filter) = &filter {
            emitter = emitter.to(filter.clone());
        }
        let (name, result) = match &action {
            Action::Join(room) => ("join", emitter.join(room.clone()).await),
            Action::Leave(room) => ("leave", emitter.leave(room.clone()).await),
            Action::Disconnect if filter.is_none() => {
                self.count_action("refused");
                tracing::warn!(namespace = %nsp, "admin disconnect without a socket or room refused: it would disconnect every socket");
                return;
            }
            Action::Disconnect => ("disconnect", emitter.disconnect(None).await),
        };
        match result {
            Ok(()) => {
                self.count_action(name);
                tracing::info!(action = name, namespace = %nsp, filter = ?filter, "admin action published")
            }
            Err(e) => {
                self.count_action("failed");
                tracing::warn!(action = name, namespace = %nsp, filter = ?filter, error = %e, "admin action failed")
            }
        }
    }
}

/// An action of the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// The addressed sockets join this room.
    Join(String),
    /// The addressed sockets leave this room.
    Leave(String),
    /// The addressed sockets are disconnected.
    Disconnect,
}
