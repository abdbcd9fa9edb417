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

// The contract and the `Broker` impl are here; each other file has one job: `options` the
// options and their checks, `connection` the connections and their outages, `publisher` the
// publish connection's use and supervision, `subscription` the task behind each subscription,
// `error` the mapping of redis-rs errors, `history` the streams behind `Broker::history`,
// `cluster` what differs on a Redis Cluster, `sharded` the sharded subscriptions there,
// `sentinel` asking a Sentinel set for the master and `failover` the tasks that follow it,
// `replicas` appends that wait for replicas, `link` the session and membership stores' connection.
mod cluster;
mod connection;
mod error;
mod failover;
mod history;
mod link;
mod options;
mod publisher;
mod replicas;
mod sentinel;
mod sharded;
mod subscription;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sidecast_core::supervision::Tasks;
use sidecast_core::{Broker, BrokerError, BrokerHealth, ChannelSpec, History, Subscription};

pub use link::RedisLink;
pub use options::{DEFAULT_HISTORY_KEY_PREFIX, RedisOptions};

use connection::RedisState;
use history::RedisHistory;

/// How long [`Broker::close`] waits for the background tasks to finish. They stop at once when
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
/// Each subscription also checks that it still receives: every
/// [`RedisOptions::probe_interval`] it publishes a probe on a private `sidecast:probe:...`
/// channel and expects it back before the next one. A connection that answers `PING` but
/// delivers nothing is thus found, replaced like a broken one, logged and counted
/// ([`Broker::connection_report`]). Messages on `sidecast:probe:` channels are never delivered.
///
/// # Redis Sentinel
///
/// With a `redis+sentinel://[user:password@]host:port[,host:port...]/db/service_name` address
/// ([`sidecast_core::broker::SentinelUrl`]) the broker asks the sentinels where the master is
/// and follows it: it asks again when a connection fails, when Redis answers `READONLY` or
/// `MASTERDOWN`, when a sentinel announces `+switch-master`, and at least every 5 s. When the
/// master moved, every connection opened to the old one (publisher, subscriptions, history
/// readers) is closed, even if it still answers, and reopened on the new one; history readers
/// resume after the last entry they delivered. Each change is logged once and counted
/// ([`RedisBroker::failovers`], [`RedisBroker::master`]). See decision 0029.
///
/// # History
///
/// [`Broker::history`] keeps each channel's history in a Redis stream, key
/// `{history_key_prefix}{channel}` ([`RedisOptions::history_key_prefix`]; on a Redis Cluster
/// `{history_key_prefix}{{channel}}`, the channel as hash tag): `XADD` assigns the
/// offsets (the stream id `ms-seq`, written `{ms:020}-{seq:020}` so that offsets compare as
/// strings), `XINFO STREAM` and `XRANGE` serve reads, and each history subscription reads with
/// `XREAD BLOCK` on a connection of its own, from the id of the last entry it delivered, so that
/// after an outage it resumes where it was (retrying at least every second, so that it resumes
/// within a second of Redis answering again). Appends go through the publish connection, like
/// publishes, and fail fast the same way during an outage.
///
/// Retention ([`RedisOptions::history`]): each append trims with `MINID ~` (entries older than
/// `max_age`) and `XTRIM MAXLEN ~` (beyond `max_entries`), both approximate: Redis removes whole
/// nodes of entries (up to `stream-node-max-entries`, 100 by default), so up to that many more
/// entries may be kept, and a quiet channel keeps its entries until the next append. `max_bytes`
/// is not applied: bound memory with `max_entries` and Redis' `maxmemory` (a Redis that refuses
/// writes makes appends fail with [`BrokerError::Rejected`]). Redis does not remember the id of
/// the last trimmed entry, so a read after the offset just before the oldest entry left reports
/// [`sidecast_core::Replay::Trimmed`] too. Whether entries survive a Redis restart is Redis'
/// persistence setting (`appendonly`). Needs Redis 7.0 or newer (`XINFO STREAM` reports
/// `entries-added`).
///
/// Losses are found, not passed over (decision 30): each stream has an epoch (the id of its
/// first entry, in the key `{prefix without its last ':'}-epoch:{channel}`, written by the same
/// script as the entry that created the stream), and a read after an offset from before the
/// epoch, beyond the last entry, whose entry is gone although trimming does not explain it, or of
/// a stream that is gone, is [`sidecast_core::Replay::Unknown`]; a history subscription that finds
/// its stream gone, renewed or shorter when it reconnects starts over where the stream now
/// begins or ends. Each finding is logged once and counted
/// ([`sidecast_core::History::losses_detected`]).
///
/// # Replicas
///
/// With [`RedisOptions::min_replicas`] `= N > 0`, an append returns `Ok` only once `WAIT N`
/// ([`RedisOptions::replica_timeout`]) reports `N` replicas; fewer is a transient
/// [`BrokerError::Unreplicated`] (the master holds the entry: it may still be delivered). `WAIT`
/// blocks its connection, so appends then use a connection of their own: those that arrive while
/// a `WAIT` is pending are pipelined together and acknowledged by the next `WAIT`. Publishes are
/// not covered (pub/sub keeps nothing).
///
/// # Redis Cluster
///
/// With a `redis+cluster://` address (seed nodes), commands go through the redis crate's cluster
/// client, which follows the slot map, `MOVED`/`ASK` and promotions; every `PUBLISH` of a broker
/// goes to one primary so that its publishes keep their order. Blocking history reads use a
/// connection of their own to the primary of the stream's slot, found again after a failure.
/// Subscriptions use classic pub/sub on any live node, except the channels named in
/// [`RedisOptions::sharded_channels`]: sharded pub/sub on the primary of each channel's slot,
/// subscribed anew when that primary fails or the slot moves.
///
/// # Lifetime
///
/// Clones share the connections. [`Broker::close`] (on any clone) ends every subscription
/// stream and makes later calls fail with [`BrokerError::Closed`]. Dropping the last clone
/// without closing does the same in the background. Dropping a [`Subscription`] closes its
/// Redis connection shortly after.
#[derive(Clone)]
pub struct RedisBroker {
    state: Arc<RedisState>,
    /// Owned by the `RedisBroker` clones only (the tasks hold the state, not this), so that
    /// dropping the last clone stops the background tasks.
    tasks: Arc<Tasks>,
    history: Arc<RedisHistory>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("url", &self.state.url)
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
        let state = Arc::new(RedisState::new(options)?);
        let connection = state.connect_command_at().await?;
        state.install_publisher(connection);

        let tasks = Arc::new(Tasks::new());
        tasks.spawn(publisher::supervise(Arc::clone(&state), tasks.shutdown()));
        if state.sentinel_url().is_some() {
            tasks.spawn(failover::watch(Arc::clone(&state), tasks.shutdown()));
            tasks.spawn(failover::listen(Arc::clone(&state), tasks.shutdown()));
        }
        tracing::debug!(url = %state.url, "connected to redis");
        let history = Arc::new(RedisHistory::new(Arc::clone(&state), Arc::clone(&tasks)));
        Ok(Self {
            state,
            tasks,
            history,
        })
    }

    /// The Redis URL, password redacted.
    pub fn url(&self) -> &str {
        &self.state.url
    }

    /// With a `redis+sentinel://` address: how many times the master changed since this broker
    /// connected (each change moved every connection to the new master). Always 0 otherwise.
    pub fn failovers(&self) -> u64 {
        self.state.failovers()
    }

    /// With a `redis+sentinel://` address: `host:port` of the master the broker uses now.
    /// `None` for a plain `redis://` address.
    pub fn master(&self) -> Option<String> {
        self.state.master_addr()
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        self.state.parts.board().check_open()?;
        publisher::publish(&self.state, channel, &payload).await
    }

    async fn subscribe(&self, channels: &[ChannelSpec]) -> Result<Subscription, BrokerError> {
        let state = &self.state;
        state.parts.board().check_open()?;
        if channels.is_empty() {
            return Err(BrokerError::Unsupported {
                backend: error::BACKEND,
                what: "a subscription to no channel (name at least one channel or pattern)"
                    .to_owned(),
            });
        }
        // On a Cluster, the channels named in `sharded_channels` go to a sharded subscription
        // of their own, feeding the same queue.
        let (sharded, classic): (Vec<&ChannelSpec>, Vec<&ChannelSpec>) = channels
            .iter()
            .partition(|spec| matches!(spec, ChannelSpec::Exact(c) if state.is_sharded(c)));
        let (tx, subscription) = Subscription::bounded(state.options.subscription_capacity);
        if !sharded.is_empty() {
            let names: Arc<[String]> = sharded.iter().map(|s| s.as_str().to_owned()).collect();
            let connections = sharded::subscribe(state, &names).await?;
            self.tasks.spawn(sharded::run(
                Arc::clone(state),
                state.parts.next_id(),
                names,
                tx.clone(),
                connections,
                self.tasks.shutdown(),
            ));
            if classic.is_empty() {
                return Ok(subscription);
            }
        }
        // Each subscription also listens to a private probe channel, to notice when it stops
        // receiving (see `subscription`).
        let probe: Arc<str> = subscription::probe_channel().into();
        let specs: Arc<[ChannelSpec]> = classic
            .into_iter()
            .cloned()
            .chain([ChannelSpec::exact(probe.as_ref())])
            .collect();
        // The first connection is made here so that the caller learns about a Redis that is down
        // or refuses the subscription; later ones are the task's business.
        let connection = match state.open_pubsub(&specs).await {
            Ok(connection) => connection,
            Err(e) => {
                if e.is_transient() {
                    // Redis seems down: the publish connection may be dead too without knowing.
                    state.check_publisher.notify_one();
                }
                return Err(e);
            }
        };
        let id = state.parts.next_id();
        self.tasks.spawn(subscription::run(
            Arc::clone(state),
            id,
            specs,
            probe,
            tx,
            connection,
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

    fn connection_report(&self) -> Option<sidecast_core::broker::ConnectionReport> {
        Some(sidecast_core::broker::ConnectionReport {
            failovers: self.failovers(),
            primary: self.master(),
            silent_subscriptions: self.state.silent_subscriptions(),
        })
    }

    async fn close(&self) {
        let state = &self.state;
        let already = state.parts.board().close();
        self.tasks.stop();
        state.publisher_slot().take();
        // Wait for the tasks so that, once close() returns, every subscription stream has ended
        // (its sender is dropped) and no connection is left open.
        let late = self.tasks.join(CLOSE_WAIT).await;
        if late > 0 {
            tracing::warn!(url = %state.url, late, "redis tasks did not stop within {CLOSE_WAIT:?}");
        }
        if !already {
            tracing::debug!(url = %state.url, "redis broker closed");
        }
    }
}
