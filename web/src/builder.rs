//! [`SidecastBuilder`]: from a configuration (and optionally a broker and an auth policy of the
//! caller's) to a running [`Sidecast`] node, subscribed before it serves.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use sidecast_core::codec::control;
use sidecast_core::{AuthPolicy, Config, Emitter, SharedBroker};
use socketioxide::SocketIo;

use crate::error::StartError;
use crate::from_config::{self, connect_broker, policy_from_config, sessions};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::{Inner, Sidecast, handshake, origin, relay, routes, serve, socket};

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
    /// A builder with the default configuration, the broker and the policy it names.
    pub(crate) fn new() -> Self {
        Self {
            config: Config::default(),
            broker: None,
            auth: None,
        }
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

    /// Connects the broker, subscribes to Sidecast's channel and prepares the routes.
    ///
    /// The subscription is made here, before anything is served, so that the node receives every
    /// event published after this returns.
    pub async fn build(self) -> Result<Sidecast, StartError> {
        let config = self.config;
        config.validate()?;
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
            crate::memberships::from_config(&config, self.broker.is_none())?;
        let broker = match self.broker {
            Some(broker) => broker,
            None => connect_broker(&config).await?,
        };

        let metrics = Arc::new(Metrics::new());
        let signer = (!config.broker.signing_key.is_empty()).then(|| {
            Arc::new(sidecast_core::Signer::new(
                config.broker.signing_key.expose(),
                Duration::from_millis(config.broker.signing_max_age_ms),
            ))
        });
        let (recovery, history) =
            crate::recovery::from_config(&config, &broker, signer.clone(), metrics.clone()).await?;
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
                memberships: memberships.clone(),
                recovery: recovery.clone(),
            })
            .build_layer();
        socket::register(&io, &config.server.namespaces);

        let bus = relay::Bus {
            channel: config.broker.channel.clone(),
            control_channel: control::channel(&config.broker.channel),
            signer: signer.clone(),
            slow_client: config.server.slow_client,
            ingress: relay::Ingress::from_config(&config.broker.ingress),
            recovery: recovery.clone(),
        };
        let subscription = relay::subscribe(&broker, &bus)
            .await
            .map_err(from_config::broker_start_error)?;
        let control_channel = bus.control_channel.clone();
        let relay = relay::spawn(
            subscription,
            history,
            bus,
            io.clone(),
            metrics.clone(),
            memberships,
        );
        let watcher = serve::watch_broker(broker.clone(), metrics.clone());

        let node_id = uuid::Uuid::new_v4().to_string();
        if let Some(store) = memberships_to_sync {
            // Detached: it ends when the broker closes its subscription at shutdown.
            let _sync = crate::membership_sync::Sync {
                broker: broker.clone(),
                channel: crate::membership_sync::channel(&config.broker.channel),
                node_id: node_id.clone(),
                store,
                signer: signer.clone(),
            }
            .start()
            .await
            .map_err(from_config::broker_start_error)?;
        }
        let mut emitter = Emitter::new(broker.clone(), config.broker.channel.clone())
            .with_origin(node_id.clone())
            .with_history(recovery.is_some());
        if let Some(signer) = signer {
            emitter = emitter.signed(signer);
        }
        let origins = Arc::new(origin::OriginPolicy::new(
            &config.server.allowed_origins,
            &config.server.socketio_path,
            Some(metrics.clone()),
        ));
        let limiter = RateLimiter::from_config(&config.server);
        let page = routes::page::render(&config.server);
        let sessions = sessions(&config)?;
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
