//! Sidecast's AMQP 0-9-1 transport: [`AmqpBroker`], a [`Broker`] over RabbitMQ fanout
//! exchanges, with lapin on tokio.
//!
//! ```no_run
//! use bytes::Bytes;
//! use sidecast_core::{Broker, ChannelSpec};
//! use sidecast_transport_amqp::{AmqpBroker, AmqpOptions};
//!
//! # async fn example() -> Result<(), sidecast_core::BrokerError> {
//! let broker =
//!     AmqpBroker::connect(AmqpOptions::new("amqp://guest:guest@127.0.0.1:5672/%2f")).await?;
//! let mut events = broker.subscribe(&[ChannelSpec::exact("sidecast")]).await?;
//! broker
//!     .publish("sidecast", Bytes::from_static(br#"{"v":1,"event":"message","data":"Hi"}"#))
//!     .await?;
//! while let Some(message) = events.recv().await {
//!     println!("{}: {:?}", message.channel, message.payload);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # The mapping onto AMQP
//!
//! * A channel is a **fanout exchange of the same name**, declared non-durable, not
//!   auto-deleted, without arguments: exactly what python-socketio / Flask-SocketIO (kombu)
//!   declare for their channel, so both can share an exchange. RabbitMQ refuses to redeclare an
//!   exchange with other settings; [`AmqpOptions::durable_exchanges`] matches durable ones.
//! * Publishing sends the payload to that exchange with an empty routing key and default
//!   properties, with publisher confirms.
//! * Each subscription consumes from its **own exclusive, auto-delete, server-named queue**
//!   (`amq.gen-…`) bound to every exchange it subscribed to. RabbitMQ deletes the queue when the
//!   subscription or the connection goes away, so nothing piles up for nodes that left.
//! * A message's channel is the exchange it was published to.

// The contract and the `Broker` impl are here; each other file has one job: `options` the
// options and their checks, `uri` the URL's parsing, `connection` the connection and its
// supervision, `publisher` the publishing channel, `exchange` how an exchange is declared,
// `subscription` the queue and task behind each subscription, `error` the mapping of lapin
// errors, `history` the stream queues behind `Broker::history`, `placement` which node of a
// cluster the connection should be on for them, `resume` how soon history subscriptions resume
// after an outage.
mod connection;
mod error;
mod exchange;
mod history;
mod options;
mod placement;
mod publisher;
mod resume;
mod subscription;
mod uri;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sidecast_core::supervision::Tasks;
use sidecast_core::{Broker, BrokerError, BrokerHealth, ChannelSpec, History, Subscription};
use tokio::time::timeout;

pub use error::{ExchangeMismatch, HistoryMismatch};
pub use options::{
    AmqpOptions, DEFAULT_HISTORY_QUEUE_PREFIX, DEFAULT_HISTORY_SEGMENT_BYTES,
    DEFAULT_STREAM_REPLICAS,
};

use connection::AmqpState;
use history::AmqpHistory;

/// How long [`Broker::close`] waits for the background tasks and for RabbitMQ to acknowledge
/// the connection's close (and a dropped subscription for its channel's). The tasks stop at
/// once when told to; the bound only guards against a server that does not answer.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// AMQP exchange names are short strings: at most 255 bytes.
const MAX_NAME_BYTES: usize = 255;

/// A [`Broker`] over RabbitMQ (AMQP 0-9-1): each channel is a fanout exchange, each
/// subscription an exclusive queue bound to its exchanges.
///
/// # Delivery contract
///
/// * **At-least-once while connected.** [`Broker::publish`] returns once RabbitMQ confirmed the
///   message (publisher confirm), i.e. routed it to the queue of every subscription that existed
///   at that moment, where it waits until delivered. A publish that fails with
///   [`BrokerError::Timeout`] may still have been delivered: a caller that retries can deliver
///   twice. What is *not* covered: a message published while a subscription's connection is
///   down (between a RabbitMQ restart and the subscription's new queue) is lost to that
///   subscription, since its queue went away with the connection; and a message that overflows
///   a slow consumer's buffer ([`AmqpOptions::subscription_capacity`]) is dropped, logged and
///   counted in [`Subscription::dropped`].
/// * **Order** is kept per publisher: messages published one after the other through one
///   `AmqpBroker` (and its clones: they share one channel) reach each subscription in that
///   order.
/// * **Echo.** A broker's subscriptions receive what it publishes itself.
/// * **No patterns.** A [`ChannelSpec::Pattern`] is refused with [`BrokerError::Unsupported`]:
///   fanout exchanges route by exchange name, and there is no portable way to bind a queue to
///   "every exchange matching a glob". Subscribe to each channel by name.
///
/// # Connections and outages
///
/// One AMQP connection per broker carries a publishing channel (in confirm mode) and one
/// channel per subscription. The transport supervises it itself, without lapin's automatic
/// recovery (which re-declares the old server-named queue after a RabbitMQ restart, is refused,
/// and leaves the consumer dead): heartbeats ([`AmqpOptions::heartbeat`]) detect a silent
/// connection; when the connection breaks (a RabbitMQ restart, a network cut, missed
/// heartbeats), the broker reports [`BrokerHealth::Reconnecting`], reconnects with capped
/// exponential backoff and jitter ([`AmqpOptions::backoff_min`] to
/// [`AmqpOptions::backoff_max`]), and every subscription re-declares its exchanges, declares a
/// **new** queue, binds it and consumes again. [`BrokerHealth::Connected`] is reported once all
/// of that is done, so "connected" means "receiving". The stream the caller holds never
/// notices, except for the messages lost meanwhile. A subscription whose channel alone fails
/// (its queue deleted by an operator, say) is rebuilt the same way on the same connection.
///
/// While the connection is down, [`Broker::publish`] fails at once with a transient
/// [`BrokerError::Unavailable`], without waiting for the reconnection; otherwise it is bounded
/// by [`AmqpOptions::publish_timeout`] ([`BrokerError::Timeout`]). A lost and a restored
/// connection are logged once per outage (`warn`, then `info`), however many subscriptions the
/// outage hit; URLs in logs and errors have their password redacted. (lapin logs connection
/// errors itself too, under the `lapin` target.)
///
/// # Lifetime
///
/// Clones share the connection. [`Broker::close`] (on any clone) ends every subscription
/// stream, deletes the queues and closes the connection; later calls fail with
/// [`BrokerError::Closed`]. Dropping the last clone without closing does the same in the
/// background. Dropping a [`Subscription`] closes its channel (and so deletes its queue)
/// shortly after.
#[derive(Clone)]
pub struct AmqpBroker {
    state: Arc<AmqpState>,
    /// Owned by the `AmqpBroker` clones only (the tasks hold the state, not this), so that
    /// dropping the last clone stops the background tasks.
    tasks: Arc<Tasks>,
    history: Arc<AmqpHistory>,
}

impl std::fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("url", &self.state.url)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl AmqpBroker {
    /// Connects to RabbitMQ (bounded by [`AmqpOptions::connect_timeout`]) and opens the
    /// publishing channel, so that wrong credentials or a missing virtual host fail here rather
    /// than at the first publish.
    ///
    /// # Errors
    ///
    /// * [`BrokerError::Config`]: the URL or an option is invalid.
    /// * [`BrokerError::Unavailable`] / [`BrokerError::Timeout`] (transient): RabbitMQ cannot be
    ///   reached, is shutting down, or did not answer in time.
    /// * [`BrokerError::Rejected`]: RabbitMQ refused the login or the virtual host.
    pub async fn connect(options: AmqpOptions) -> Result<Self, BrokerError> {
        let state = Arc::new(AmqpState::new(options)?);
        let connection = state.open_connection().await?;
        if state.has_several_endpoints() {
            // Which node of the cluster, as after each reconnect.
            tracing::info!(url = %connection.endpoint, "amqp connected to a node of the cluster");
        }
        state.connection.send_replace(Some(connection));

        let tasks = Arc::new(Tasks::new());
        tasks.spawn(connection::supervise(Arc::clone(&state), tasks.shutdown()));
        tracing::debug!(url = %state.url, "connected to amqp");
        let history = Arc::new(AmqpHistory::new(Arc::clone(&state), Arc::clone(&tasks)));
        Ok(Self {
            state,
            tasks,
            history,
        })
    }

    /// The AMQP URL, password redacted.
    pub fn url(&self) -> &str {
        &self.state.url
    }
}

/// Refuses names RabbitMQ cannot take as an exchange name, before any round trip.
fn check_name(channel: &str) -> Result<(), BrokerError> {
    if channel.is_empty() || channel.len() > MAX_NAME_BYTES {
        return Err(BrokerError::Unsupported {
            backend: error::BACKEND,
            what: format!(
                "the channel name {channel:?}: AMQP exchange names have 1 to {MAX_NAME_BYTES} bytes"
            ),
        });
    }
    Ok(())
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        let state = &self.state;
        state.parts.board().check_open()?;
        check_name(channel)?;
        // Fail fast during an outage: no connection attempt, no waiting for one.
        let Some(link) = state.live_connection() else {
            return Err(state.down_error());
        };
        if link.connection.status().blocked() {
            return Err(error::unavailable(
                &state.url,
                "RabbitMQ blocks publishers because of a resource alarm (memory or disk \
                 space); it lifts the block once resources are freed"
                    .to_owned(),
            ));
        }
        let after = state.options.publish_timeout;
        let publishing =
            link.publishing
                .publish(&link.connection, state.as_ref(), channel, &payload);
        match timeout(after, publishing).await {
            Ok(result) => result,
            Err(_elapsed) => {
                // A slow server, or a connection that died silently: the supervisor looks.
                state.check.notify_one();
                Err(error::timeout(after))
            }
        }
    }

    async fn subscribe(&self, channels: &[ChannelSpec]) -> Result<Subscription, BrokerError> {
        let state = &self.state;
        state.parts.board().check_open()?;
        if channels.is_empty() {
            return Err(BrokerError::Unsupported {
                backend: error::BACKEND,
                what: "a subscription to no channel (name at least one channel)".to_owned(),
            });
        }
        let mut exchanges: Vec<String> = Vec::with_capacity(channels.len());
        for spec in channels {
            match spec {
                ChannelSpec::Exact(name) => {
                    check_name(name)?;
                    if !exchanges.contains(name) {
                        exchanges.push(name.clone());
                    }
                }
                ChannelSpec::Pattern(glob) => {
                    return Err(BrokerError::Unsupported {
                        backend: error::BACKEND,
                        what: format!(
                            "pattern subscriptions ({glob:?}): AMQP fanout exchanges are bound \
                             by name; subscribe to each channel by name with \
                             ChannelSpec::Exact, or use the Redis transport for patterns"
                        ),
                    });
                }
            }
        }
        // The first queue is set up here so that the caller learns about a RabbitMQ that is
        // down or refuses the exchange; later ones are the task's business.
        let Some(link) = state.live_connection() else {
            return Err(state.down_error());
        };
        let consuming = subscription::open_consumer(state, &link, &exchanges).await?;
        let (tx, subscription) = Subscription::bounded(state.options.subscription_capacity);
        let id = state.parts.next_id();
        self.tasks.spawn(subscription::run(
            Arc::clone(state),
            id,
            exchanges.into(),
            tx,
            consuming,
            self.tasks.shutdown(),
        ));
        Ok(subscription)
    }

    fn health(&self) -> BrokerHealth {
        self.state.parts.board().health()
    }

    fn history(&self) -> Option<&dyn History> {
        Some(self.history.as_ref())
    }

    async fn close(&self) {
        let state = &self.state;
        let already = state.parts.board().close();
        self.tasks.stop();
        // Wait for the tasks so that, once close() returns, every subscription stream has ended
        // (its sender is dropped) and its channel is closed.
        let late = self.tasks.join(CLOSE_WAIT).await;
        if late > 0 {
            tracing::warn!(url = %state.url, late, "amqp tasks did not stop within {CLOSE_WAIT:?}");
        }
        if let Some(link) = state.connection.send_replace(None)
            && link.connection.status().connected()
        {
            let closing = link.connection.close(200, "sidecast broker closed".into());
            if let Ok(Err(e)) = timeout(CLOSE_WAIT, closing).await {
                tracing::debug!(url = %state.url, error = %e, "closing the amqp connection failed");
            }
        }
        if !already {
            tracing::debug!(url = %state.url, "amqp broker closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_must_fit_an_exchange_name() {
        assert!(check_name("sidecast").is_ok());
        assert!(matches!(
            check_name(""),
            Err(BrokerError::Unsupported { .. })
        ));
        assert!(check_name(&"x".repeat(256)).is_err());
        assert!(check_name(&"x".repeat(255)).is_ok());
    }
}
