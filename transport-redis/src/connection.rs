//! [`RedisState`]: what a [`crate::RedisBroker`]'s handles and background tasks share: the
//! client, the publish connection, the connections' health and outage log; and how connections
//! are opened and reopened.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, Client};
use sidecast_core::supervision::{
    AttemptCount, Backoff, HealthBoard, OutageLog, PartId, Parts, Reconnect, Shutdown,
};
use sidecast_core::{BrokerError, ChannelSpec};
use tokio::sync::Notify;
use tokio::time::timeout;

use crate::error;
use crate::options::RedisOptions;

/// The publish connection's id on the health board; subscriptions' connections count up from 1.
pub(crate) const PUBLISHER: PartId = 0;

/// The state a [`crate::RedisBroker`]'s handles and background tasks share.
pub(crate) struct RedisState {
    client: Client,
    pub(crate) options: RedisOptions,
    /// `options.url` with the password redacted: the only form that reaches logs and errors.
    pub(crate) url: String,
    /// The connections (the publisher, [`PUBLISHER`], and one per subscription), their health
    /// and outages.
    pub(crate) parts: Parts,
    /// The publish connection and its generation; `None` while it is down (or after close).
    /// The generation tells whether the connection a failed publish used is still the current
    /// one, so that a late failure never discards a newer, healthy connection.
    publisher: Mutex<Option<(u64, MultiplexedConnection)>>,
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
        let client = Client::open(options.url.as_str()).map_err(|e| error::map(e, &url))?;
        Ok(Self {
            client,
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

    pub(crate) fn publisher_slot(&self) -> MutexGuard<'_, Option<(u64, MultiplexedConnection)>> {
        // A poisoned lock only means a panic elsewhere while holding it; the slot stays valid.
        self.publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `connection` the publish connection.
    pub(crate) fn install_publisher(&self, connection: MultiplexedConnection) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        *self.publisher_slot() = Some((generation, connection));
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
    pub(crate) async fn connect_publisher(&self) -> Result<MultiplexedConnection, BrokerError> {
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
    pub(crate) async fn open_pubsub(
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
        Reconnect {
            board: self.parts.board(),
            id,
            backoff,
        }
        .run(shutdown, abandoned, connect, |attempt, e| {
            tracing::debug!(
                url = %self.url, connection = id, attempt, error = %e,
                "redis reconnect attempt failed"
            );
        })
        .await
    }
}
