//! Sidecast's Redis transport: [`RedisBroker`], a [`Broker`] over Redis pub/sub.
//!
//! ```no_run
//! use bytes::Bytes;
//! use sidecast_core::{Broker, ChannelSpec};
//! use sidecast_transport_redis::{RedisBroker, RedisOptions};
//!
//! # async fn example() -> Result<(), sidecast_core::BrokerError> {
//! let broker = RedisBroker::connect(RedisOptions::new("redis://127.0.0.1:6379")).await?;
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

mod error;
mod options;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client, Msg};
use sidecast_core::{
    Broker, BrokerError, BrokerHealth, BrokerMessage, ChannelSpec, Delivery, Subscription,
    SubscriptionSender,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at, sleep, timeout};

pub use options::RedisOptions;

use sidecast_core::supervision::{AttemptCount, Backoff, HealthBoard, Lost, PartId};

/// The publish connection's id on the health board; subscriptions' connections count up from 1.
const PUBLISHER: PartId = 0;

/// How often a subscription task checks, while its channels are quiet, whether its consumer
/// dropped the [`Subscription`] (then it closes its Redis connection). Busy subscriptions notice
/// at the next message.
const CONSUMER_CHECK: Duration = Duration::from_millis(250);

/// How long [`Broker::close`] waits for each background task to finish. They stop at once when
/// told to; the bound only guards against a task stuck in I/O.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A [`Broker`] over Redis pub/sub (`PUBLISH`, `SUBSCRIBE`, `PSUBSCRIBE`), with the redis crate on
/// tokio.
///
/// # Delivery contract
///
/// * **At-most-once.** Redis pub/sub keeps nothing: a message published while a subscription's
///   connection is down (between a Redis restart or network cut and the re-subscription) is lost
///   to that subscription, and so is a message that overflows a slow consumer's queue
///   ([`RedisOptions::subscription_capacity`]; dropped, logged and counted in
///   [`Subscription::dropped`]).
/// * **Order** is kept per publisher: messages published one after the other through one
///   `RedisBroker` (and its clones: they share one connection) reach each subscription in that
///   order.
/// * **Echo.** A broker's subscriptions receive what it publishes itself.
/// * **Patterns** ([`ChannelSpec::Pattern`]) use `PSUBSCRIBE`, with Redis' glob rules; their
///   messages carry `pattern: Some(..)`. As in Redis, a channel that one subscription both names
///   and matches by a pattern is delivered twice, once per match.
///
/// # Connections and outages
///
/// Publishes share one multiplexed connection. Each [`Broker::subscribe`] call gets its own
/// pub/sub connection, owned by a background task that survives Redis restarts: when the
/// connection breaks (or stops answering the periodic `PING`), the task reports
/// [`BrokerHealth::Reconnecting`], reconnects with capped exponential backoff and jitter
/// ([`RedisOptions::backoff_min`] to [`RedisOptions::backoff_max`]), re-subscribes every channel
/// and pattern, and reports [`BrokerHealth::Connected`] again. The stream the caller holds never
/// notices, except for the messages lost meanwhile. The publish connection is replaced the same
/// way.
///
/// While the publish connection is down, [`Broker::publish`] fails at once with a transient
/// [`BrokerError::Unavailable`], without touching the network; otherwise it is bounded by
/// [`RedisOptions::publish_timeout`] ([`BrokerError::Timeout`]). A `Timeout` does not prove the
/// message was lost: a retry may deliver it twice, which is why the broker never retries by
/// itself. A Redis client is told nothing when its server goes away, so the publish connection
/// learns of an outage from the subscriptions (their connections break at once), from a failed
/// publish, or from its keep-alive `PING`: a broker without subscriptions sees the first publish
/// after a Redis restart fail (transiently) while it reconnects.
///
/// A lost and a restored connection are logged once per outage (`warn`, then `info`), however
/// many connections the outage hit; URLs in logs and errors have their password redacted.
///
/// # Lifetime
///
/// Clones share the connections. [`Broker::close`] (on any clone) ends every subscription
/// stream and makes later calls fail with [`BrokerError::Closed`]. Dropping the last clone
/// without closing does the same in the background. Dropping a [`Subscription`] closes its
/// Redis connection shortly after.
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

/// The handle side: owned by the `RedisBroker` clones only, so that dropping the last clone
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
    client: Client,
    options: RedisOptions,
    /// `options.url` with the password redacted: the only form that reaches logs and errors.
    url: String,
    board: HealthBoard,
    /// The publish connection and its generation; `None` while it is down (or after close).
    /// The generation tells whether the connection a failed publish used is still the current
    /// one, so that a late failure never discards a newer, healthy connection.
    publisher: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// The generation of the next publish connection.
    next_generation: AtomicU64,
    /// Asks the publisher's supervisor to check its connection now, because a publish failed or
    /// a subscription connection broke (the server probably went away for everybody).
    check_publisher: Notify,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop the tasks, as close() would, so nothing leaks.
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("url", &self.inner.shared.url)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// Connects the publish connection (bounded by [`RedisOptions::connect_timeout`]) and checks
    /// it with a `PING`, so that a wrong password fails here rather than at the first publish.
    ///
    /// # Errors
    ///
    /// * [`BrokerError::Config`]: the URL or an option is invalid.
    /// * [`BrokerError::Unavailable`] / [`BrokerError::Timeout`] (transient): Redis cannot be
    ///   reached, refused the connection, or did not answer in time.
    /// * [`BrokerError::Rejected`]: Redis refused the credentials (`WRONGPASS`, `NOAUTH`) or
    ///   permissions.
    pub async fn connect(options: RedisOptions) -> Result<Self, BrokerError> {
        let url = sidecast_core::broker::redact_url(&options.url);
        validate(&options)?;
        if is_tls(&options.url) {
            // redis' rustls support comes without a crypto provider; ring is this crate's. An
            // application that installed another provider keeps it (the error says so, ignored).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = Client::open(options.url.as_str()).map_err(|e| error::map(e, &url))?;
        let shared = Arc::new(Shared {
            client,
            board: HealthBoard::new(AttemptCount::OldestOutage),
            url,
            options,
            publisher: Mutex::new(None),
            next_generation: AtomicU64::new(0),
            check_publisher: Notify::new(),
        });
        let connection = shared.connect_publisher().await?;
        shared.install_publisher(connection);

        let (shutdown, shutdown_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise_publisher(Arc::clone(&shared), shutdown_rx));
        tracing::debug!(url = %shared.url, "connected to redis");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                shutdown,
                tasks: Mutex::new(vec![supervisor]),
                // The publisher is connection 0 on the board.
                next_id: AtomicU64::new(PUBLISHER + 1),
            }),
        })
    }

    /// The Redis URL, password redacted.
    pub fn url(&self) -> &str {
        &self.inner.shared.url
    }
}

fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

/// Options that would make the transport misbehave rather than fail: zero time-outs fail every
/// call, a zero backoff reconnects in a busy loop, a zero keep-alive panics tokio's interval.
fn validate(options: &RedisOptions) -> Result<(), BrokerError> {
    let zero = |name: &str| {
        Err(BrokerError::Config {
            backend: error::BACKEND,
            reason: format!("{name} must be greater than zero"),
        })
    };
    if options.connect_timeout.is_zero() {
        return zero("connect_timeout");
    }
    if options.publish_timeout.is_zero() {
        return zero("publish_timeout");
    }
    if options.backoff_min.is_zero() {
        return zero("backoff_min");
    }
    if options.keepalive_interval.is_zero() {
        return zero("keepalive_interval");
    }
    if options.subscription_capacity == 0 {
        return zero("subscription_capacity");
    }
    Ok(())
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        let shared = &self.inner.shared;
        if shared.board.is_closed() {
            return Err(BrokerError::Closed);
        }
        // Fail fast during an outage: no connection attempt, no waiting for one.
        let Some((generation, mut connection)) = shared.publisher_slot().clone() else {
            let attempt = match shared.board.health() {
                BrokerHealth::Reconnecting { attempt, .. } => attempt,
                _ => 1,
            };
            return Err(error::reconnecting(&shared.url, attempt));
        };
        let command = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload.as_ref())
            .to_owned();
        let after = shared.options.publish_timeout;
        match timeout(after, command.query_async::<i64>(&mut connection)).await {
            // The number of receivers does not matter: pub/sub has no notion of "undelivered".
            Ok(Ok(_receivers)) => Ok(()),
            Ok(Err(e)) => {
                if e.is_unrecoverable_error() || e.is_io_error() || e.is_connection_dropped() {
                    // The connection is dead: mark it so right away, so that health says so
                    // and the next publishes fail fast, and let the supervisor replace it. No
                    // retry here: the command may have reached Redis before the connection
                    // broke, and a retry could deliver it twice.
                    shared.publisher_lost(generation, &e);
                }
                Err(error::map(e, &shared.url))
            }
            Err(_elapsed) => {
                // A slow server or a connection that died silently: the supervisor's PING
                // tells which.
                shared.check_publisher.notify_one();
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
                what: "a subscription to no channel (name at least one channel or pattern)"
                    .to_owned(),
            });
        }
        let specs: Arc<[ChannelSpec]> = channels.into();
        // The first connection is made here so that the caller learns about a Redis that is down
        // or refuses the subscription; later ones are the task's business.
        let connection = match shared.open_pubsub(&specs).await {
            Ok(connection) => connection,
            Err(e) => {
                if e.is_transient() {
                    // Redis seems down: the publish connection may be dead too without knowing.
                    shared.check_publisher.notify_one();
                }
                return Err(e);
            }
        };
        let (tx, subscription) = Subscription::bounded(shared.options.subscription_capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let task = tokio::spawn(run_subscription(
            Arc::clone(shared),
            id,
            specs,
            tx,
            connection,
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
        shared.publisher_slot().take();
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        // Wait for the tasks so that, once close() returns, every subscription stream has ended
        // (its sender is dropped) and no connection is left open.
        for task in tasks {
            if timeout(CLOSE_WAIT, task).await.is_err() {
                tracing::warn!(url = %shared.url, "a redis task did not stop within {CLOSE_WAIT:?}");
            }
        }
        if !already {
            tracing::debug!(url = %shared.url, "redis broker closed");
        }
    }
}

impl Shared {
    /// Connection `id` broke with `error`: reports it on the board and logs the outage once
    /// (further connections lost during it at debug level).
    fn lost(&self, id: PartId, error: &dyn std::fmt::Display) {
        let url = &self.url;
        match self.board.lost(id) {
            Lost::Outage => {
                tracing::warn!(url = %url, error = %error, "redis connection lost, reconnecting");
            }
            Lost::AlsoDown => {
                tracing::debug!(
                    url = %url,
                    connection = id,
                    error = %error,
                    "redis connection lost"
                );
            }
            Lost::Closed => {}
        }
    }

    /// Connection `id` is up again: reports it on the board and logs the end of the outage
    /// once.
    fn restored(&self, id: PartId) {
        let Some(restored) = self.board.restored(id) else {
            return;
        };
        let url = &self.url;
        if restored.all_up {
            tracing::info!(
                url = %url,
                down_for_ms = u64::try_from(restored.down_for.as_millis()).unwrap_or(u64::MAX),
                attempts = restored.attempts,
                "redis connection restored"
            );
        } else {
            tracing::debug!(url = %url, connection = id, "redis connection restored");
        }
    }

    fn publisher_slot(&self) -> std::sync::MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        // A poisoned lock only means a panic elsewhere while holding it; the slot stays valid.
        self.publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `connection` the publish connection.
    fn install_publisher(&self, connection: MultiplexedConnection) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        *self.publisher_slot() = Some((generation, connection));
    }

    /// The publish connection of `generation` failed with `error`: empty the slot (unless a newer
    /// connection already replaced it), report the outage and wake the supervisor to reconnect.
    fn publisher_lost(&self, generation: u64, error: &dyn std::fmt::Display) {
        {
            let mut slot = self.publisher_slot();
            if !matches!(*slot, Some((current, _)) if current == generation) {
                return;
            }
            *slot = None;
        }
        self.lost(PUBLISHER, error);
        self.check_publisher.notify_one();
    }

    /// A new publish connection, checked with `PING`, within the connect time-out.
    async fn connect_publisher(&self) -> Result<MultiplexedConnection, BrokerError> {
        // Time-outs are applied here, around whole operations, rather than by redis-rs, so that
        // they surface as BrokerError::Timeout with the configured duration.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        self.within_connect_timeout(async {
            let mut connection = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("PING")
                .query_async::<()>(&mut connection)
                .await?;
            Ok(connection)
        })
        .await
    }

    /// A new pub/sub connection subscribed to `specs`, within the connect time-out. Returns once
    /// Redis confirmed every subscription, so messages published afterwards are received.
    async fn open_pubsub(
        &self,
        specs: &[ChannelSpec],
    ) -> Result<(PubSubSink, PubSubStream), BrokerError> {
        let (exact, patterns): (Vec<&ChannelSpec>, Vec<&ChannelSpec>) = specs
            .iter()
            .partition(|spec| matches!(spec, ChannelSpec::Exact(_)));
        let exact: Vec<&str> = exact.iter().map(|s| s.as_str()).collect();
        let patterns: Vec<&str> = patterns.iter().map(|s| s.as_str()).collect();
        self.within_connect_timeout(async {
            let (mut sink, stream) = self.client.get_async_pubsub().await?.split();
            if !exact.is_empty() {
                sink.subscribe(&exact).await?;
            }
            if !patterns.is_empty() {
                sink.psubscribe(&patterns).await?;
            }
            Ok((sink, stream))
        })
        .await
    }

    async fn within_connect_timeout<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        let after = self.options.connect_timeout;
        match timeout(after, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(error::map(e, &self.url)),
            Err(_elapsed) => Err(error::timeout(after)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            min: self.options.backoff_min,
            max: self.options.backoff_max,
        }
    }

    /// Reconnects connection `id` with backoff until `connect` succeeds. `None` when the broker
    /// shuts down or `abandoned()` says nobody needs the connection any more.
    async fn reconnect<T, Fut>(
        &self,
        id: PartId,
        shutdown: &mut watch::Receiver<bool>,
        abandoned: impl Fn() -> bool,
        connect: impl Fn() -> Fut,
    ) -> Option<T>
    where
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        let backoff = self.backoff();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            self.board.attempt(id, attempt);
            tokio::select! {
                () = shutdown_signal(shutdown) => return None,
                () = sleep(backoff.delay(attempt)) => {}
            }
            if abandoned() {
                return None;
            }
            tokio::select! {
                () = shutdown_signal(shutdown) => return None,
                result = connect() => match result {
                    Ok(connection) => return Some(connection),
                    // The outage was logged once when it began; the attempts are detail.
                    Err(e) => tracing::debug!(
                        url = %self.url, connection = id, attempt, error = %e,
                        "redis reconnect attempt failed"
                    ),
                },
            }
        }
    }
}

/// Resolves once the broker is closed or its last handle dropped.
async fn shutdown_signal(shutdown: &mut watch::Receiver<bool>) {
    // Err means the sender is gone, i.e. the broker was dropped: shut down as well.
    let _ = shutdown.wait_for(|closed| *closed).await;
}

/// Owns the health of the publish connection.
///
/// In RESP2 a multiplexed connection does not announce that it died, so the supervisor checks
/// it with `PING` when asked (a publish failed, a subscription lost its connection) and every
/// keep-alive interval, and replaces it when the check fails. Meanwhile the slot is empty and
/// publishes fail fast.
async fn supervise_publisher(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let keepalive = shared.options.keepalive_interval;
    let ping_timeout = shared.options.publish_timeout;
    loop {
        tokio::select! {
            () = shutdown_signal(&mut shutdown) => return,
            () = shared.check_publisher.notified() => {}
            () = sleep(keepalive) => {}
        }
        if shared.board.is_closed() {
            return;
        }
        // A failed publish may have emptied the slot already; otherwise check the connection.
        let current = shared.publisher_slot().clone();
        if let Some((generation, mut connection)) = current {
            let failure = match timeout(
                ping_timeout,
                redis::cmd("PING").query_async::<()>(&mut connection),
            )
            .await
            {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => error::map(e, &shared.url).to_string(),
                Err(_elapsed) => format!("no answer to PING within {ping_timeout:?}"),
            };
            shared.publisher_lost(generation, &failure);
        }
        if shared.board.is_closed() || shared.publisher_slot().is_some() {
            continue;
        }
        let reconnected = shared
            .reconnect(
                PUBLISHER,
                &mut shutdown,
                || false,
                || shared.connect_publisher(),
            )
            .await;
        match reconnected {
            Some(connection) => {
                shared.install_publisher(connection);
                shared.restored(PUBLISHER);
            }
            None => return,
        }
    }
}

/// Why a subscription's connection stopped being read.
enum PumpEnd {
    /// The broker was closed or dropped.
    Shutdown,
    /// The consumer dropped its `Subscription`.
    ConsumerGone,
    /// The connection broke.
    Lost(String),
}

/// Removes a subscription's connection from the health board when its task ends, however it
/// ends, so that a subscription dropped during an outage does not keep the broker "reconnecting".
struct ForgetOnExit<'a> {
    board: &'a HealthBoard,
    id: PartId,
}

impl Drop for ForgetOnExit<'_> {
    fn drop(&mut self) {
        self.board.forget(self.id);
    }
}

/// The task behind one [`Subscription`]: reads its pub/sub connection into the subscription's
/// queue and replaces the connection whenever it breaks.
async fn run_subscription(
    shared: Arc<Shared>,
    id: PartId,
    specs: Arc<[ChannelSpec]>,
    tx: SubscriptionSender,
    mut connection: (PubSubSink, PubSubStream),
    mut shutdown: watch::Receiver<bool>,
) {
    let _forget = ForgetOnExit {
        board: &shared.board,
        id,
    };
    loop {
        let failure = match pump(&shared, &tx, &mut connection, &mut shutdown).await {
            PumpEnd::Shutdown | PumpEnd::ConsumerGone => return,
            PumpEnd::Lost(failure) => failure,
        };
        if shared.board.is_closed() {
            return;
        }
        shared.lost(id, &failure);
        // The server probably went away for the publish connection too: have it checked now
        // rather than at the next publish, so that publishes fail fast and health is complete.
        shared.check_publisher.notify_one();
        let reconnected = shared
            .reconnect(
                id,
                &mut shutdown,
                || tx.is_closed(),
                || shared.open_pubsub(&specs),
            )
            .await;
        match reconnected {
            Some(fresh) => {
                connection = fresh;
                shared.restored(id);
            }
            None => return,
        }
    }
}

/// Forwards messages from one pub/sub connection until it breaks, the consumer leaves or the
/// broker shuts down. Never waits for the consumer: [`SubscriptionSender::deliver`] drops and
/// counts what does not fit.
async fn pump(
    shared: &Shared,
    tx: &SubscriptionSender,
    (sink, stream): &mut (PubSubSink, PubSubStream),
    shutdown: &mut watch::Receiver<bool>,
) -> PumpEnd {
    let keepalive_every = shared.options.keepalive_interval;
    let mut keepalive = interval_at(Instant::now() + keepalive_every, keepalive_every);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut consumer_check = interval(CONSUMER_CHECK);
    consumer_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let ping_timeout = shared.options.publish_timeout;
    loop {
        // Biased: shutdown first, then messages. Under steady traffic the timers may starve,
        // which is fine: traffic proves the connection alive, and a gone consumer shows up as
        // Delivery::Closed.
        tokio::select! {
            biased;
            () = shutdown_signal(shutdown) => return PumpEnd::Shutdown,
            message = stream.next() => match message {
                Some(message) => {
                    if tx.deliver(to_broker_message(&message)) == Delivery::Closed {
                        return PumpEnd::ConsumerGone;
                    }
                }
                None => return PumpEnd::Lost("the server closed the connection".to_owned()),
            },
            _ = consumer_check.tick() => {
                if tx.is_closed() {
                    return PumpEnd::ConsumerGone;
                }
            }
            _ = keepalive.tick() => {
                match timeout(ping_timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return PumpEnd::Lost(format!("PING failed: {e}")),
                    Err(_elapsed) => {
                        return PumpEnd::Lost(format!("no answer to PING within {ping_timeout:?}"));
                    }
                }
            }
        }
    }
}

fn to_broker_message(message: &Msg) -> BrokerMessage {
    let channel = match message.get_channel::<Vec<u8>>() {
        Ok(bytes) => String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Err(_) => message.get_channel_name().to_owned(),
    };
    BrokerMessage {
        channel,
        pattern: message.get_pattern::<Option<String>>().ok().flatten(),
        payload: Bytes::copy_from_slice(message.get_payload_bytes()),
    }
}
