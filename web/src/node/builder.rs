//! [`SidecastBuilder`]: from a configuration (and optionally a broker and an auth policy of the
//! caller's) to a running [`Sidecast`] node: subscribed before it serves events, or starting
//! while its broker is unavailable ([`crate::node::start`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use sidecast_core::{AuthPolicy, Config, Emitter, SharedBroker};
use socketioxide::SocketIo;

use crate::delivery::handshake;
use crate::error::StartError;
use crate::identity::origin;
use crate::identity::rate_limit::RateLimiter;
use crate::metrics::Metrics;
use crate::node::from_config::{policy_from_config, sessions};
use crate::node::serve;
use crate::node::start::{Phase, Plan, Startup};
use crate::presence::PresenceOptions;
use crate::presence::tracker::Presence;
use crate::presence::view::SocketDirectory;
use crate::{Inner, Sidecast, routes};

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
    presence: PresenceOptions,
    /// A cluster view for the admin namespace other than the node's own (tests).
    directory: Option<Arc<dyn SocketDirectory>>,
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
    /// A builder with the default configuration, the broker and the policy it names.
    pub(crate) fn new() -> Self {
        Self {
            config: Config::default(),
            broker: None,
            auth: None,
            presence: PresenceOptions::default(),
            directory: None,
        }
    }

    /// Uses this cluster view for the admin namespace's socket lists instead of the node's own.
    #[cfg(test)]
    pub(crate) fn directory(mut self, directory: Arc<dyn SocketDirectory>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// How presence is built besides `[presence]` (the admin namespace turns the full directory
    /// on: every socket of every namespace, with its rooms and handshake).
    pub fn presence_options(mut self, options: PresenceOptions) -> Self {
        self.presence = options;
        self
    }

    /// Tracks every socket of every namespace in the cluster view, with all its rooms and its
    /// handshake ([`PresenceOptions::full_directory`]).
    pub fn full_directory(mut self, on: bool) -> Self {
        self.presence.full_directory = on;
        self
    }

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

    /// Prepares the routes, connects the broker and subscribes to Sidecast's channel.
    ///
    /// When this returns `Ok`, the node can be served. Its subscription is made before it serves
    /// events, so that it receives every event published after it accepted one. If the broker
    /// configured by `broker.kind` is unavailable, the node is returned *starting* (decision 21):
    /// it retries in the background, [`Sidecast::is_started`] is `false`, `/readyz`,
    /// `POST /api/` and Socket.IO handshakes answer 503 until it started, and [`crate::serve`]
    /// returns the error if the start fails for good. With `broker.start_timeout_ms = 0`, an
    /// unavailable broker is an error here, as is any permanent broker error (a bad URL,
    /// refused credentials, a mismatched setting) and any error of a broker given with
    /// [`SidecastBuilder::broker`].
    pub async fn build(self) -> Result<Sidecast, StartError> {
        let began = tokio::time::Instant::now();
        let config = self.config;
        config.validate()?;
        if let Some(dir) = config
            .admin
            .ui_dir
            .as_ref()
            .filter(|_| config.admin.enabled)
        {
            crate::admin::ui::check_dir(dir).map_err(|why| StartError::File {
                key: "admin.ui_dir",
                path: dir.display().to_string(),
                source: std::io::Error::other(why),
            })?;
        }
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
        let (memberships, memberships_to_sync) =
            crate::delivery::memberships::from_config(&config, self.broker.is_none())?;
        let sessions = sessions(&config)?;

        let metrics = Arc::new(Metrics::new());
        let signer = (!config.broker.signing_key.is_empty()).then(|| {
            Arc::new(sidecast_core::Signer::new(
                config.broker.signing_key.expose(),
                Duration::from_millis(config.broker.signing_max_age_ms),
            ))
        });
        let startup = Startup::new(&config);
        let node_id = uuid::Uuid::new_v4().to_string();
        let mut presence_options = self.presence.clone();
        // The Admin UI lists every socket of the cluster, with its rooms and its handshake.
        presence_options.full_directory |= config.admin.enabled;
        let presence = Presence::new(
            &config.presence,
            &presence_options,
            &node_id,
            metrics.clone(),
        );
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
            .with_state(crate::delivery::connect::SocketContext {
                auth: auth.clone(),
                metrics: metrics.clone(),
                memberships: memberships.clone(),
                readiness: startup.readiness.clone(),
                presence: presence.clone(),
            })
            .build_layer();
        crate::delivery::connect::register(&io, &config.server.namespaces);
        if let Some(presence) = &presence {
            presence.set_io(io.clone());
        }

        let plan = Plan {
            config: config.clone(),
            supplied: self.broker,
            signer: signer.clone(),
            metrics: metrics.clone(),
            io: io.clone(),
            memberships,
            memberships_to_sync,
            node_id: node_id.clone(),
            presence: presence.clone(),
        };
        let admin_signer = signer.clone();
        if !startup.first(&plan, began).await? {
            startup.retry(plan, began);
        }
        let broker: SharedBroker = startup.broker.clone();
        let watcher = serve::watch_broker(broker.clone(), metrics.clone());
        let mut emitter = Emitter::new(broker.clone(), config.broker.channel.clone())
            .with_origin(node_id.clone())
            // Appends go to the history only when the broker turns out to have one.
            .with_history(config.recovery.enabled);
        if let Some(signer) = signer {
            emitter = emitter.signed(signer);
        }
        let mut origins = origin::OriginPolicy::new(
            &config.server.allowed_origins,
            &config.server.socketio_path,
            Some(metrics.clone()),
        );
        if config.admin.enabled {
            origins = origins.with_admin_origins(&config.admin.allowed_origins);
        }
        let origins = Arc::new(origins);
        let admin = config.admin.enabled.then(|| {
            let namespace = crate::admin::namespace::AdminNamespace::new(
                config.admin.clone(),
                config.server.namespaces.clone(),
                emitter.clone(),
                self.directory
                    .clone()
                    .or_else(|| presence.clone().map(|p| -> Arc<dyn SocketDirectory> { p })),
                metrics.clone(),
            );
            namespace.register(&io);
            let started = {
                let startup = startup.clone();
                async move { startup.settled().await == Phase::Started }
            };
            let stats = crate::admin::stats::Stats {
                io: io.clone(),
                broker: broker.clone(),
                channel: crate::admin::stats::channel(&config.broker.channel),
                signer: admin_signer,
                app_namespaces: config.server.namespaces.clone(),
                admin_namespace: config.admin.namespace.clone(),
                server_id: node_id.clone(),
                interval: Duration::from_millis(config.admin.stats_interval_ms),
            }
            .spawn(started);
            crate::AdminParts { namespace, stats }
        });
        let limiter = RateLimiter::from_config(&config.server);
        let page = routes::page::render(&config.server);
        Ok(Sidecast {
            inner: Arc::new(Inner {
                config,
                broker,
                auth,
                io,
                layer,
                emitter,
                origins,
                limiter,
                node_id,
                page,
                client_js,
                sessions,
                metrics,
                watcher,
                startup,
                presence,
                admin,
            }),
        })
    }
}
