//! The AMQP connection and its supervision: [`AmqpState`], what the broker's handles and tasks
//! share, opens the connection ([`AmqpConnection`]); [`supervise`] notices when it is lost,
//! reports the outage and reconnects.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use sidecast_core::BrokerError;
use sidecast_core::supervision::{
    AttemptCount, Backoff, HealthBoard, OutageLog, PartId, Parts, Reconnect, Shutdown,
};
use tokio::sync::{Notify, watch};
use tokio::time::{MissedTickBehavior, interval, timeout};

use crate::error::{self, Doing};
use crate::options::AmqpOptions;
use crate::placement::Placement;
use crate::publisher::{Failures, Publishing};
use crate::resume::resume_backoff;
use crate::uri::{Endpoint, parse_uris};
use sidecast_core::config::UrlOrder;

/// The AMQP connection's id on the health board; subscriptions count up from 1.
const CONNECTION: PartId = 0;

/// How often the supervisor looks at the connection's state even without being told. lapin
/// reports a lost connection through its event stream and the consumers; this is the safety
/// net in case a path reports nothing.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// The state an [`crate::AmqpBroker`]'s handles and background tasks share: the options, the
/// current connection, and its parts (the connection and the subscriptions) with their health
/// and outage log.
pub(crate) struct AmqpState {
    pub(crate) options: AmqpOptions,
    /// `options.url`, parsed (one entry per node of a cluster), with the heartbeat and TCP
    /// connect time-out filled in.
    endpoints: Vec<Endpoint>,
    /// In order: the endpoint the next connection attempt starts at (the one after the endpoint
    /// last connected to, since that one was just lost).
    next_endpoint: AtomicUsize,
    /// `options.url` with the password redacted: the only form that reaches logs and errors.
    pub(crate) url: String,
    /// The connection (id [`CONNECTION`]) and the subscriptions, their health and outages.
    pub(crate) parts: Parts,
    /// The current connection; `None` while reconnecting (and after close). Subscription tasks
    /// watch it to rebuild their queues on a new connection.
    pub(crate) connection: watch::Sender<Option<Arc<AmqpConnection>>>,
    /// Asks the supervisor to look at the connection now, because an operation failed in a way
    /// that suggests it is gone.
    pub(crate) check: Notify,
    next_generation: AtomicU64,
    /// History subscriptions running: while there are any, the connection is retried at least
    /// every [`crate::resume::RESUME_WITHIN`], so that they resume that soon after RabbitMQ
    /// answers again.
    pub(crate) history_readers: AtomicUsize,
    /// Which URLs' nodes hold no replica of a history stream queue: the connection leaves them
    /// and tries them last.
    pub(crate) placement: Placement,
}

/// One AMQP connection and its publishing channel.
pub(crate) struct AmqpConnection {
    /// Tells connections apart, so that a subscription notices it is on an old one.
    pub(crate) generation: u64,
    pub(crate) connection: Connection,
    /// The publishing channel, in confirm mode.
    pub(crate) publishing: Publishing,
    /// The URL (redacted) of the node this connection went to.
    pub(crate) endpoint: String,
    /// That URL's index in the configured list.
    pub(crate) endpoint_index: usize,
    /// History stream queues declared on this connection: declaring is a round trip, so it is
    /// done once per queue and connection, not per append.
    pub(crate) history_queues: std::sync::Mutex<HashSet<String>>,
}

impl AmqpState {
    /// Checks `options` and parses the URL; connects nothing yet.
    pub(crate) fn new(options: AmqpOptions) -> Result<Self, BrokerError> {
        let url = options.url.redacted();
        options.validate()?;
        let endpoints = parse_uris(&options)?;
        Ok(Self {
            placement: Placement::new(endpoints.len()),
            parts: Parts::new(
                HealthBoard::new(AttemptCount::Highest),
                OutageLog::new(
                    sidecast_core::outage_log_target!(),
                    error::BACKEND,
                    &options.url,
                ),
                CONNECTION + 1,
            ),
            url,
            endpoints,
            next_endpoint: AtomicUsize::new(0),
            options,
            connection: watch::Sender::new(None),
            check: Notify::new(),
            next_generation: AtomicU64::new(0),
            history_readers: AtomicUsize::new(0),
        })
    }

    /// Whether `broker.url` names several nodes (a cluster).
    pub(crate) fn has_several_endpoints(&self) -> bool {
        self.endpoints.len() > 1
    }

    /// The current connection if it is up. A connection that went down without the supervisor
    /// having noticed yet is not returned, and the supervisor is told.
    pub(crate) fn live_connection(&self) -> Option<Arc<AmqpConnection>> {
        let link = self.connection.borrow().clone()?;
        if link.connection.status().connected() {
            Some(link)
        } else {
            self.check.notify_one();
            None
        }
    }

    /// The error of an operation attempted while the connection is down.
    pub(crate) fn down_error(&self) -> BrokerError {
        error::reconnecting(&self.url, self.parts.board().reconnect_attempt())
    }

    /// Maps a failed operation's error, and has the connection checked when the error says it
    /// may be gone.
    pub(crate) fn failed(&self, error: lapin::Error, doing: Doing<'_>) -> BrokerError {
        if error::is_connection_error(&error) {
            self.check.notify_one();
        }
        error::map(error, &self.url, doing)
    }

    pub(crate) fn backoff(&self) -> Backoff {
        Backoff {
            min: self.options.backoff_min,
            max: self.options.backoff_max,
        }
    }

    /// The order in which this round of connection attempts tries the endpoints (indexes).
    fn endpoint_order(&self) -> Vec<usize> {
        let count = self.endpoints.len();
        let mut order: Vec<usize> = match self.options.url_order {
            UrlOrder::InOrder => {
                let start = self.next_endpoint.load(Ordering::Relaxed) % count;
                (0..count).map(|i| (start + i) % count).collect()
            }
            UrlOrder::Shuffle => (0..count).collect(),
        };
        if self.options.url_order == UrlOrder::Shuffle {
            use rand::seq::SliceRandom;
            order.shuffle(&mut rand::rng());
        }
        // Nodes found without a replica of a history stream last, whatever the order.
        self.placement.order(&mut order);
        order
    }

    /// A new connection with its publishing channel: one round over the endpoints, in the
    /// order of [`AmqpOptions::url_order`], each attempt within the connect time-out. The first
    /// that answers wins; when none does, the last error (the backoff between rounds is the
    /// caller's).
    pub(crate) async fn open_connection(&self) -> Result<Arc<AmqpConnection>, BrokerError> {
        let order = self.endpoint_order();
        let mut last_error = None;
        for index in order {
            match self.open_endpoint(index).await {
                Ok(connection) => {
                    self.next_endpoint.store(index + 1, Ordering::Relaxed);
                    return Ok(connection);
                }
                Err(e) => {
                    if self.endpoints.len() > 1 {
                        tracing::debug!(
                            url = %self.endpoints[index].shown, error = %e,
                            "amqp node did not answer; trying the next"
                        );
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| error::config("broker.url names no AMQP URL".to_owned())))
    }

    /// A new connection to endpoint `index` with its publishing channel, within the connect
    /// time-out.
    async fn open_endpoint(&self, index: usize) -> Result<Arc<AmqpConnection>, BrokerError> {
        let endpoint: &Endpoint = &self.endpoints[index];
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        // Shown in RabbitMQ's management UI and `rabbitmqctl list_connections`.
        let properties = ConnectionProperties::default().with_connection_name(
            format!("sidecast (pid {}, #{generation})", std::process::id()).into(),
        );
        let after = self.options.connect_timeout;
        let open = async {
            let connection = Connection::connect_uri(endpoint.uri.clone(), properties)
                .await
                .map_err(|e| error::map(e, &endpoint.shown, Doing::Connecting))?;
            // Opened right away: the first publish does not pay for it, and a user who may not
            // even open a channel is refused here.
            let publishing =
                match Publishing::open(&connection, self.options.durable_exchanges).await {
                    Ok(publishing) => publishing,
                    Err(e) => {
                        let _ = connection.close(200, "setup failed".into()).await;
                        return Err(error::map(e, &endpoint.shown, Doing::Connecting));
                    }
                };
            Ok(AmqpConnection {
                generation,
                connection,
                publishing,
                endpoint: endpoint.shown.clone(),
                endpoint_index: index,
                history_queues: std::sync::Mutex::new(HashSet::new()),
            })
        };
        match timeout(after, open).await {
            Ok(result) => result.map(Arc::new),
            Err(_elapsed) => Err(error::timeout(after)),
        }
    }

    /// The backoff of the connection's reconnects: capped at [`crate::resume::RESUME_WITHIN`]
    /// while history subscriptions wait for it.
    fn connection_backoff(&self) -> Backoff {
        let backoff = self.backoff();
        if self.history_readers.load(Ordering::Relaxed) == 0 {
            backoff
        } else {
            resume_backoff(backoff)
        }
    }

    /// Reconnects with backoff until a new connection is up. `None` when the broker shuts down.
    async fn reconnect(&self, shutdown: &mut Shutdown) -> Option<Arc<AmqpConnection>> {
        Reconnect {
            board: self.parts.board(),
            id: CONNECTION,
            backoff: self.connection_backoff(),
        }
        .run(
            shutdown,
            || false,
            || self.open_connection(),
            |attempt, e| {
                tracing::debug!(url = %self.url, attempt, error = %e, "amqp reconnect attempt failed");
            },
        )
        .await
    }
}

impl Failures for AmqpState {
    fn failed(&self, error: lapin::Error, doing: Doing<'_>) -> BrokerError {
        AmqpState::failed(self, error, doing)
    }

    fn url(&self) -> &str {
        &self.url
    }
}

/// Owns the connection: notices when it is lost, reports the outage, reconnects with backoff
/// and publishes the new connection for the subscription tasks.
pub(crate) async fn supervise(state: Arc<AmqpState>, mut shutdown: Shutdown) {
    loop {
        let Some(link) = state.connection.borrow().clone() else {
            // Only close() empties the slot outside this task.
            return;
        };
        let failure = watch_connection(&state, &link, &mut shutdown).await;
        let Some(failure) = failure else {
            return;
        };
        if state.parts.board().is_closed() {
            return;
        }
        state.connection.send_replace(None);
        state.parts.lost(CONNECTION, &failure);
        drop(link);
        match state.reconnect(&mut shutdown).await {
            Some(link) => {
                if state.endpoints.len() > 1 {
                    tracing::info!(url = %link.endpoint, "amqp reconnected to a node of the cluster");
                }
                state.connection.send_replace(Some(link));
                state.parts.restored(CONNECTION);
            }
            None => return,
        }
    }
}

/// Waits until `link` is no longer connected and returns why, or `None` on shutdown.
async fn watch_connection(
    state: &AmqpState,
    link: &AmqpConnection,
    shutdown: &mut Shutdown,
) -> Option<String> {
    let mut events = pin!(link.connection.events_listener());
    let mut last_error: Option<String> = None;
    let mut liveness = interval(LIVENESS_CHECK);
    liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.signalled() => return None,
            () = state.check.notified() => {}
            _ = liveness.tick() => {}
            event = events.next() => match event {
                // Channel errors arrive here too; only the connection's state tells.
                Some(Event::Error(e)) => last_error = Some(e.to_string()),
                Some(_) => {}
                None => {
                    // The connection is gone for good (its event sender dropped).
                    return Some(last_error.unwrap_or_else(|| "the connection ended".to_owned()));
                }
            },
        }
        if !link.connection.status().connected() {
            let status = link.connection.status();
            let state = if status.errored() {
                "failed"
            } else if status.closing() || status.closed() {
                "closed"
            } else {
                "not connected"
            };
            return Some(last_error.unwrap_or_else(|| format!("the connection {state}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(url: &str, order: UrlOrder) -> AmqpState {
        AmqpState::new(AmqpOptions {
            url_order: order,
            ..AmqpOptions::new(url)
        })
        .expect("valid options")
    }

    #[test]
    fn in_order_starts_after_the_node_last_connected_to() {
        let state = state("amqp://a,amqp://b,amqp://c", UrlOrder::InOrder);
        assert_eq!(state.endpoint_order(), [0, 1, 2]);
        // As after a connection to `b`: its loss makes the next round start at `c`.
        state.next_endpoint.store(2, Ordering::Relaxed);
        assert_eq!(state.endpoint_order(), [2, 0, 1]);
        state.next_endpoint.store(3, Ordering::Relaxed);
        assert_eq!(state.endpoint_order(), [0, 1, 2]);
    }

    #[test]
    fn shuffle_tries_every_node_once_in_varying_orders() {
        let state = state("amqp://a,amqp://b,amqp://c,amqp://d", UrlOrder::Shuffle);
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let mut order = state.endpoint_order();
            seen.insert(order.clone());
            order.sort_unstable();
            assert_eq!(order, [0, 1, 2, 3]);
        }
        // 24 orders; 200 draws all giving one would be a broken shuffle.
        assert!(seen.len() > 1, "{seen:?}");
    }

    #[test]
    fn one_url_is_one_endpoint() {
        let state = state("amqp://u:hunter2@h/%2f", UrlOrder::Shuffle);
        assert_eq!(state.endpoint_order(), [0]);
        assert!(!state.url.contains("hunter2"));
    }
}
