//! A node's start (decision 21): connect the broker, start recovery on its history and subscribe
//! the relay. [`crate::SidecastBuilder::build`] makes the first attempt; when the broker is
//! unavailable, a background task retries every few hundred milliseconds (within
//! `broker.start_timeout_ms`, when set) while the node already serves: `/healthz` answers, the
//! rest answers 503 with `Retry-After` until [`Startup::is_started`].
//!
//! The node is started only once its subscription is active, so the one-delivery-path invariant
//! holds from its first accepted publish on: nothing is accepted before the node can receive it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sidecast_core::broker::redact_url;
use sidecast_core::codec::control;
use sidecast_core::config::BrokerKind;
use sidecast_core::supervision::Backoff;
use sidecast_core::{BrokerError, Config, SharedBroker, Signer};
use socketioxide::SocketIo;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::delivery::memberships::{LocalMemberships, SharedMemberships};
use crate::delivery::readiness::Readiness;
use crate::delivery::relay;
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::node::broker::NodeBroker;
use crate::node::from_config::{AttemptError, broker_start_error, open_broker};

/// The delays between start attempts: short, so that the node serves within a second of the
/// broker answering (each attempt against a port that refuses fails at once).
const RETRY: Backoff = Backoff {
    min: Duration::from_millis(250),
    max: Duration::from_millis(500),
};

/// Where a node's start stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The broker has not answered yet; the node serves `/healthz` and 503s.
    Starting,
    /// Subscribed: the node serves normally.
    Started,
    /// The start failed for good ([`Startup::take_failure`]); the node should stop.
    Failed,
}

/// What a start attempt needs; the background task keeps it between attempts.
pub(crate) struct Plan {
    pub(crate) config: Config,
    /// The broker given to the builder, already connected; otherwise `broker.kind`'s.
    pub(crate) supplied: Option<SharedBroker>,
    pub(crate) signer: Option<Arc<Signer>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) io: SocketIo,
    pub(crate) memberships: SharedMemberships,
    /// A store in this process that learns the running nodes' memberships once subscribed.
    pub(crate) memberships_to_sync: Option<Arc<LocalMemberships>>,
    pub(crate) node_id: String,
    /// Cluster-wide presence, started once subscribed.
    pub(crate) presence: Option<Arc<crate::presence::tracker::Presence>>,
}

/// The node's start state, shared by its handlers, its Socket.IO middleware and the start task.
pub(crate) struct Startup {
    /// The node's broker handle, bound when the node starts.
    pub(crate) broker: Arc<NodeBroker>,
    /// What the Socket.IO connect path knows of the start (started, recovery).
    pub(crate) readiness: Arc<Readiness>,
    /// The relay, once started; [`crate::Sidecast::shutdown`] waits for it.
    relay: Mutex<Option<JoinHandle<()>>>,
    /// The background task retrying the start, while there is one.
    task: Mutex<Option<JoinHandle<()>>>,
    phase: watch::Sender<Phase>,
    failure: Mutex<Option<StartError>>,
}

impl std::fmt::Debug for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Startup")
            .field("phase", &*self.phase.borrow())
            .finish_non_exhaustive()
    }
}

impl Startup {
    /// The start state of a node whose broker is `config`'s (or the one given to the builder).
    pub(crate) fn new(config: &Config) -> Arc<Self> {
        let url = match config.broker.kind {
            BrokerKind::Memory => config.broker.effective_url().to_owned(),
            _ => redact_url(config.broker.effective_url()),
        };
        Arc::new(Self {
            broker: Arc::new(NodeBroker::unbound(config.broker.kind.as_str(), url)),
            readiness: Arc::default(),
            relay: Mutex::new(None),
            task: Mutex::new(None),
            phase: watch::channel(Phase::Starting).0,
            failure: Mutex::new(None),
        })
    }

    /// Whether the node started: its broker answered and its subscription is active.
    pub(crate) fn is_started(&self) -> bool {
        // One answer for the gate, the handlers and the connect path (which reads `readiness`).
        self.readiness.is_started()
    }

    /// Resolves once the start ended: [`Phase::Started`] or [`Phase::Failed`].
    pub(crate) async fn settled(&self) -> Phase {
        let mut phase = self.phase.subscribe();
        match phase.wait_for(|p| *p != Phase::Starting).await {
            Ok(p) => *p,
            // The sender lives in `self`: it cannot be gone while `self` is borrowed.
            Err(_) => Phase::Failed,
        }
    }

    /// The error that ended the start, once (the next caller gets `None`).
    pub(crate) fn take_failure(&self) -> Option<StartError> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// The relay's task, taken by the shutdown.
    pub(crate) fn take_relay(&self) -> Option<JoinHandle<()>> {
        self.relay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Stops a start that is still retrying and waits until it has stopped, so that the node's
    /// state no longer changes.
    pub(crate) async fn abort(&self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// The first start attempt, made by `build()`: `Ok(true)` when started, `Ok(false)` when
    /// the broker is unavailable and the start goes on in the background ([`Startup::retry`]),
    /// `Err` when it must fail now (a permanent error, or `broker.start_timeout_ms = 0`).
    pub(crate) async fn first(
        self: &Arc<Self>,
        plan: &Plan,
        began: Instant,
    ) -> Result<bool, StartError> {
        let timeout = plan.config.broker.start_timeout_ms;
        let attempt = self.attempt(plan);
        let result = match timeout {
            // A broker that neither answers nor refuses must not hold the start past its limit.
            Some(ms) if ms > 0 && plan.supplied.is_none() => {
                let deadline = began + Duration::from_millis(ms);
                match tokio::time::timeout_at(deadline, attempt).await {
                    Ok(result) => result,
                    Err(_) => return Err(broker_start_error(self.unanswered(plan))),
                }
            }
            _ => attempt.await,
        };
        match result {
            Ok(()) => Ok(true),
            Err(AttemptError::Transient(error))
                if timeout != Some(0) && plan.supplied.is_none() =>
            {
                let broker = &plan.config.broker;
                tracing::warn!(
                    url = %self.broker.url(),
                    kind = %broker.kind,
                    start_timeout_ms = ?timeout,
                    error = %error,
                    "the broker is unavailable; the node serves /healthz and answers 503 until it \
                     answers (broker.start_timeout_ms, SIDECAST_BROKER__START_TIMEOUT_MS, limits \
                     the wait; 0 exits at once)"
                );
                Ok(false)
            }
            Err(error) => Err(error.into_start_error()),
        }
    }

    /// Retries the start in the background until it succeeds, fails for good, or
    /// `broker.start_timeout_ms` (counted from `began`) passes.
    pub(crate) fn retry(self: &Arc<Self>, plan: Plan, began: Instant) {
        let deadline = plan
            .config
            .broker
            .start_timeout_ms
            .map(|ms| began + Duration::from_millis(ms));
        let startup = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut delays = 1_u32;
            loop {
                let delay = RETRY.delay(delays);
                delays = delays.saturating_add(1);
                let wake = Instant::now() + delay;
                let wake = deadline.map_or(wake, |d| wake.min(d));
                tokio::time::sleep_until(wake).await;
                if startup.broker.is_closed() {
                    // Closed by its owner (an embedding that never serves): nothing to start.
                    tracing::debug!("the node's broker was closed while starting; start abandoned");
                    return;
                }
                let attempt = startup.attempt(&plan);
                let result = match deadline {
                    None => attempt.await,
                    Some(deadline) => match tokio::time::timeout_at(deadline, attempt).await {
                        Ok(result) => result,
                        Err(_) => Err(AttemptError::Transient(startup.unanswered(&plan))),
                    },
                };
                match result {
                    Ok(()) => {
                        tracing::info!(url = %startup.broker.url(), "the broker answered; the node is ready");
                        return;
                    }
                    Err(AttemptError::Transient(error))
                        if deadline.is_none_or(|d| Instant::now() < d) =>
                    {
                        tracing::debug!(error = %error, "broker still unavailable");
                    }
                    Err(error) => {
                        let error = error.into_start_error();
                        tracing::error!(error = %error, "the node cannot start");
                        startup.fail(error);
                        return;
                    }
                }
            }
        });
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    /// The error of a start that ran out of `broker.start_timeout_ms` during an attempt.
    fn unanswered(&self, plan: &Plan) -> BrokerError {
        BrokerError::unavailable(
            plan.config.broker.kind.as_str(),
            self.broker.url(),
            format!(
                "no answer within broker.start_timeout_ms = {} ms",
                plan.config.broker.start_timeout_ms.unwrap_or_default()
            ),
        )
    }

    fn fail(&self, error: StartError) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        self.phase.send_replace(Phase::Failed);
    }

    /// One attempt: connect (unless the broker was supplied), start recovery, subscribe, and
    /// on success bind the broker and spawn the relay.
    async fn attempt(&self, plan: &Plan) -> Result<(), AttemptError> {
        self.broker.attempted();
        let broker = match &plan.supplied {
            Some(broker) => broker.clone(),
            None => open_broker(&plan.config).await?,
        };
        match subscribe(plan, &broker).await {
            Ok((bus, subscription, history)) => {
                // No await from here on: an abort of the start task cannot leave a bound broker
                // without its relay.
                let recovery = bus.recovery.clone();
                let relay = relay::spawn(
                    subscription,
                    history,
                    bus,
                    plan.io.clone(),
                    plan.metrics.clone(),
                    plan.memberships.clone(),
                );
                *self.relay.lock().unwrap_or_else(PoisonError::into_inner) = Some(relay);
                self.broker.bind(broker);
                self.readiness.started(recovery);
                self.phase.send_replace(Phase::Started);
                Ok(())
            }
            Err(error) => {
                if plan.supplied.is_none() {
                    // A broker that connected but could not subscribe: drop its connections
                    // before the next attempt opens new ones.
                    broker.close().await;
                }
                Err(error)
            }
        }
    }
}

/// Starts recovery and subscribes the relay's channels on `broker`.
async fn subscribe(
    plan: &Plan,
    broker: &SharedBroker,
) -> Result<
    (
        relay::Bus,
        sidecast_core::Subscription,
        Option<sidecast_core::HistorySubscription>,
    ),
    AttemptError,
> {
    let config = &plan.config;
    let (recovery, history) = crate::delivery::recovery::from_config(
        config,
        broker,
        plan.signer.clone(),
        plan.metrics.clone(),
    )
    .await?;
    let bus = relay::Bus {
        channel: config.broker.channel.clone(),
        control_channel: control::channel(&config.broker.channel),
        signer: plan.signer.clone(),
        slow_client: config.server.slow_client,
        ingress: relay::Ingress::from_config(&config.broker.ingress),
        recovery,
        presence: plan.presence.clone(),
    };
    let subscription = relay::subscribe(broker, &bus).await?;
    if let Some(presence) = &plan.presence {
        // Detached: it ends when the broker closes its subscription at shutdown.
        let _presence = crate::presence::sync::start(
            presence.clone(),
            broker.clone(),
            &config.broker.channel,
            plan.signer.clone(),
        )
        .await?;
    }
    if let Some(store) = &plan.memberships_to_sync {
        // After the relay subscribed, so that the store's journal covers what the answer lacks.
        // Detached: it ends when the broker closes its subscription at shutdown.
        let _sync = crate::delivery::membership_sync::Sync {
            broker: broker.clone(),
            channel: crate::delivery::membership_sync::channel(&config.broker.channel),
            node_id: plan.node_id.clone(),
            store: store.clone(),
            signer: plan.signer.clone(),
            recovery: bus.recovery.clone(),
        }
        .start()
        .await?;
        // The node serves once it knows its users' rooms: a socket that connected earlier would
        // start without them (the first node of a cluster waits for no answer, 2 s).
        if !store.wait_synced().await {
            tracing::warn!("the remembered memberships did not arrive; starting without them");
        }
    }
    Ok((bus, subscription, history))
}
