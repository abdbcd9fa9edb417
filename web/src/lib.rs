//! Sidecast's web layer: the page, `/login`, `/logout`, `POST /api/`, health endpoints and the
//! Socket.IO server, all fed by one broker subscription.
//!
//! ```no_run
//! # async fn run() -> Result<(), sidecast_web::StartError> {
//! use sidecast_core::Config;
//! use sidecast_core::config::BrokerKind;
//!
//! let mut config = Config::default();
//! config.broker.kind = BrokerKind::Memory;
//! let state = sidecast_web::Sidecast::builder().config(config).build().await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! sidecast_web::serve(listener, state, std::future::pending()).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use sidecast_core::{AuthPolicy, Config, Emitter, SharedBroker};
use socketioxide::SocketIo;
use socketioxide::layer::SocketIoLayer;
use tokio::task::JoinHandle;

// By role, each folder's `mod.rs` says what it holds and which way its imports go:
// `node` (building, starting, serving and stopping a node) → `delivery` (from the broker
// subscription to the sockets) → `identity` (who the caller is: sessions, origin, rate limit);
// `routes` (the HTTP handlers) use all three. `error` and `metrics` are used by every folder.
// `admin` (the Socket.IO Admin UI's namespace) is built by `node` and reads `presence::view`.
mod admin;
mod delivery;
mod error;
mod identity;
pub mod metrics;
mod node;
#[allow(unreachable_pub, dead_code)] // the view is read by the admin namespace
mod presence;
mod routes;

pub use error::{ApiError, StartError};
pub use identity::session;
pub use node::builder::SidecastBuilder;
#[allow(deprecated)]
pub use node::builder::{App, AppBuilder};
pub use node::from_config::{connect_broker, policy_from_config};
/// The built-in auth policies: the `sidecast-auth` crate.
pub use sidecast_auth as auth;
/// The reason (`sidecast:disconnect`) a socket gets when its credential expires.
pub const TOKEN_EXPIRED_REASON: &str = delivery::connect::TOKEN_EXPIRED;
#[cfg(feature = "redis")]
pub use identity::redis_sessions::RedisSessionStore;
pub use metrics::Metrics;
pub use node::serve::serve;
pub use presence::PresenceOptions;
pub use routes::page::CLIENT_JS_ROUTE;
// The request-body parsers, for the fuzz targets in fuzz/ only; not part of the API.
#[doc(hidden)]
pub use routes::fuzzing;
/// Who is in a presence room (`GET /api/presence`, [`Sidecast::presence`]).
pub use sidecast_core::presence::{Member, RoomPresence};

/// Moved: the `http` policy is [`sidecast_auth::HttpAuth`] (also `sidecast_web::auth::HttpAuth`).
#[deprecated(
    since = "0.1.0",
    note = "moved to sidecast_auth::HttpAuth (sidecast_web::auth::HttpAuth)"
)]
pub type HttpAuth = sidecast_auth::HttpAuth;

/// Moved: the `jwt` policy is [`sidecast_auth::JwtAuth`] (also `sidecast_web::auth::JwtAuth`).
#[deprecated(
    since = "0.1.0",
    note = "moved to sidecast_auth::JwtAuth (sidecast_web::auth::JwtAuth)"
)]
pub type JwtAuth = sidecast_auth::JwtAuth;

/// Moved to [`sidecast_auth::http`] (also `sidecast_web::auth::http`); these paths stay for
/// one release.
#[deprecated(since = "0.1.0", note = "moved to sidecast_auth::http")]
pub mod http_auth {
    /// Moved to [`sidecast_auth::HTTP_POLICY`].
    #[deprecated(since = "0.1.0", note = "moved to sidecast_auth::HTTP_POLICY")]
    pub const HTTP_POLICY: &str = sidecast_auth::HTTP_POLICY;
    #[allow(deprecated)]
    pub use super::HttpAuth;
}

/// Moved to [`sidecast_auth::jwt`] (also `sidecast_web::auth::jwt`); these paths stay for one
/// release.
#[deprecated(since = "0.1.0", note = "moved to sidecast_auth::jwt")]
pub mod jwt {
    /// Moved to [`sidecast_auth::JWT_POLICY`].
    #[deprecated(since = "0.1.0", note = "moved to sidecast_auth::JWT_POLICY")]
    pub const JWT_POLICY: &str = sidecast_auth::JWT_POLICY;
    #[allow(deprecated)]
    pub use super::JwtAuth;
}

/// A built node: configuration, broker, auth policy, the Socket.IO server and the relay that feeds
/// it from the broker. Cheap to clone.
///
/// Serve it whole with [`serve`] / [`app`], or embed it in your own axum application:
///
/// ```no_run
/// # async fn run() -> Result<(), sidecast_web::StartError> {
/// use axum::{Router, routing::get};
/// use sidecast_web::Sidecast;
///
/// let sidecast = Sidecast::builder().config(sidecast_core::Config::default()).build().await?;
/// let emitter = sidecast.emitter().clone(); // for your handlers
/// let router: Router = Router::new()
///     .route("/hello", get(|| async { "hi" }))   // your routes
///     .merge(sidecast.routes());                  // Sidecast's /api/, /healthz... (optional)
/// let router = sidecast.sessions(sidecast.socketio(router));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sidecast {
    inner: Arc<Inner>,
}

/// The state [`app`] and [`serve`] take: a [`Sidecast`] node.
#[deprecated(
    since = "0.1.0",
    note = "renamed `Sidecast`; the alias goes in the next release"
)]
pub type AppState = Sidecast;

/// What a node holds, shared by every clone of its [`Sidecast`].
struct Inner {
    config: Config,
    broker: SharedBroker,
    auth: Arc<dyn AuthPolicy>,
    io: SocketIo,
    layer: SocketIoLayer,
    emitter: Emitter,
    origins: Arc<identity::origin::OriginPolicy>,
    limiter: Option<identity::rate_limit::RateLimiter>,
    node_id: String,
    page: String,
    client_js: Option<Bytes>,
    sessions: session::Sessions,
    metrics: Arc<Metrics>,
    watcher: JoinHandle<()>,
    /// Where the start stands, the late parts of the node (recovery, relay) and the start task.
    startup: Arc<node::start::Startup>,
    /// Cluster-wide presence, when `[presence]` or the full directory asks for it.
    presence: Option<Arc<presence::tracker::Presence>>,
    /// The Socket.IO Admin UI's namespace and its stats task, when `admin.enabled`; held for
    /// the node's life (the task ends when it is dropped).
    #[allow(dead_code)]
    admin: Option<AdminParts>,
}

/// What a node with `[admin] enabled = true` holds.
struct AdminParts {
    /// The namespace's state.
    #[allow(dead_code)] // kept with the node
    namespace: Arc<admin::namespace::AdminNamespace>,
    /// Publishes this node's `server_stats` and relays every node's; ends with the node.
    stats: JoinHandle<()>,
}

impl Drop for AdminParts {
    fn drop(&mut self) {
        self.stats.abort();
    }
}

impl std::fmt::Debug for Sidecast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecast")
            .field("node_id", &self.inner.node_id)
            .field("broker", &self.inner.broker)
            .finish_non_exhaustive()
    }
}

impl Sidecast {
    /// A builder with the default configuration; set it with [`SidecastBuilder::config`].
    pub fn builder() -> SidecastBuilder {
        SidecastBuilder::new()
    }

    /// All of Sidecast's HTTP routes: [`Sidecast::page_routes`], [`Sidecast::api_routes`] and
    /// [`Sidecast::health_routes`], ready to [`Router::merge`] into an application router of any
    /// state type. Take them or leave them: the Socket.IO server does not need them.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.page_routes()
            .merge(self.api_routes())
            .merge(self.health_routes())
            .merge(self.admin_routes())
    }

    /// The Socket.IO Admin UI's files at `/admin/`, when `[admin]` is enabled and `admin.ui_dir`
    /// is set; otherwise no route.
    pub fn admin_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let admin = &self.inner.config.admin;
        match &admin.ui_dir {
            Some(dir) if admin.enabled => admin::ui::routes(dir),
            _ => Router::new(),
        }
    }

    /// The page of the original application (`/`), the demo `/login`, `/logout`, the recovery
    /// helper `/sidecast-recovery.js`, and the Socket.IO client script when `server.client_js` is
    /// set.
    pub fn page_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let mut router = Router::new()
            .route("/", get(routes::page::index))
            .route("/login", get(routes::login::login))
            .route("/logout", get(routes::login::logout))
            .route(
                routes::page::RECOVERY_JS_ROUTE,
                get(routes::page::recovery_js),
            );
        if self.inner.client_js.is_some() {
            router = router.route(CLIENT_JS_ROUTE, get(routes::page::client_js));
        }
        router.with_state(self.clone())
    }

    /// `POST /api/` (events) and `POST /api/rooms` (room operations): authorize, then publish
    /// through the broker; `GET /api/presence` (who is in a presence room, read locally).
    pub fn api_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/api/", post(routes::api::publish))
            .route("/api/rooms", post(routes::rooms::apply))
            .route("/api/presence", get(routes::presence::read))
            .with_state(self.clone())
    }

    /// `/healthz`, `/readyz` and `/metrics`.
    pub fn health_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/healthz", get(routes::health::healthz))
            .route("/readyz", get(routes::health::readyz))
            .route("/metrics", get(routes::health::metrics))
            .with_state(self.clone())
    }

    /// Wraps `router` in the Socket.IO server (at `server.socketio_path`) and the same-origin
    /// check of handshakes and `POST /api/`. While the node is starting, handshakes are answered
    /// with 503 and `Retry-After`, which clients retry.
    ///
    /// Socket connects are authorized by the node's [`AuthPolicy`]; the built-in `session`
    /// policy reads the `user` key of the request's [`tower_sessions::Session`], so a session
    /// layer must wrap the result: [`Sidecast::sessions`], or your own tower-sessions layer in
    /// which your login stores the user name under the key `"user"`
    /// ([`session::USER_KEY`]).
    pub fn socketio<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let handshakes = Arc::new(delivery::handshake::Handshakes {
            socketio_path: self.inner.config.server.socketio_path.as_str().into(),
            // The full directory shows each socket's handshake headers (the Admin UI's socket
            // list): every header is kept then, at a memory cost per socket.
            headers: if self
                .inner
                .presence
                .as_ref()
                .is_some_and(|p| p.full_directory())
            {
                sidecast_core::ConnectHeaders::All
            } else {
                self.inner.auth.connect_headers()
            },
        });
        let router = router
            .layer(self.inner.layer.clone())
            // Socket.IO keeps each socket's handshake request: copy it off hyper's read buffer,
            // and keep the session's user rather than the session.
            .layer(axum::middleware::from_fn_with_state(
                handshakes,
                delivery::handshake::prepare,
            ))
            // Until the node has started, handshakes fail in a way clients retry.
            .layer(axum::middleware::from_fn_with_state(
                node::gate::Gate {
                    startup: self.inner.startup.clone(),
                    socketio_path: self.inner.config.server.socketio_path.as_str().into(),
                },
                node::gate::refuse_while_starting,
            ))
            // Outside the Socket.IO layer, so that it sees the handshakes too.
            .layer(axum::middleware::from_fn_with_state(
                self.inner.origins.clone(),
                identity::origin::check,
            ));
        let admin = &self.inner.config.admin;
        if admin.enabled && !admin.allowed_origins.is_empty() {
            // Outermost: answers the preflight of a UI served elsewhere, and marks its requests
            // before the Socket.IO layer keeps them.
            router.layer(axum::middleware::from_fn_with_state(
                self.inner.origins.clone(),
                admin::ui::cors,
            ))
        } else {
            router
        }
    }

    /// Wraps `router` in the session layer `[session]` configures (cookie, memory or Redis store,
    /// signed with `session.secret`). Apply it last, so that it wraps [`Sidecast::socketio`].
    pub fn sessions<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        self.inner.sessions.apply(router)
    }

    /// The effective configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The broker this node publishes to and receives from. While the node is starting
    /// ([`Sidecast::is_started`] is `false`) it is not connected yet: publishing fails with a
    /// transient [`sidecast_core::BrokerError::Unavailable`], and it reports itself as
    /// reconnecting.
    pub fn broker(&self) -> &SharedBroker {
        &self.inner.broker
    }

    /// An emitter that publishes through this node's broker, as `POST /api/` does (failing
    /// with a transient error while the node is starting).
    pub fn emitter(&self) -> &Emitter {
        &self.inner.emitter
    }

    /// Whether the node has started: its broker answered and its subscription is active. A node
    /// built while its broker was unavailable starts later (decision 21); until then `/readyz`,
    /// `POST /api/`, `POST /api/rooms` and Socket.IO handshakes answer 503 with `Retry-After`.
    pub fn is_started(&self) -> bool {
        self.inner.startup.is_started()
    }

    /// Resolves once the node has started, or with the error that ended its start (a permanent
    /// broker error, or `broker.start_timeout_ms` passed). The error is handed out once:
    /// [`serve`] takes it when it is serving, and a later call resolves with
    /// [`StartError::Broker`]`(`[`sidecast_core::BrokerError::Closed`]`)`.
    pub async fn started(&self) -> Result<(), StartError> {
        match self.inner.startup.settled().await {
            node::start::Phase::Started => Ok(()),
            _ => Err(self
                .inner
                .startup
                .take_failure()
                .unwrap_or(StartError::Broker(sidecast_core::BrokerError::Closed))),
        }
    }

    /// The Socket.IO server.
    pub fn io(&self) -> &SocketIo {
        &self.inner.io
    }

    /// This node's random id, stamped as `origin` on what it publishes.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Who is in presence room `room` of `namespace`, across the cluster, as this node knows it
    /// (no other node is asked). `None` when `room` is not a presence room (`presence.rooms`).
    pub fn presence(&self, namespace: &str, room: &str) -> Option<RoomPresence> {
        let presence = self.inner.presence.as_ref()?;
        presence
            .is_presence_room(room)
            .then(|| presence.room(namespace, room))
    }

    /// The cluster view of sockets, when presence or the full directory is on.
    #[allow(dead_code)] // read by the admin namespace
    pub(crate) fn socket_directory(&self) -> Option<Arc<dyn presence::view::SocketDirectory>> {
        self.inner
            .presence
            .clone()
            .map(|p| p as Arc<dyn presence::view::SocketDirectory>)
    }

    /// The node's metrics (also served at `GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

/// The node's router: page, `/login`, `/logout`, `/api/`, health, and Socket.IO at
/// `server.socketio_path`, all behind the session layer.
pub fn app(state: Sidecast) -> Router {
    // The session layer wraps the Socket.IO layer, so socket handshakes see the session too.
    state.sessions(state.socketio(state.routes()))
}
