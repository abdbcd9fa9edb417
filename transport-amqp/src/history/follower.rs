//! The task behind one history subscription: it consumes the stream queue from the offset after
//! the last entry it delivered, waits for a consumer that lags, and, whenever the connection or
//! the consumer breaks, attaches a new reader at that offset.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::BasicAckOptions;
use sidecast_core::broker::{HistoryEntry, HistorySender, HistorySubscription, Offset};
use sidecast_core::supervision::{PartId, PumpEnd, Shutdown, Tasks};
use tokio::sync::watch;
use tokio::time::{Duration, Instant, sleep, timeout};

use super::Renewals;
use super::stream::{
    Attach, Identity, OFFSET_HEADER, Reader, identity, is_marker, open_declared_reader,
    open_reader, stream_offset,
};
use crate::CLOSE_WAIT;
use crate::connection::{AmqpConnection, AmqpState};
use crate::error;
use crate::resume::resume_backoff;
use crate::subscription::wait_for_connection;

/// The most unacknowledged deliveries a history subscription lets RabbitMQ send ahead (fewer
/// when its queue is smaller): beyond them, the entries wait in the stream.
const MAX_FOLLOW_PREFETCH: usize = 1_000;

/// After this long without a delivery, a history subscription checks that its node still holds
/// a replica of the stream: RabbitMQ 3.10 neither cancels nor closes a consumer whose local
/// replica is deleted (`rabbitmq-streams delete_replica`); the consumer just stays silent.
const IDLE_CHECK: Duration = Duration::from_secs(3);

/// Where a new history subscription starts.
pub(super) struct Position {
    /// The stream queue.
    pub(super) queue: String,
    /// The stream offset of the first entry to deliver.
    pub(super) wanted: u64,
    /// The stream's identity when the subscription started.
    pub(super) identity: Identity,
}

/// Starts the task behind a new history subscription at `from`, with `reader` (attached there
/// by the caller with `prefetch`) as its first reader; renewed streams it finds go to
/// `renewals`.
pub(super) fn start(
    state: &Arc<AmqpState>,
    tasks: &Tasks,
    from: Position,
    renewals: Arc<Renewals>,
    prefetch: u16,
    reader: Reader,
) -> HistorySubscription {
    let (tx, subscription) = HistorySubscription::bounded(state.options.subscription_capacity);
    let follower = Follower {
        state: Arc::clone(state),
        id: state.parts.next_id(),
        queue: from.queue,
        wanted: from.wanted,
        identity: from.identity,
        renewals,
        prefetch,
        tx,
    };
    state.history_readers.fetch_add(1, Ordering::Relaxed);
    tasks.spawn(follower.run(reader, tasks.shutdown()));
    subscription
}

/// The prefetch of a history subscription: no more than its queue holds.
pub(super) fn follow_prefetch(state: &AmqpState) -> u16 {
    let prefetch = state.options.subscription_capacity.min(MAX_FOLLOW_PREFETCH);
    u16::try_from(prefetch).unwrap_or(u16::MAX)
}

/// The task behind one history subscription.
struct Follower {
    state: Arc<AmqpState>,
    id: PartId,
    queue: String,
    /// The offset of the next entry to deliver: one after the last delivered (or skipped
    /// marker), or the starting point.
    wanted: u64,
    /// The identity of the stream `wanted` is an offset of, checked again at each reconnect.
    identity: Identity,
    renewals: Arc<Renewals>,
    prefetch: u16,
    tx: HistorySender,
}

/// Counts a running history subscription in [`AmqpState::history_readers`] until dropped.
struct Counted<'a>(&'a AmqpState);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.history_readers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Follower {
    async fn run(mut self, mut reader: Reader, mut shutdown: Shutdown) {
        let state = Arc::clone(&self.state);
        // However the task ends, it stops counting on the health board and as a reader.
        let _part = state.parts.board().part(self.id);
        let _counted = Counted(&state);
        let mut links = state.connection.subscribe();
        let mut resumed = false;
        loop {
            let failure = match self
                .pump(&mut reader, &mut shutdown, &mut links, resumed)
                .await
            {
                PumpEnd::Shutdown => return,
                PumpEnd::ConsumerGone => {
                    // Cancel the stream consumer now rather than when the connection ends.
                    let _ = timeout(
                        CLOSE_WAIT,
                        reader.channel.close(200, "history dropped".into()),
                    )
                    .await;
                    return;
                }
                PumpEnd::Lost(failure) => failure,
            };
            drop(reader);
            if state.parts.board().is_closed() {
                return;
            }
            state.parts.lost(self.id, &failure);
            // The connection probably went away for everybody: have it checked now.
            state.check.notify_one();
            match self.reopen(&mut shutdown, &mut links).await {
                Some(fresh) => {
                    reader = fresh;
                    resumed = true;
                    state.parts.restored(self.id);
                    tracing::debug!(queue = %self.queue, from = self.wanted, "history subscription resumes");
                }
                None => return,
            }
        }
    }

    /// A new reader from the next offset wanted, waiting for a live connection and retrying
    /// with backoff (capped at [`crate::resume::RESUME_WITHIN`]). `None` when the broker shuts
    /// down or the consumer left. A stream declared again meanwhile (its offsets started again)
    /// is read from its start, and the loss is logged and counted.
    async fn reopen(
        &mut self,
        shutdown: &mut Shutdown,
        links: &mut watch::Receiver<Option<Arc<AmqpConnection>>>,
    ) -> Option<Reader> {
        let state = &self.state;
        let backoff = resume_backoff(state.backoff());
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            state.parts.board().attempt(self.id, attempt);
            let link = wait_for_connection(state, || self.tx.closed(), shutdown, links).await?;
            let within = state.options.connect_timeout;
            let opening = async {
                let now = identity(state, &link, &self.queue).await?;
                let renewed = self.identity.renewed_by(&now);
                let from = if renewed { now.first } else { self.wanted };
                let reader = open_declared_reader(
                    state,
                    &link,
                    &self.queue,
                    Attach::Offset(from),
                    self.prefetch,
                )
                .await?;
                Ok::<_, sidecast_core::broker::BrokerError>((now, renewed, reader))
            };
            match timeout(within, opening).await {
                Ok(Ok((now, renewed, reader))) => {
                    if renewed {
                        tracing::warn!(
                            url = %state.url, queue = %self.queue, reached = self.wanted,
                            "the history stream queue was deleted and declared again: what it \
                             held is lost; reading the new stream from its start, and offsets \
                             of the old one are unknown to clients (see decision 33)"
                        );
                        self.renewals.found(&self.queue, self.wanted);
                        self.wanted = now.first;
                    }
                    self.identity = now;
                    return Some(reader);
                }
                Ok(Err(e)) => tracing::debug!(
                    url = %state.url, queue = %self.queue, attempt, error = %e,
                    "amqp history subscription setup failed"
                ),
                Err(_elapsed) => tracing::debug!(
                    url = %state.url, queue = %self.queue, attempt,
                    "amqp history subscription setup timed out after {within:?}"
                ),
            }
            // The stream may not be ready yet after a restart of RabbitMQ: retry soon.
            tokio::select! {
                () = shutdown.signalled() => return None,
                () = self.tx.closed() => return None,
                () = sleep(backoff.delay(attempt)) => {}
            }
        }
    }

    /// Whether the node of `reader`'s connection refuses a new consumer of the stream because
    /// it holds no replica any more: then `reader`'s consumer is dead without having been told.
    /// Any other outcome (the probe works, fails otherwise, or the connection changed) is left
    /// to the usual paths.
    async fn replica_gone(&self, reader: &Reader) -> bool {
        let Some(link) = self.state.live_connection() else {
            return false;
        };
        if link.generation != reader.generation {
            return false;
        }
        match timeout(
            self.state.options.connect_timeout,
            open_reader(&link, &self.queue, Attach::Next, 1),
        )
        .await
        {
            Ok(Ok(probe)) => {
                let _ = timeout(CLOSE_WAIT, probe.channel.close(200, "replica check".into())).await;
                false
            }
            Ok(Err(e)) => error::no_local_replica(&e),
            Err(_elapsed) => false,
        }
    }

    /// Forwards entries from `reader` until it breaks, the consumer leaves, the connection is
    /// replaced or the broker shuts down. Waits for a consumer that lags: unacknowledged
    /// deliveries hold RabbitMQ back (the prefetch), and the entries wait in the stream.
    async fn pump(
        &mut self,
        reader: &mut Reader,
        shutdown: &mut Shutdown,
        links: &mut watch::Receiver<Option<Arc<AmqpConnection>>>,
        resumed: bool,
    ) -> PumpEnd {
        let mut first = true;
        let idle = sleep(IDLE_CHECK);
        tokio::pin!(idle);
        loop {
            let delivery = tokio::select! {
                biased;
                () = shutdown.signalled() => return PumpEnd::Shutdown,
                delivery = reader.consumer.next() => delivery,
                () = &mut idle => {
                    if self.replica_gone(reader).await {
                        return PumpEnd::Lost(
                            "the RabbitMQ node no longer holds a replica of the stream (its \
                             consumer gets nothing more)"
                                .to_owned(),
                        );
                    }
                    idle.as_mut().reset(Instant::now() + IDLE_CHECK);
                    continue;
                }
                changed = links.changed() => {
                    let replaced = changed.is_err()
                        || links
                            .borrow_and_update()
                            .as_ref()
                            .is_some_and(|link| link.generation != reader.generation);
                    if replaced {
                        return PumpEnd::Lost("the connection was replaced".to_owned());
                    }
                    continue;
                }
                () = self.tx.closed() => return PumpEnd::ConsumerGone,
            };
            let delivery = match delivery {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => return PumpEnd::Lost(format!("the history consumer failed: {e}")),
                None => {
                    return PumpEnd::Lost(
                        "the history consumer was cancelled (connection or channel closed, or \
                         queue deleted)"
                            .to_owned(),
                    );
                }
            };
            idle.as_mut().reset(Instant::now() + IDLE_CHECK);
            let Some(offset) = stream_offset(&delivery) else {
                return PumpEnd::Lost(format!(
                    "a delivery from {:?} has no {OFFSET_HEADER} header",
                    self.queue
                ));
            };
            if offset >= self.wanted {
                if first && resumed && offset > self.wanted {
                    tracing::warn!(
                        url = %self.state.url, queue = %self.queue, from = self.wanted, offset,
                        "history subscription resumed after entries it had not delivered were \
                         trimmed; they are lost to it"
                    );
                }
                first = false;
                if !is_marker(&delivery) {
                    let entry = HistoryEntry {
                        offset: Offset::from_number(offset),
                        payload: Bytes::from(delivery.data),
                    };
                    tokio::select! {
                        biased;
                        () = shutdown.signalled() => return PumpEnd::Shutdown,
                        sent = self.tx.send(entry) => if !sent { return PumpEnd::ConsumerGone },
                    }
                }
                self.wanted = offset + 1;
            }
            // After the entry was handed over: the credit returned lets RabbitMQ send the next.
            if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                return PumpEnd::Lost(format!("acknowledging a history delivery failed: {e}"));
            }
        }
    }
}
