//! [`RedisState`]: what a [`crate::RedisBroker`]'s handles and background tasks share: the
//! client, the publish connection, the connections' health and outage log; and how connections
//! are opened and reopened.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client};
use sidecast_core::broker::{ClusterUrl, SentinelUrl};
use sidecast_core::supervision::{
    AttemptCount, Backoff, HealthBoard, OutageLog, PartId, Parts, Reconnect, Shutdown,
};
use sidecast_core::{BrokerError, ChannelSpec};
use tokio::sync::{Notify, watch};
use tokio::time::timeout;

use crate::cluster::{Cluster, CommandConnection};
use crate::error;
use crate::options::RedisOptions;
use crate::sentinel::{self, Master};

/// Where connections go.
enum Target {
    /// One server, always the same.
    Single(Client),
    /// The master a set of sentinels names, `None` until first asked.
    Sentinel {
        url: SentinelUrl,
        master: Mutex<Option<Master>>,
    },
    /// A Redis Cluster, reached through its seed nodes.
    Cluster(Box<Cluster>),
}

/// The publish connection's id on the health board; subscriptions' connections count up from 1.
pub(crate) const PUBLISHER: PartId = 0;

/// The state a [`crate::RedisBroker`]'s handles and background tasks share.
pub(crate) struct RedisState {
    target: Target,
    /// The epoch of the current master (always 0 for a single server): connections record the
    /// epoch they were opened under and leave when it changes.
    epoch: watch::Sender<u64>,
    /// Asks the master watcher ([`crate::failover::watch`]) to ask the sentinels now.
    pub(crate) resolve_now: Notify,
    /// Master changes seen since the broker connected (the first resolution is not one).
    failovers: AtomicU64,
    /// The master epoch the current publish connection was opened under.
    publisher_epoch: AtomicU64,
    /// Subscriptions found silent by their probe and rebuilt.
    silent_subscriptions: AtomicU64,
    pub(crate) options: RedisOptions,
    /// `options.url` with the password redacted: the only form that reaches logs and errors.
    pub(crate) url: String,
    /// The connections (the publisher, [`PUBLISHER`], and one per subscription), their health
    /// and outages.
    pub(crate) parts: Parts,
    /// The publish connection and its generation; `None` while it is down (or after close).
    /// The generation tells whether the connection a failed publish used is still the current
    /// one, so that a late failure never discards a newer, healthy connection.
    publisher: Mutex<Option<(u64, CommandConnection)>>,
    /// The generation of the next publish connection.
    next_generation: AtomicU64,
    /// Asks the publisher's supervisor to check its connection now, because a publish failed or
    /// a subscription connection broke (the server probably went away for everybody).
    pub(crate) check_publisher: Notify,
}

impl RedisState {
    /// Checks `options` and makes the client; connects nothing yet.
    pub(crate) fn new(options: RedisOptions) -> Result<Self, BrokerError> {
        let url = options.url.redacted();
        options.validate()?;
        if options.is_tls() {
            // redis' rustls support comes without a crypto provider; ring is this crate's. An
            // application that installed another provider keeps it (the error says so, ignored).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let target = match ClusterUrl::parse(options.url.as_str()) {
            Ok(Some(cluster)) => Some(Target::Cluster(Box::new(
                Cluster::new(cluster, options.connect_timeout).map_err(|e| error::map(e, &url))?,
            ))),
            Ok(None) => None,
            Err(why) => {
                return Err(BrokerError::Config {
                    backend: error::BACKEND,
                    reason: format!("the Redis Cluster address {url} {why}"),
                });
            }
        };
        let target = match target {
            Some(cluster) => cluster,
            None => match SentinelUrl::parse(options.url.as_str()) {
                Ok(Some(sentinel)) => Target::Sentinel {
                    url: sentinel,
                    master: Mutex::new(None),
                },
                Ok(None) => Target::Single(
                    Client::open(options.url.as_str()).map_err(|e| error::map(e, &url))?,
                ),
                Err(why) => {
                    return Err(BrokerError::Config {
                        backend: error::BACKEND,
                        reason: format!("the Redis Sentinel address {url} {why}"),
                    });
                }
            },
        };
        Ok(Self {
            target,
            epoch: watch::Sender::new(0),
            resolve_now: Notify::new(),
            failovers: AtomicU64::new(0),
            publisher_epoch: AtomicU64::new(0),
            silent_subscriptions: AtomicU64::new(0),
            parts: Parts::new(
                HealthBoard::new(AttemptCount::OldestOutage),
                OutageLog::new(
                    sidecast_core::outage_log_target!(),
                    error::BACKEND,
                    &options.url,
                ),
                PUBLISHER + 1,
            ),
            url,
            options,
            publisher: Mutex::new(None),
            next_generation: AtomicU64::new(0),
            check_publisher: Notify::new(),
        })
    }

    pub(crate) fn publisher_slot(&self) -> MutexGuard<'_, Option<(u64, CommandConnection)>> {
        // A poisoned lock only means a panic elsewhere while holding it; the slot stays valid.
        self.publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `connection`, opened under master epoch `epoch`, the publish connection.
    pub(crate) fn install_publisher(&self, (epoch, connection): (u64, CommandConnection)) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.publisher_slot();
        self.publisher_epoch.store(epoch, Ordering::Relaxed);
        *slot = Some((generation, connection));
    }

    /// The master epoch of the current publish connection.
    pub(crate) fn publisher_epoch(&self) -> u64 {
        self.publisher_epoch.load(Ordering::Relaxed)
    }

    /// The Sentinel address, when connections follow a Sentinel master.
    pub(crate) fn sentinel_url(&self) -> Option<&SentinelUrl> {
        match &self.target {
            Target::Single(_) | Target::Cluster(_) => None,
            Target::Sentinel { url, .. } => Some(url),
        }
    }

    fn master_slot(&self) -> Option<MutexGuard<'_, Option<Master>>> {
        match &self.target {
            Target::Single(_) | Target::Cluster(_) => None,
            Target::Sentinel { master, .. } => {
                Some(master.lock().unwrap_or_else(PoisonError::into_inner))
            }
        }
    }

    /// The current master epoch.
    pub(crate) fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    /// Returns once the master epoch differs from `epoch`: the master a connection was opened to
    /// is no longer the master. Never returns for a single server.
    pub(crate) async fn master_moved(&self, epoch: u64) {
        let mut epochs = self.epoch.subscribe();
        if epochs.wait_for(|current| *current != epoch).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Subscriptions found silent by their probe and rebuilt since the broker connected.
    pub(crate) fn silent_subscriptions(&self) -> u64 {
        self.silent_subscriptions.load(Ordering::Relaxed)
    }

    /// Counts a subscription found silent.
    pub(crate) fn count_silent(&self) {
        self.silent_subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Master changes seen since the broker connected.
    pub(crate) fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// `host:port` of the current master (Sentinel only, once known).
    pub(crate) fn master_addr(&self) -> Option<String> {
        self.master_slot()
            .and_then(|slot| slot.as_ref().map(|m| m.addr.clone()))
    }

    /// A connection failed or a server answered `READONLY` / `MASTERDOWN`: with Sentinel, have the
    /// master re-resolved now.
    pub(crate) fn suspect_master(&self) {
        if self.sentinel_url().is_some() {
            self.resolve_now.notify_one();
        }
    }

    /// Asks the sentinels where the master is and, if it moved, makes the new one current.
    pub(crate) async fn refresh_master(&self) -> Result<(), BrokerError> {
        let Some(url) = self.sentinel_url() else {
            return Ok(());
        };
        let (host, port) = sentinel::resolve(url, &self.url, self.options.connect_timeout).await?;
        self.set_master(url, &host, port)
    }

    /// Makes `host:port` the current master unless it is already: a new epoch, which drops
    /// every connection to the old one; a failover is logged once and counted.
    fn set_master(&self, url: &SentinelUrl, host: &str, port: u16) -> Result<(), BrokerError> {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let Some(mut slot) = self.master_slot() else {
            return Ok(());
        };
        let old = slot.as_ref().map(|m| m.addr.clone());
        if old.as_deref() == Some(addr.as_str()) {
            return Ok(());
        }
        let client =
            Client::open(url.master_url(host, port)).map_err(|e| error::map(e, &self.url))?;
        let epoch = self.epoch() + 1;
        *slot = Some(Master {
            epoch,
            addr: addr.clone(),
            client,
        });
        // Announced under the lock, so that two changes in a row cannot share an epoch.
        self.epoch.send_replace(epoch);
        drop(slot);
        match old {
            Some(old) => {
                self.failovers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    url = %self.url, service = %url.service, old = %old, new = %addr,
                    "redis master changed from {old} to {addr} (failover); moving every connection"
                );
            }
            None => tracing::info!(
                url = %self.url, service = %url.service, master = %addr,
                "redis master of {} is {addr}", url.service
            ),
        }
        Ok(())
    }

    /// The client of the current master and its epoch; with Sentinel, asks the sentinels first
    /// when no master is known yet.
    async fn master(&self) -> Result<(u64, Client), BrokerError> {
        if let Target::Single(client) = &self.target {
            return Ok((0, client.clone()));
        }
        if let Some(master) = self.master_slot().and_then(|slot| slot.clone()) {
            return Ok((master.epoch, master.client));
        }
        self.refresh_master().await?;
        self.master_slot()
            .and_then(|slot| slot.clone())
            .map(|master| (master.epoch, master.client))
            .ok_or_else(|| error::reconnecting(&self.url, 0))
    }

    /// The publish connection of `generation` failed with `error`: empty the slot (unless a newer
    /// connection already replaced it), report the outage and wake the supervisor to reconnect.
    pub(crate) fn publisher_lost(&self, generation: u64, error: &dyn std::fmt::Display) {
        {
            let mut slot = self.publisher_slot();
            if !matches!(*slot, Some((current, _)) if current == generation) {
                return;
            }
            *slot = None;
        }
        self.parts.lost(PUBLISHER, error);
        self.check_publisher.notify_one();
    }

    /// A new publish connection, checked with `PING`, within the connect time-out.
    #[allow(
        dead_code,
        reason = "kept for callers that need no master epoch; the broker's own use the _at form"
    )]
    pub(crate) async fn connect_publisher(&self) -> Result<MultiplexedConnection, BrokerError> {
        self.connect_publisher_at()
            .await
            .map(|(_, connection)| connection)
    }

    /// [`RedisState::connect_publisher`], with the master epoch it was opened under. With
    /// Sentinel, the server must answer `ROLE` as a master.
    pub(crate) async fn connect_publisher_at(
        &self,
    ) -> Result<(u64, MultiplexedConnection), BrokerError> {
        // Time-outs are applied here, around whole operations, rather than by redis-rs, so that
        // they surface as BrokerError::Timeout with the configured duration.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(None)
            .set_response_timeout(None);
        let (epoch, client) = self.master().await?;
        let sentinel = self.sentinel_url().is_some();
        let (connection, is_master) = self
            .within_connect_timeout(async {
                let mut connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let is_master = if sentinel {
                    sentinel::is_master(&mut connection).await?
                } else {
                    redis::cmd("PING")
                        .query_async::<()>(&mut connection)
                        .await?;
                    true
                };
                Ok((connection, is_master))
            })
            .await?;
        if !is_master {
            // The sentinels' answer is stale (a failover is under way) or this is a demoted
            // master: ask again, and let the caller retry.
            self.suspect_master();
            return Err(BrokerError::unavailable(
                error::BACKEND,
                self.url.clone(),
                format!(
                    "{} is not a master (a failover is under way)",
                    self.master_addr().unwrap_or_default()
                ),
            ));
        }
        Ok((epoch, connection))
    }

    /// A new pub/sub connection subscribed to `specs`, within the connect time-out. Returns once
    /// Redis confirmed every subscription, so messages published afterwards are received.
    /// Also returns the master epoch it was opened under.
    pub(crate) async fn open_pubsub(
        &self,
        specs: &[ChannelSpec],
    ) -> Result<(u64, (PubSubSink, PubSubStream)), BrokerError> {
        let (exact, patterns): (Vec<&ChannelSpec>, Vec<&ChannelSpec>) = specs
            .iter()
            .partition(|spec| matches!(spec, ChannelSpec::Exact(_)));
        let exact: Vec<&str> = exact.iter().map(|s| s.as_str()).collect();
        let patterns: Vec<&str> = patterns.iter().map(|s| s.as_str()).collect();
        if let Target::Cluster(cluster) = &self.target {
            let mut command = self.publisher_slot().clone().map(|(_, c)| c);
            return self
                .within_connect_timeout(cluster.open_pubsub(command.as_mut(), &exact, &patterns))
                .await
                .map(|connection| (0, connection));
        }
        let (epoch, client) = self.master().await?;
        self.within_connect_timeout(async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            if !exact.is_empty() {
                sink.subscribe(&exact).await?;
            }
            if !patterns.is_empty() {
                sink.psubscribe(&patterns).await?;
            }
            Ok((sink, stream))
        })
        .await
        .map(|connection| (epoch, connection))
    }

    /// The Redis Cluster, when the address is one.
    pub(crate) fn cluster(&self) -> Option<&Cluster> {
        match &self.target {
            Target::Cluster(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// Whether `channel` uses sharded pub/sub: on a Redis Cluster, when
    /// [`RedisOptions::sharded_channels`] names it.
    pub(crate) fn is_sharded(&self, channel: &str) -> bool {
        self.is_cluster() && self.options.sharded_channels.iter().any(|c| c == channel)
    }

    /// Whether keys live on a Redis Cluster (then a channel's keys carry its hash tag).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The name of a key of `channel`: `{head}{channel}{tail}`, with the channel as hash tag on a
    /// Cluster ([`sidecast_core::broker::slot_key`]), so that a channel's keys share one slot.
    pub(crate) fn channel_key(&self, head: &str, channel: &str, tail: &str) -> String {
        sidecast_core::broker::slot_key(head, channel, tail, self.is_cluster())
    }

    /// A new command connection (publishes, appends, history reads) with the master epoch it was
    /// opened under: [`RedisState::connect_publisher_at`], or on a Cluster the cluster client's.
    pub(crate) async fn connect_command_at(&self) -> Result<(u64, CommandConnection), BrokerError> {
        match &self.target {
            Target::Cluster(cluster) => self
                .within_connect_timeout(cluster.connect())
                .await
                .map(|connection| (0, connection)),
            _ => self
                .connect_publisher_at()
                .await
                .map(|(epoch, connection)| (epoch, CommandConnection::Server(connection))),
        }
    }

    /// A connection of its own for blocking reads of `key` (`XREAD BLOCK`), with the master
    /// epoch it was opened under: to the server (the master), or on a Cluster to the primary
    /// that serves `key`'s slot now, found through the command connection. Either has no
    /// response time-out of the crate's: the reader bounds each read by more than its BLOCK.
    pub(crate) async fn connect_reader(
        &self,
        key: &str,
    ) -> Result<(u64, MultiplexedConnection), BrokerError> {
        let Target::Cluster(cluster) = &self.target else {
            return self.connect_publisher_at().await;
        };
        let Some((_, mut command)) = self.publisher_slot().clone() else {
            return Err(error::reconnecting(
                &self.url,
                self.parts.board().reconnect_attempt(),
            ));
        };
        self.within_connect_timeout(cluster.connect_primary_of(&mut command, key))
            .await
            .map(|connection| (0, connection))
    }

    async fn within_connect_timeout<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        let after = self.options.connect_timeout;
        let result = match timeout(after, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(error::map(e, &self.url)),
            Err(_elapsed) => Err(error::timeout(after)),
        };
        if result.is_err() {
            self.suspect_master();
        }
        result
    }

    /// Reconnects connection `id` with backoff until `connect` succeeds; `None` when the broker
    /// shuts down or `abandoned()` says nobody needs the connection any more. The backoff is
    /// capped at `cap` or the options' `backoff_max`, whichever is smaller: history subscriptions
    /// retry at least every second, so that they resume within a second of Redis answering
    /// again.
    pub(crate) async fn reconnect<T, Fut>(
        &self,
        id: PartId,
        cap: std::time::Duration,
        shutdown: &mut Shutdown,
        abandoned: impl Fn() -> bool,
        connect: impl Fn() -> Fut,
    ) -> Option<T>
    where
        Fut: Future<Output = Result<T, BrokerError>>,
    {
        let backoff = Backoff {
            min: self.options.backoff_min,
            max: self.options.backoff_max.min(cap),
        };
        loop {
            let epoch = self.epoch();
            let reconnect = Reconnect {
                board: self.parts.board(),
                id,
                backoff,
            };
            let attempts = reconnect.run(shutdown, &abandoned, &connect, |attempt, e| {
                tracing::debug!(
                    url = %self.url, connection = id, attempt, error = %e,
                    "redis reconnect attempt failed"
                );
            });
            // A new master: try it at once rather than after the backoff grown against the old.
            tokio::select! {
                connected = attempts => return connected,
                () = self.master_moved(epoch) => {}
            }
        }
    }
}
