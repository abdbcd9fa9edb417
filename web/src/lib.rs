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

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use sidecast_core::codec::control;
use sidecast_core::config::{BrokerKind, PolicyKind};
use sidecast_core::{
    AllowAll, AnyOf, AuthPolicy, Config, Emitter, MemoryBroker, SessionAuth, SharedBroker,
    TokenAuth,
};
use socketioxide::SocketIo;
use socketioxide::layer::SocketIoLayer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

mod error;
mod handshake;
pub mod metrics;
mod origin;
#[cfg(feature = "redis")]
mod redis_sessions;
mod relay;
mod routes;
pub mod session;
mod socket;

pub use error::{ApiError, StartError};
pub use metrics::Metrics;
#[cfg(feature = "redis")]
pub use redis_sessions::RedisSessionStore;

/// Where the page loads a local copy of the Socket.IO client from, when `server.client_js` is set.
pub const CLIENT_JS_ROUTE: &str = "/socket.io.min.js";

/// The former name of the entry point: `App::builder(config)` is
/// `Sidecast::builder().config(config)`.
#[deprecated(
    since = "0.1.0",
    note = "use `Sidecast::builder().config(config)`; `App` goes in the next release"
)]
#[derive(Debug, Clone, Copy)]
pub struct App;

#[allow(deprecated)]
impl App {
    /// A builder for a node with this configuration.
    pub fn builder(config: Config) -> SidecastBuilder {
        Sidecast::builder().config(config)
    }
}

/// The former name of [`SidecastBuilder`].
#[deprecated(
    since = "0.1.0",
    note = "renamed `SidecastBuilder`; the alias goes in the next release"
)]
pub type AppBuilder = SidecastBuilder;

/// Builds a [`Sidecast`] node; the broker and auth policy come from configuration unless given.
pub struct SidecastBuilder {
    config: Config,
    broker: Option<SharedBroker>,
    auth: Option<Arc<dyn AuthPolicy>>,
}

impl std::fmt::Debug for SidecastBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecastBuilder")
            .field("broker", &self.broker)
            .field("custom_auth", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

impl SidecastBuilder {
    /// Replaces the configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Uses this broker instead of the one `broker.kind` names.
    pub fn broker(mut self, broker: SharedBroker) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Uses this auth policy instead of the one `auth.policy` names.
    pub fn auth(mut self, policy: impl AuthPolicy) -> Self {
        self.auth = Some(Arc::new(policy));
        self
    }

    /// Connects the broker, subscribes to Sidecast's channel and prepares the routes.
    ///
    /// The subscription is made here, before anything is served, so that the node receives every
    /// event published after this returns.
    pub async fn build(self) -> Result<Sidecast, StartError> {
        let config = self.config;
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let client_js = match &config.server.client_js {
            Some(path) => Some(Bytes::from(tokio::fs::read(path).await.map_err(
                |source| StartError::File {
                    key: "server.client_js",
                    path: path.display().to_string(),
                    source,
                },
            )?)),
            None => None,
        };
        let auth = match self.auth {
            Some(auth) => auth,
            None => policy_from_config(&config)?,
        };
        let broker = match self.broker {
            Some(broker) => broker,
            None => connect_broker(&config).await?,
        };

        let metrics = Arc::new(Metrics::new());
        let (layer, io) = SocketIo::builder()
            .req_path(config.server.socketio_path.clone())
            // Polling requests and websocket messages alike.
            .max_payload(config.server.max_socket_payload_bytes)
            .ws_max_message_size(
                usize::try_from(config.server.max_socket_payload_bytes).unwrap_or(usize::MAX),
            )
            .max_buffer_size(config.server.socket_buffer)
            .ws_read_buffer_size(handshake::WS_READ_BUFFER_BYTES)
            .ping_interval(Duration::from_millis(config.server.ping_interval_ms))
            .ping_timeout(Duration::from_millis(config.server.ping_timeout_ms))
            .with_state(socket::SocketContext {
                auth: auth.clone(),
                metrics: metrics.clone(),
            })
            .build_layer();
        socket::register(&io);

        let signer = (!config.broker.signing_key.is_empty()).then(|| {
            Arc::new(sidecast_core::Signer::new(
                config.broker.signing_key.expose(),
                Duration::from_millis(config.broker.signing_max_age_ms),
            ))
        });
        let bus = relay::Bus {
            channel: config.broker.channel.clone(),
            control_channel: control::channel(&config.broker.channel),
            signer: signer.clone(),
            slow_client: config.server.slow_client,
            ingress: relay::Ingress::from_config(&config.broker.ingress),
        };
        let subscription = relay::subscribe(&broker, &bus).await?;
        let control_channel = bus.control_channel.clone();
        let relay = relay::spawn(subscription, bus, io.clone(), metrics.clone());
        let watcher = watch_broker(broker.clone(), metrics.clone());

        let node_id = uuid::Uuid::new_v4().to_string();
        let mut emitter = Emitter::new(broker.clone(), config.broker.channel.clone())
            .with_origin(node_id.clone());
        if let Some(signer) = signer {
            emitter = emitter.signed(signer);
        }
        let origins = Arc::new(origin::OriginPolicy::new(
            &config.server.allowed_origins,
            &config.server.socketio_path,
            Some(metrics.clone()),
        ));
        let limiter = rate_limiter(&config);
        let page = render_page(&config);
        let sessions =
            session::Sessions::from_config(&config.session, redis_session_store(&config)?)?;
        Ok(Sidecast {
            inner: Arc::new(Inner {
                config,
                broker,
                auth,
                io,
                layer,
                emitter,
                control_channel,
                origins,
                limiter,
                node_id,
                page,
                client_js,
                sessions,
                metrics,
                watcher,
                relay: std::sync::Mutex::new(Some(relay)),
            }),
        })
    }
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

struct Inner {
    config: Config,
    broker: SharedBroker,
    auth: Arc<dyn AuthPolicy>,
    io: SocketIo,
    layer: SocketIoLayer,
    emitter: Emitter,
    control_channel: String,
    origins: Arc<origin::OriginPolicy>,
    limiter: Option<RateLimiter>,
    node_id: String,
    page: String,
    client_js: Option<Bytes>,
    sessions: session::Sessions,
    metrics: Arc<Metrics>,
    watcher: JoinHandle<()>,
    relay: std::sync::Mutex<Option<JoinHandle<()>>>,
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
        SidecastBuilder {
            config: Config::default(),
            broker: None,
            auth: None,
        }
    }

    /// All of Sidecast's HTTP routes: [`Sidecast::page_routes`], [`Sidecast::api_routes`] and
    /// [`Sidecast::health_routes`], ready to [`Router::merge`] into an application router of any
    /// state type. Take them or leave them: the Socket.IO server does not need them.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.page_routes()
            .merge(self.api_routes())
            .merge(self.health_routes())
    }

    /// The page of the original application (`/`), the demo `/login`, `/logout`, and the
    /// Socket.IO client script when `server.client_js` is set.
    pub fn page_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let mut router = Router::new()
            .route("/", get(routes::index))
            .route("/login", get(routes::login))
            .route("/logout", get(routes::logout));
        if self.inner.client_js.is_some() {
            router = router.route(CLIENT_JS_ROUTE, get(routes::client_js));
        }
        router.with_state(self.clone())
    }

    /// `POST /api/`: authorize, then publish through the broker.
    pub fn api_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/api/", post(routes::publish))
            .with_state(self.clone())
    }

    /// `/healthz`, `/readyz` and `/metrics`.
    pub fn health_routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route("/healthz", get(routes::healthz))
            .route("/readyz", get(routes::readyz))
            .route("/metrics", get(routes::metrics))
            .with_state(self.clone())
    }

    /// Wraps `router` in the Socket.IO server (at `server.socketio_path`) and the same-origin
    /// check of handshakes and `POST /api/`.
    ///
    /// Socket connects are authorized by the node's [`AuthPolicy`]; the built-in `session`
    /// policy reads the `user` key of the request's [`tower_sessions::Session`], so a session
    /// layer must wrap the result: [`Sidecast::sessions`], or your own tower-sessions layer in
    /// which your login stores the user name under the key `"user"`
    /// ([`session::USER_KEY`]).
    pub fn socketio<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let socketio_path: Arc<str> = self.inner.config.server.socketio_path.as_str().into();
        router
            .layer(self.inner.layer.clone())
            // Socket.IO keeps each socket's handshake request: copy it off hyper's read buffer.
            .layer(tower::util::MapRequestLayer::new(
                move |request: axum::extract::Request| {
                    if handshake::is_socketio_path(request.uri().path(), &socketio_path) {
                        handshake::compact(request)
                    } else {
                        request
                    }
                },
            ))
            // Outside the Socket.IO layer, so that it sees the handshakes too.
            .layer(axum::middleware::from_fn_with_state(
                self.inner.origins.clone(),
                origin::check,
            ))
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

    /// The broker this node publishes to and receives from.
    pub fn broker(&self) -> &SharedBroker {
        &self.inner.broker
    }

    /// An emitter that publishes through this node's broker, as `POST /api/` does.
    pub fn emitter(&self) -> &Emitter {
        &self.inner.emitter
    }

    /// The Socket.IO server.
    pub fn io(&self) -> &SocketIo {
        &self.inner.io
    }

    /// This node's random id, stamped as `origin` on what it publishes.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The node's metrics (also served at `GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Disconnects every socket, closes the broker and waits for the relay to stop.
    pub async fn shutdown(&self) {
        self.inner.io.clone().close().await;
        self.inner.watcher.abort();
        self.inner.broker.close().await;
        let relay = self
            .inner
            .relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(relay) = relay {
            // The relay ends when the broker closes its subscription.
            let _ = relay.await;
        }
    }
}

/// The node's router: page, `/login`, `/logout`, `/api/`, health, and Socket.IO at
/// `server.socketio_path`, all behind the session layer.
pub fn app(state: Sidecast) -> Router {
    // The session layer wraps the Socket.IO layer, so socket handshakes see the session too.
    state.sessions(state.socketio(state.routes()))
}

/// Serves the node on `listener` until `shutdown` resolves, then shuts down gracefully: it stops
/// accepting connections, closes the sockets' transports after a random delay within
/// `server.shutdown_jitter_ms` (their clients reconnect to the other nodes), lets in-flight
/// requests finish, and closes the broker — all within `server.shutdown_timeout_ms`, after which
/// remaining connections are cut.
///
/// Accepted connections get `TCP_NODELAY`, so that each event's small frame leaves at once.
pub async fn serve(
    listener: TcpListener,
    state: Sidecast,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let server_config = &state.inner.config.server;
    let timeout = Duration::from_millis(server_config.shutdown_timeout_ms);
    let jitter = Duration::from_millis(server_config.shutdown_jitter_ms);
    let router = app(state.clone());
    let (begin_tx, begin_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = axum::serve::ListenerExt::tap_io(listener, handshake::tune_accepted);
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = begin_tx.send(());
    });
    let mut server = tokio::spawn(server.into_future());
    let result = tokio::select! {
        // The server stopped by itself: an I/O error.
        joined = &mut server => joined.map_err(std::io::Error::other).and_then(|r| r),
        Ok(()) = begin_rx => {
            tracing::info!(?timeout, ?jitter, "shutting down: closing sockets");
            let closing = tokio::spawn(close_sockets(state.inner.io.clone(), jitter));
            let result = match tokio::time::timeout(timeout, &mut server).await {
                Ok(joined) => joined.map_err(std::io::Error::other).and_then(|r| r),
                Err(_) => {
                    tracing::warn!(?timeout, "graceful shutdown timed out; cutting connections");
                    server.abort();
                    Ok(())
                }
            };
            closing.abort();
            result
        }
    };
    state.shutdown().await;
    result.map_err(StartError::Io)
}

/// Closes every socket's transport after a random delay within `jitter`.
///
/// Closing the transport (not a Socket.IO disconnect, after which clients do not reconnect)
/// makes clients reconnect, through the load balancer, to the nodes that remain. The random delay
/// spreads the reconnections of a fleet restarted together; clients add their own randomized
/// reconnection delay (socket.io-client: 1 s ± 50 %). socketioxide closes transports for all
/// sockets at once, so the spread is per node, not per socket.
async fn close_sockets(io: SocketIo, jitter: Duration) {
    let jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..=jitter_ms))).await;
    io.close().await;
}

/// How often the broker's health is sampled for `/metrics`.
const HEALTH_SAMPLE: Duration = Duration::from_millis(500);

/// Samples the broker's health into the `broker_up` gauge and counts lost connections.
fn watch_broker(broker: SharedBroker, metrics: Arc<Metrics>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut was_up = true;
        let mut tick = tokio::time::interval(HEALTH_SAMPLE);
        loop {
            tick.tick().await;
            let health = broker.health();
            if health == sidecast_core::BrokerHealth::Closed {
                metrics.broker_up.set(0);
                return;
            }
            let up = health.is_connected();
            metrics.broker_up.set(i64::from(up));
            if was_up && !up {
                metrics.broker_reconnects.inc();
            }
            was_up = up;
        }
    })
}

/// Per-principal limiter of `POST /api/`.
type RateLimiter = governor::DefaultKeyedRateLimiter<String>;

fn rate_limiter(config: &Config) -> Option<RateLimiter> {
    let rate = std::num::NonZeroU32::new(config.server.api_rate_limit)?;
    let burst = std::num::NonZeroU32::new(config.server.api_rate_burst).unwrap_or(rate);
    Some(governor::RateLimiter::dashmap(
        governor::Quota::per_second(rate).allow_burst(burst),
    ))
}

impl Sidecast {
    /// Counts one `POST /api/` of `principal` against the rate limit.
    fn check_rate(&self, principal: &sidecast_core::Principal) -> Result<(), ApiError> {
        use governor::clock::{Clock, DefaultClock};
        let Some(limiter) = &self.inner.limiter else {
            return Ok(());
        };
        // Principals that stopped publishing are forgotten, so the map cannot grow forever.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter.check_key(&principal.id).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }

    /// Asks every node to disconnect the sockets of `user`.
    async fn disconnect_user(&self, user: &str) -> Result<(), ApiError> {
        let message = control::encode(&control::Control::Disconnect {
            rooms: vec![sidecast_core::auth::user_room(user)],
            namespace: "/".to_owned(),
        });
        self.inner
            .emitter
            .publish_raw(&self.inner.control_channel, message)
            .await
            .map_err(|e| match e {
                sidecast_core::EmitError::Broker(b) => ApiError::Broker(b),
                other => ApiError::Session(other.to_string()),
            })
    }
}

/// Builds the auth policy `auth.policy` names.
pub fn policy_from_config(config: &Config) -> Result<Arc<dyn AuthPolicy>, StartError> {
    let build = |kind: PolicyKind| -> Box<dyn AuthPolicy> {
        match kind {
            PolicyKind::Session => Box::new(SessionAuth),
            PolicyKind::Token => Box::new(TokenAuth::new(
                config
                    .auth
                    .tokens
                    .iter()
                    .map(|(name, token)| (token.expose().to_owned(), name.clone())),
            )),
            PolicyKind::AllowAll => Box::new(AllowAll),
        }
    };
    let kinds = config.auth.policy.kinds();
    Ok(match kinds {
        [one] => Arc::from(build(*one)),
        many => Arc::new(AnyOf::new(many.iter().map(|k| build(*k)).collect())),
    })
}

/// Connects the broker `broker.kind` names.
pub async fn connect_broker(config: &Config) -> Result<SharedBroker, StartError> {
    match config.broker.kind {
        BrokerKind::Memory => Ok(Arc::new(MemoryBroker::new(
            config.broker.subscription_capacity,
        ))),
        #[cfg(feature = "redis")]
        BrokerKind::Redis => {
            let options = sidecast_transport_redis::RedisOptions::from_config(&config.broker);
            Ok(Arc::new(
                sidecast_transport_redis::RedisBroker::connect(options).await?,
            ))
        }
        #[cfg(feature = "amqp")]
        BrokerKind::Amqp => {
            let options = sidecast_transport_amqp::AmqpOptions::from_config(&config.broker);
            Ok(Arc::new(
                sidecast_transport_amqp::AmqpBroker::connect(options).await?,
            ))
        }
        #[allow(unreachable_patterns)]
        kind => Err(StartError::Config(format!(
            "broker.kind = \"{kind}\" is not compiled into this build; rebuild with the cargo \
             feature `{kind}` (cargo build -p sidecast --features {kind}), or choose another \
             broker.kind"
        ))),
    }
}

/// The Redis session store, when `session.store = "redis"` and this build has Redis.
#[cfg(feature = "redis")]
fn redis_session_store(
    config: &Config,
) -> Result<Option<Arc<dyn session::SessionStoreHandle>>, StartError> {
    use sidecast_core::config::SessionStoreKind;
    if config.session.store != SessionStoreKind::Redis {
        return Ok(None);
    }
    let url = if !config.session.url.is_empty() {
        config.session.url.clone()
    } else if config.broker.kind == BrokerKind::Redis {
        config.broker.effective_url().to_owned()
    } else {
        return Err(StartError::Config(
            "session.store = \"redis\" needs session.url (SIDECAST_SESSION__URL) when the broker \
             is not Redis"
                .to_owned(),
        ));
    };
    let timeout = Duration::from_millis(config.session.timeout_ms);
    let store = RedisSessionStore::new(&url, timeout).map_err(|e| {
        StartError::Config(format!(
            "session.url = {}: {e}",
            sidecast_core::broker::redact_url(&url)
        ))
    })?;
    Ok(Some(Arc::new(store)))
}

#[cfg(not(feature = "redis"))]
fn redis_session_store(
    _config: &Config,
) -> Result<Option<Arc<dyn session::SessionStoreHandle>>, StartError> {
    Ok(None)
}

/// The page with the configured client script and Socket.IO path filled in.
fn render_page(config: &Config) -> String {
    let client_js = if config.server.client_js.is_some() {
        CLIENT_JS_ROUTE.to_owned()
    } else {
        config.server.client_js_url.clone()
    };
    // The path goes into a script as a JSON string; `<` is escaped so it cannot close the tag.
    let path_json = serde_json::to_string(&config.server.socketio_path)
        .unwrap_or_else(|_| "\"/ws/socket.io\"".to_owned())
        .replace('<', "\\u003c");
    include_str!("page.html")
        .replace("{{CLIENT_JS}}", &html_escape(&client_js))
        .replace("{{SOCKETIO_PATH_JSON}}", &path_json)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
