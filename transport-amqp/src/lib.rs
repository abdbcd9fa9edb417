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

mod error;
mod options;

use std::collections::HashSet;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, Event,
    ExchangeKind,
};
use sidecast_core::{
    Broker, BrokerError, BrokerHealth, BrokerMessage, ChannelSpec, Delivery, Subscription,
    SubscriptionSender,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval, sleep, timeout};

pub use options::AmqpOptions;

use error::Doing;
use sidecast_core::supervision::{AttemptCount, Backoff, HealthBoard, Lost, PartId};

/// The AMQP connection's id on the health board; subscriptions count up from 1.
const CONNECTION: PartId = 0;

/// How often the supervisor looks at the connection's state even without being told. lapin
/// reports a lost connection through its event stream and the consumers; this is the safety
/// net in case a path reports nothing.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

/// How long [`Broker::close`] waits for each background task and for RabbitMQ to acknowledge
/// the connection's close. The tasks stop at once when told to; the bound only guards against a
/// server that does not answer.
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
    inner: Arc<Inner>,
}

/// The handle side: owned by the `AmqpBroker` clones only, so that dropping the last clone
/// stops the background tasks (which hold [`Shared`], not this).
struct Inner {
    shared: Arc<Shared>,
    /// `true` once closed (or dropped): every background task watches it.
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
}

/// What the background tasks share with the handles.
struct Shared {
    options: AmqpOptions,
    /// `options.url`, parsed, with the heartbeat and TCP connect time-out filled in.
    uri: AMQPUri,
    /// `options.url` with the password redacted: the only form that reaches logs and errors.
    url: String,
    board: HealthBoard,
    /// The current connection; `None` while reconnecting (and after close). Subscription tasks
    /// watch it to rebuild their queues on a new connection.
    link: watch::Sender<Option<Arc<Link>>>,
    /// Asks the supervisor to look at the connection now, because an operation failed in a way
    /// that suggests it is gone.
    check: Notify,
    next_generation: AtomicU64,
}

/// One AMQP connection and its publishing channel.
struct Link {
    /// Tells connections apart, so that a subscription notices it is on an old one.
    generation: u64,
    connection: Connection,
    /// The publishing channel, in confirm mode; `None` until (re)opened. A tokio mutex, held
    /// while a message is *sent* (not while its confirm is awaited), which keeps publishes in
    /// call order without serialising the round trips.
    publisher: tokio::sync::Mutex<Option<Publisher>>,
}

/// The publishing channel and the exchanges declared on it.
struct Publisher {
    channel: Channel,
    /// Exchanges already declared through this channel: declaring is a round trip, so it is
    /// done once per exchange and channel, not per message.
    declared: HashSet<String>,
}

/// A subscription's channel and consumer on one connection.
struct Consuming {
    generation: u64,
    channel: Channel,
    consumer: Consumer,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop the tasks, as close() would, so nothing leaks.
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("url", &self.inner.shared.url)
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
        let url = sidecast_core::broker::redact_url(&options.url);
        validate(&options)?;
        let uri = parse_uri(&options, &url)?;
        let shared = Arc::new(Shared {
            board: HealthBoard::new(AttemptCount::Highest),
            url,
            uri,
            options,
            link: watch::Sender::new(None),
            check: Notify::new(),
            next_generation: AtomicU64::new(0),
        });
        let link = shared.open_link().await?;
        shared.link.send_replace(Some(link));

        let (shutdown, shutdown_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(Arc::clone(&shared), shutdown_rx));
        tracing::debug!(url = %shared.url, "connected to amqp");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                shutdown,
                tasks: Mutex::new(vec![supervisor]),
                next_id: AtomicU64::new(CONNECTION + 1),
            }),
        })
    }

    /// The AMQP URL, password redacted.
    pub fn url(&self) -> &str {
        &self.inner.shared.url
    }
}

/// Options that would make the transport misbehave rather than fail: zero time-outs fail every
/// call, a zero backoff reconnects in a busy loop.
fn validate(options: &AmqpOptions) -> Result<(), BrokerError> {
    let zero = |name: &str| Err(error::config(format!("{name} must be greater than zero")));
    if options.connect_timeout.is_zero() {
        return zero("connect_timeout");
    }
    if options.publish_timeout.is_zero() {
        return zero("publish_timeout");
    }
    if options.backoff_min.is_zero() {
        return zero("backoff_min");
    }
    if options.subscription_capacity == 0 {
        return zero("subscription_capacity");
    }
    if options.heartbeat > Duration::from_secs(u64::from(u16::MAX)) {
        return Err(error::config(format!(
            "heartbeat must be at most {} s (AMQP carries it as a 16-bit number of seconds)",
            u16::MAX
        )));
    }
    Ok(())
}

/// Parses the URL and fills in what the options say: the heartbeat (unless the URL has one) and
/// lapin's TCP connect time-out.
fn parse_uri(options: &AmqpOptions, redacted: &str) -> Result<AMQPUri, BrokerError> {
    let shown = format!("{redacted:?}");
    let bad = |why: &str| {
        error::config(format!(
            "broker.url {shown} is not a valid AMQP URL ({why}); it must look like \
             amqp://user:password@host:port/vhost (the default vhost `/` is written %2f), or \
             amqps://... for TLS"
        ))
    };
    let scheme = options.url.split_once("://").map(|(scheme, _)| scheme);
    if !matches!(scheme, Some("amqp" | "amqps")) {
        return Err(bad("the scheme must be amqp or amqps"));
    }
    let mut uri: AMQPUri = options.url.parse().map_err(|e: String| bad(&e))?;
    debug_assert!(matches!(uri.scheme, AMQPScheme::AMQP | AMQPScheme::AMQPS));
    if uri.query.heartbeat.is_none() {
        // Whole seconds, rounded up so that a sub-second heartbeat is not turned off.
        let seconds = options.heartbeat.as_secs()
            + u64::from(options.heartbeat.subsec_nanos() > 0 && options.heartbeat.as_secs() == 0);
        uri.query.heartbeat = Some(u16::try_from(seconds).unwrap_or(u16::MAX));
    }
    if uri.query.connection_timeout.is_none() {
        uri.query.connection_timeout =
            Some(u64::try_from(options.connect_timeout.as_millis()).unwrap_or(u64::MAX));
    }
    Ok(uri)
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

/// The settings every Sidecast exchange is declared with: those of kombu's
/// `Exchange(name, type="fanout", durable=False)` (not auto-deleted, not internal, no
/// arguments), with durability configurable.
fn exchange_options(durable: bool) -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable,
        ..ExchangeDeclareOptions::default()
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        let shared = &self.inner.shared;
        if shared.board.is_closed() {
            return Err(BrokerError::Closed);
        }
        check_name(channel)?;
        // Fail fast during an outage: no connection attempt, no waiting for one.
        let Some(link) = shared.live_link() else {
            return Err(shared.down_error());
        };
        if link.connection.status().blocked() {
            return Err(error::unavailable(
                &shared.url,
                "RabbitMQ blocks publishers because of a resource alarm (memory or disk \
                 space); it lifts the block once resources are freed"
                    .to_owned(),
            ));
        }
        let after = shared.options.publish_timeout;
        match timeout(after, link.publish(shared, channel, &payload)).await {
            Ok(result) => result,
            Err(_elapsed) => {
                // A slow server, or a connection that died silently: the supervisor looks.
                shared.check.notify_one();
                Err(error::timeout(after))
            }
        }
    }

    async fn subscribe(&self, channels: &[ChannelSpec]) -> Result<Subscription, BrokerError> {
        let shared = &self.inner.shared;
        if shared.board.is_closed() {
            return Err(BrokerError::Closed);
        }
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
        let Some(link) = shared.live_link() else {
            return Err(shared.down_error());
        };
        let consuming = shared.open_consumer(&link, &exchanges).await?;
        let (tx, subscription) = Subscription::bounded(shared.options.subscription_capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(run_subscription(
            Arc::clone(shared),
            id,
            exchanges.into(),
            tx,
            consuming,
            self.inner.shutdown.subscribe(),
        ));
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget the tasks of dropped subscriptions, so that the list does not grow forever.
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
        Ok(subscription)
    }

    fn health(&self) -> BrokerHealth {
        self.inner.shared.board.health()
    }

    async fn close(&self) {
        let shared = &self.inner.shared;
        let already = shared.board.close();
        self.inner.shutdown.send_replace(true);
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        // Wait for the tasks so that, once close() returns, every subscription stream has ended
        // (its sender is dropped) and its channel is closed.
        for task in tasks {
            if timeout(CLOSE_WAIT, task).await.is_err() {
                tracing::warn!(url = %shared.url, "an amqp task did not stop within {CLOSE_WAIT:?}");
            }
        }
        if let Some(link) = shared.link.send_replace(None)
            && link.connection.status().connected()
        {
            let closing = link.connection.close(200, "sidecast broker closed".into());
            if let Ok(Err(e)) = timeout(CLOSE_WAIT, closing).await {
                tracing::debug!(url = %shared.url, error = %e, "closing the amqp connection failed");
            }
        }
        if !already {
            tracing::debug!(url = %shared.url, "amqp broker closed");
        }
    }
}

impl Shared {
    /// Part `id` broke with `error`: reports it on the board and logs the outage once (further
    /// parts lost during it at debug level).
    fn lost(&self, id: PartId, error: &dyn std::fmt::Display) {
        let url = &self.url;
        match self.board.lost(id) {
            Lost::Outage => {
                tracing::warn!(url = %url, error = %error, "amqp connection lost, reconnecting");
            }
            Lost::AlsoDown => {
                tracing::debug!(
                    url = %url,
                    part = id,
                    error = %error,
                    "amqp connection part lost"
                );
            }
            Lost::Closed => {}
        }
    }

    /// Part `id` is up again: reports it on the board and logs the end of the outage once.
    fn restored(&self, id: PartId) {
        let Some(restored) = self.board.restored(id) else {
            return;
        };
        let url = &self.url;
        if restored.all_up {
            tracing::info!(
                url = %url,
                down_for_ms = u64::try_from(restored.down_for.as_millis()).unwrap_or(u64::MAX),
                "amqp connection restored"
            );
        } else {
            tracing::debug!(url = %url, part = id, "amqp connection part restored");
        }
    }

    /// The current connection if it is up. A connection that went down without the supervisor
    /// having noticed yet is not returned, and the supervisor is told.
    fn live_link(&self) -> Option<Arc<Link>> {
        let link = self.link.borrow().clone()?;
        if link.connection.status().connected() {
            Some(link)
        } else {
            self.check.notify_one();
            None
        }
    }

    /// The error of an operation attempted while the connection is down.
    fn down_error(&self) -> BrokerError {
        let attempt = match self.board.health() {
            BrokerHealth::Reconnecting { attempt, .. } => attempt,
            _ => 1,
        };
        error::reconnecting(&self.url, attempt)
    }

    /// Maps a failed operation's error, and has the connection checked when the error says it
    /// may be gone.
    fn failed(&self, error: lapin::Error, doing: Doing<'_>) -> BrokerError {
        if error::is_connection_error(&error) {
            self.check.notify_one();
        }
        error::map(error, &self.url, doing)
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            min: self.options.backoff_min,
            max: self.options.backoff_max,
        }
    }

    /// A new connection with its publishing channel, within the connect time-out.
    async fn open_link(&self) -> Result<Arc<Link>, BrokerError> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        // Shown in RabbitMQ's management UI and `rabbitmqctl list_connections`.
        let properties = ConnectionProperties::default().with_connection_name(
            format!("sidecast (pid {}, #{generation})", std::process::id()).into(),
        );
        let after = self.options.connect_timeout;
        let open = async {
            let connection = Connection::connect_uri(self.uri.clone(), properties)
                .await
                .map_err(|e| error::map(e, &self.url, Doing::Connecting))?;
            // Opened right away: the first publish does not pay for it, and a user who may not
            // even open a channel is refused here.
            let publisher = match open_publisher(&connection).await {
                Ok(publisher) => publisher,
                Err(e) => {
                    let _ = connection.close(200, "setup failed".into()).await;
                    return Err(error::map(e, &self.url, Doing::Connecting));
                }
            };
            Ok(Link {
                generation,
                connection,
                publisher: tokio::sync::Mutex::new(Some(publisher)),
            })
        };
        match timeout(after, open).await {
            Ok(result) => result.map(Arc::new),
            Err(_elapsed) => Err(error::timeout(after)),
        }
    }

    /// Declares the exchanges and a new exclusive, auto-delete, server-named queue bound to
    /// them on a new channel of `link`, and starts consuming from it, within the connect
    /// time-out.
    async fn open_consumer(
        &self,
        link: &Link,
        exchanges: &[String],
    ) -> Result<Consuming, BrokerError> {
        let first = exchanges.first().map_or("", String::as_str);
        let setup = async {
            let channel = link
                .connection
                .create_channel()
                .await
                .map_err(|e| self.failed(e, Doing::Using(first)))?;
            for exchange in exchanges {
                channel
                    .exchange_declare(
                        exchange.as_str().into(),
                        ExchangeKind::Fanout,
                        exchange_options(self.options.durable_exchanges),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| self.failed(e, Doing::Declaring(exchange)))?;
            }
            // Server-named: a new name on every (re)connection, so a restarted RabbitMQ never
            // sees a redeclaration of a queue it no longer knows.
            let queue = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.failed(e, Doing::Using(first)))?;
            for exchange in exchanges {
                channel
                    .queue_bind(
                        queue.name().clone(),
                        exchange.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| self.failed(e, Doing::Using(exchange)))?;
            }
            // no_ack: RabbitMQ considers a message delivered once sent. Acknowledgements would
            // buy nothing: the queue is exclusive and dies with the connection, so nothing
            // unacknowledged could ever be redelivered, and overflow is dropped by design.
            let consumer = channel
                .basic_consume(
                    queue.name().clone(),
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        exclusive: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| self.failed(e, Doing::Using(first)))?;
            tracing::trace!(queue = %queue.name(), ?exchanges, "amqp subscription consuming");
            Ok(Consuming {
                generation: link.generation,
                channel,
                consumer,
            })
        };
        let after = self.options.connect_timeout;
        // On failure or time-out the channel is dropped, which closes it (and its queue).
        match timeout(after, setup).await {
            Ok(result) => result,
            Err(_elapsed) => Err(error::timeout(after)),
        }
    }

    /// Reconnects with backoff until a new connection is up. `None` when the broker shuts down.
    async fn reconnect(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Arc<Link>> {
        let backoff = self.backoff();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            self.board.attempt(CONNECTION, attempt);
            tokio::select! {
                () = shutdown_signal(shutdown) => return None,
                () = sleep(backoff.delay(attempt)) => {}
            }
            tokio::select! {
                () = shutdown_signal(shutdown) => return None,
                result = self.open_link() => match result {
                    Ok(link) => return Some(link),
                    // The outage was logged once when it began; the attempts are detail.
                    Err(e) => tracing::debug!(
                        url = %self.url, attempt, error = %e, "amqp reconnect attempt failed"
                    ),
                },
            }
        }
    }
}

impl Link {
    /// Declares `exchange` (once per channel) and publishes `payload` to it, then waits for
    /// RabbitMQ's confirm.
    async fn publish(
        &self,
        shared: &Shared,
        exchange: &str,
        payload: &[u8],
    ) -> Result<(), BrokerError> {
        // Two tries at most: NOT_FOUND means the exchange vanished (an operator deleted it)
        // after it was declared on this channel. The message was certainly not routed, so
        // declaring again and retrying cannot deliver it twice.
        let mut retried = false;
        loop {
            let confirm = {
                let mut slot = self.publisher.lock().await;
                let publisher = match &mut *slot {
                    Some(publisher) if publisher.channel.status().connected() => publisher,
                    // Never opened, or closed by RabbitMQ after a channel error: a new one.
                    other => other.insert(
                        open_publisher(&self.connection)
                            .await
                            .map_err(|e| shared.failed(e, Doing::Using(exchange)))?,
                    ),
                };
                if !publisher.declared.contains(exchange) {
                    let declared = publisher
                        .channel
                        .exchange_declare(
                            exchange.into(),
                            ExchangeKind::Fanout,
                            exchange_options(shared.options.durable_exchanges),
                            FieldTable::default(),
                        )
                        .await;
                    if let Err(e) = declared {
                        // RabbitMQ closes a channel after a failed declaration.
                        *slot = None;
                        return Err(shared.failed(e, Doing::Declaring(exchange)));
                    }
                    publisher.declared.insert(exchange.to_owned());
                }
                let sent = publisher
                    .channel
                    .basic_publish(
                        exchange.into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        payload,
                        BasicProperties::default(),
                    )
                    .await;
                match sent {
                    Ok(confirm) => confirm,
                    Err(e) => {
                        *slot = None;
                        return Err(shared.failed(e, Doing::Using(exchange)));
                    }
                }
                // The lock is released here: the next publish may be sent while this one's
                // confirm is on its way.
            };
            match confirm.await {
                Ok(Confirmation::Ack(_) | Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Nack(_)) => {
                    return Err(error::unavailable(
                        &shared.url,
                        "RabbitMQ could not take the message (negative publisher confirm)"
                            .to_owned(),
                    ));
                }
                Err(e) if !retried && error::reply_code(&e) == Some(404) => {
                    tracing::debug!(exchange, "amqp exchange vanished, declaring it again");
                    retried = true;
                }
                Err(e) => return Err(shared.failed(e, Doing::Using(exchange))),
            }
        }
    }
}

/// A new channel in confirm mode.
async fn open_publisher(connection: &Connection) -> lapin::Result<Publisher> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Publisher {
        channel,
        declared: HashSet::new(),
    })
}

/// Resolves once the broker is closed or its last handle dropped.
async fn shutdown_signal(shutdown: &mut watch::Receiver<bool>) {
    // Err means the sender is gone, i.e. the broker was dropped: shut down as well.
    let _ = shutdown.wait_for(|closed| *closed).await;
}

/// Owns the connection: notices when it is lost, reports the outage, reconnects with backoff
/// and publishes the new connection for the subscription tasks.
async fn supervise(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let Some(link) = shared.link.borrow().clone() else {
            // Only close() empties the slot outside this task.
            return;
        };
        let failure = watch_link(&shared, &link, &mut shutdown).await;
        let Some(failure) = failure else {
            return;
        };
        if shared.board.is_closed() {
            return;
        }
        shared.link.send_replace(None);
        shared.lost(CONNECTION, &failure);
        drop(link);
        match shared.reconnect(&mut shutdown).await {
            Some(link) => {
                shared.link.send_replace(Some(link));
                shared.restored(CONNECTION);
            }
            None => return,
        }
    }
}

/// Waits until `link` is no longer connected and returns why, or `None` on shutdown.
async fn watch_link(
    shared: &Shared,
    link: &Link,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut events = pin!(link.connection.events_listener());
    let mut last_error: Option<String> = None;
    let mut liveness = interval(LIVENESS_CHECK);
    liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown_signal(shutdown) => return None,
            () = shared.check.notified() => {}
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

/// Why a subscription stopped consuming.
enum PumpEnd {
    /// The broker was closed or dropped.
    Shutdown,
    /// The consumer dropped its `Subscription`.
    ConsumerGone,
    /// The consumer, its channel or the connection broke.
    Lost(String),
}

/// Removes a subscription from the health board when its task ends, however it ends, so that a
/// subscription dropped during an outage does not keep the broker "reconnecting".
struct ForgetOnExit<'a> {
    board: &'a HealthBoard,
    id: PartId,
}

impl Drop for ForgetOnExit<'_> {
    fn drop(&mut self) {
        self.board.forget(self.id);
    }
}

/// The task behind one [`Subscription`]: forwards its consumer's deliveries into the
/// subscription's queue and, whenever the consumer breaks, builds a new queue and consumer
/// (on the same connection if it still works, else on the next one).
async fn run_subscription(
    shared: Arc<Shared>,
    id: PartId,
    exchanges: Arc<[String]>,
    tx: SubscriptionSender,
    mut consuming: Consuming,
    mut shutdown: watch::Receiver<bool>,
) {
    let _forget = ForgetOnExit {
        board: &shared.board,
        id,
    };
    let mut links = shared.link.subscribe();
    loop {
        let failure = match pump(&tx, &mut consuming, &mut shutdown, &mut links).await {
            PumpEnd::Shutdown => return,
            PumpEnd::ConsumerGone => {
                // Closing the channel cancels the consumer, and RabbitMQ deletes the
                // auto-delete queue at once rather than when the connection ends.
                let closing = consuming.channel.close(200, "subscription dropped".into());
                let _ = timeout(CLOSE_WAIT, closing).await;
                return;
            }
            PumpEnd::Lost(failure) => failure,
        };
        if shared.board.is_closed() {
            return;
        }
        shared.lost(id, &failure);
        // The connection probably went away for everybody: have it checked now.
        shared.check.notify_one();
        match reconsume(&shared, id, &exchanges, &tx, &mut shutdown, &mut links).await {
            Some(fresh) => {
                consuming = fresh;
                shared.restored(id);
            }
            None => return,
        }
    }
}

/// Builds a new queue and consumer, waiting for a live connection and retrying with backoff.
/// `None` when the broker shuts down or the consumer left.
async fn reconsume(
    shared: &Shared,
    id: PartId,
    exchanges: &[String],
    tx: &SubscriptionSender,
    shutdown: &mut watch::Receiver<bool>,
    links: &mut watch::Receiver<Option<Arc<Link>>>,
) -> Option<Consuming> {
    let backoff = shared.backoff();
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        shared.board.attempt(id, attempt);
        let link = wait_for_link(shared, tx, shutdown, links).await?;
        match shared.open_consumer(&link, exchanges).await {
            Ok(consuming) => return Some(consuming),
            Err(e) => tracing::debug!(
                url = %shared.url, subscription = id, attempt, error = %e,
                "amqp subscription setup failed"
            ),
        }
        // The connection works but the setup failed (a channel error, a time-out): back off
        // rather than hammer RabbitMQ. A lost connection shows up in wait_for_link instead.
        tokio::select! {
            () = shutdown_signal(shutdown) => return None,
            () = tx.closed() => return None,
            () = sleep(backoff.delay(attempt)) => {}
        }
    }
}

/// The current connection once it is up. `None` when the broker shuts down or the consumer
/// left meanwhile.
async fn wait_for_link(
    shared: &Shared,
    tx: &SubscriptionSender,
    shutdown: &mut watch::Receiver<bool>,
    links: &mut watch::Receiver<Option<Arc<Link>>>,
) -> Option<Arc<Link>> {
    loop {
        let current = links.borrow_and_update().clone();
        if let Some(link) = current {
            if link.connection.status().connected() {
                return Some(link);
            }
            // Dead but not yet replaced: make sure the supervisor knows.
            shared.check.notify_one();
        }
        tokio::select! {
            () = shutdown_signal(shutdown) => return None,
            changed = links.changed() => if changed.is_err() {
                return None;
            },
            () = tx.closed() => return None,
        }
    }
}

/// Forwards deliveries from one consumer until it breaks, the consumer leaves, the connection
/// is replaced or the broker shuts down. Never waits for the consumer:
/// [`SubscriptionSender::deliver`] drops and counts what does not fit.
async fn pump(
    tx: &SubscriptionSender,
    consuming: &mut Consuming,
    shutdown: &mut watch::Receiver<bool>,
    links: &mut watch::Receiver<Option<Arc<Link>>>,
) -> PumpEnd {
    loop {
        // Biased: shutdown first, then deliveries. Under steady traffic the later branches may
        // starve, which is fine: a gone consumer shows up as Delivery::Closed, and a lost
        // connection as an error of the consumer.
        tokio::select! {
            biased;
            () = shutdown_signal(shutdown) => return PumpEnd::Shutdown,
            delivery = consuming.consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    let message = BrokerMessage {
                        channel: delivery.exchange.to_string(),
                        pattern: None,
                        payload: Bytes::from(delivery.data),
                    };
                    if tx.deliver(message) == Delivery::Closed {
                        return PumpEnd::ConsumerGone;
                    }
                }
                Some(Err(e)) => return PumpEnd::Lost(format!("the consumer failed: {e}")),
                None => {
                    return PumpEnd::Lost(
                        "the consumer was cancelled (connection or channel closed, or queue \
                         deleted)"
                            .to_owned(),
                    );
                }
            },
            changed = links.changed() => {
                // Normally the consumer reports a lost connection itself; this covers a
                // connection replaced without the consumer being told.
                let replaced = changed.is_err()
                    || links
                        .borrow_and_update()
                        .as_ref()
                        .is_some_and(|link| link.generation != consuming.generation);
                if replaced {
                    return PumpEnd::Lost("the connection was replaced".to_owned());
                }
            }
            // The consumer dropped its Subscription while the channel is quiet.
            () = tx.closed() => return PumpEnd::ConsumerGone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_parsed_and_completed() {
        let options = AmqpOptions::new("amqp://u:p@h:1234/v%2fx");
        let uri = parse_uri(&options, "").expect("valid");
        assert_eq!(uri.authority.port, 1234);
        assert_eq!(uri.vhost, "v/x");
        assert_eq!(uri.query.heartbeat, Some(10));
        assert_eq!(uri.query.connection_timeout, Some(3_000));

        let uri = parse_uri(&AmqpOptions::new("amqps://h/%2f?heartbeat=3"), "").expect("valid");
        assert!(matches!(uri.scheme, AMQPScheme::AMQPS));
        assert_eq!(uri.query.heartbeat, Some(3), "the URL's heartbeat wins");

        let sub_second = AmqpOptions {
            heartbeat: Duration::from_millis(300),
            ..AmqpOptions::new("amqp://h")
        };
        assert_eq!(
            parse_uri(&sub_second, "").expect("valid").query.heartbeat,
            Some(1)
        );
    }

    #[test]
    fn bad_urls_and_options_are_config_errors() {
        for url in ["redis://h:1", "amqp://h:notaport", "h:1"] {
            let error = parse_uri(&AmqpOptions::new(url), "shown").expect_err(url);
            assert!(
                matches!(error, BrokerError::Config { .. }),
                "{url}: {error}"
            );
            assert!(error.to_string().contains("broker.url"), "{error}");
        }
        let zero = AmqpOptions {
            publish_timeout: Duration::ZERO,
            ..AmqpOptions::default()
        };
        assert!(matches!(validate(&zero), Err(BrokerError::Config { .. })));
        let long_heartbeat = AmqpOptions {
            heartbeat: Duration::from_secs(100_000),
            ..AmqpOptions::default()
        };
        assert!(validate(&long_heartbeat).is_err());
    }

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
