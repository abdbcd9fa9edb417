//! [`AmqpHistory`]: the [`History`] of a [`crate::AmqpBroker`], one RabbitMQ stream queue per
//! channel (decision 20): appended to straight through the default exchange, each append's
//! offset learnt by reading its own `message_id` back, the end of a stream learnt by appending
//! a marker, and subscriptions that consume from the offset after the last one delivered.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};
use sidecast_core::broker::{
    BrokerError, History, HistoryEntry, HistoryRetention, HistorySender, HistorySubscription,
    Offset, Replay,
};
use sidecast_core::supervision::{Backoff, PartId, PumpEnd, Shutdown, Tasks};
use tokio::sync::watch;
use tokio::time::{sleep, timeout};

use crate::connection::{AmqpConnection, AmqpState};
use crate::error::{self, Doing};
use crate::options::AmqpOptions;
use crate::subscription::wait_for_connection;
use crate::{CLOSE_WAIT, MAX_NAME_BYTES};

/// The reconnect backoff cap of a history subscription (and of the connection while one runs):
/// it retries at least this often, so that it resumes within this long of RabbitMQ answering.
pub(crate) const RESUME_WITHIN: Duration = Duration::from_secs(1);

/// The header that makes a message a marker: written by reads to learn where a stream ends,
/// skipped by every reader.
const MARKER_HEADER: &str = "x-sidecast-marker";
/// The header in which RabbitMQ gives each delivery from a stream its offset.
const OFFSET_HEADER: &str = "x-stream-offset";
/// Unacknowledged deliveries a read or an append's read-back lets RabbitMQ send ahead.
const READ_PREFETCH: u16 = 256;
/// The most unacknowledged deliveries a history subscription lets RabbitMQ send ahead (fewer
/// when its queue is smaller): beyond them, the entries wait in the stream.
const MAX_FOLLOW_PREFETCH: usize = 1_000;

/// `backoff` capped at [`RESUME_WITHIN`].
pub(crate) fn resume_backoff(backoff: Backoff) -> Backoff {
    Backoff {
        min: backoff.min.min(RESUME_WITHIN),
        max: backoff.max.min(RESUME_WITHIN),
    }
}

/// The arguments of every history stream queue; RabbitMQ refuses to redeclare a queue with
/// others ([`crate::HistoryMismatch`]).
fn queue_arguments(options: &AmqpOptions) -> FieldTable {
    let long = |n: usize| AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX));
    let mut arguments = FieldTable::default();
    arguments
        .insert(
            "x-queue-type".into(),
            AMQPValue::LongString("stream".into()),
        )
        .insert(
            "x-max-age".into(),
            AMQPValue::LongString(max_age_argument(options.history.max_age).into()),
        )
        .insert("x-max-length-bytes".into(), long(options.history.max_bytes))
        .insert(
            "x-stream-max-segment-size-bytes".into(),
            long(options.history_segment_bytes),
        );
    arguments
}

/// `x-max-age` in whole seconds, rounded up (RabbitMQ takes `<n>s`, `<n>m`, ...).
fn max_age_argument(age: Duration) -> String {
    let seconds = age.as_secs() + u64::from(age.subsec_nanos() > 0);
    format!("{}s", seconds.max(1))
}

/// The first stream offset a reader after `offset` wants: 0 after [`Offset::START`], `n + 1`
/// after `Offset::from_number(n)`. `None` for a string this history never makes.
fn first_wanted(offset: &Offset) -> Option<u64> {
    let wanted = if offset.is_start() {
        0
    } else {
        offset.to_number()?.checked_add(1)?
    };
    // x-stream-offset is a signed 64-bit number.
    i64::try_from(wanted).is_ok().then_some(wanted)
}

/// The stream offset RabbitMQ gave a delivery.
fn stream_offset(delivery: &Delivery) -> Option<u64> {
    match delivery
        .properties
        .headers()
        .as_ref()?
        .inner()
        .get(OFFSET_HEADER)?
    {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::Timestamp(n) => Some(*n),
        _ => None,
    }
}

fn is_marker(delivery: &Delivery) -> bool {
    delivery
        .properties
        .headers()
        .as_ref()
        .is_some_and(|headers| headers.contains_key(MARKER_HEADER))
}

fn has_id(delivery: &Delivery, id: &str) -> bool {
    delivery
        .properties
        .message_id()
        .as_ref()
        .is_some_and(|own| own.as_str() == id)
}

/// The properties of an appended message: a unique `message_id` to find it by, and the marker
/// header for a marker.
fn properties(id: &str, marker: bool) -> BasicProperties {
    let properties = BasicProperties::default().with_message_id(id.into());
    if marker {
        let mut headers = FieldTable::default();
        headers.insert(MARKER_HEADER.into(), AMQPValue::Boolean(true));
        properties.with_headers(headers)
    } else {
        properties
    }
}

/// A message id no other append (of any node) uses.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The history of one [`crate::AmqpBroker`] (shared by its clones).
pub(crate) struct AmqpHistory {
    state: Arc<AmqpState>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for AmqpHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpHistory")
            .field("url", &self.state.url)
            .field("retention", &self.state.options.history)
            .finish_non_exhaustive()
    }
}

/// A channel consuming a stream queue, and the connection it is on.
struct Reader {
    generation: u64,
    /// Kept so that the channel lives as long as the consumer; dropping it closes the channel.
    _channel: Channel,
    consumer: Consumer,
}

/// Where a reader attaches.
#[derive(Debug, Clone, Copy)]
enum Attach {
    /// After the last message: only what is appended from now on.
    Next,
    /// At this stream offset (or the oldest one left, if it was trimmed).
    Offset(u64),
}

impl Attach {
    fn argument(self) -> AMQPValue {
        match self {
            Self::Next => AMQPValue::LongString("next".into()),
            // first_wanted() checked that the offset fits.
            Self::Offset(n) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
        }
    }
}

fn declared(link: &AmqpConnection) -> MutexGuard<'_, HashSet<String>> {
    link.history_queues
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Declares `queue` as a stream queue with this node's arguments, unless this connection did.
async fn declare(state: &AmqpState, link: &AmqpConnection, queue: &str) -> Result<(), BrokerError> {
    if declared(link).contains(queue) {
        return Ok(());
    }
    let failed = |e| state.failed(e, Doing::History(queue));
    // A channel of its own: RabbitMQ closes the channel of a refused declaration.
    let channel = link.connection.create_channel().await.map_err(failed)?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            queue_arguments(&state.options),
        )
        .await
        .map_err(failed)?;
    declared(link).insert(queue.to_owned());
    Ok(())
}

/// Whether `queue` exists (a passive declaration, which creates nothing).
async fn exists(
    state: &AmqpState,
    link: &AmqpConnection,
    queue: &str,
) -> Result<bool, BrokerError> {
    let failed = |e| state.failed(e, Doing::History(queue));
    let channel = link.connection.create_channel().await.map_err(failed)?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(_) => Ok(true),
        // NOT_FOUND closes this channel only. A queue whose home node is down exists.
        Err(e) if error::reply_code(&e) == Some(404) && !error::home_node_down(&e) => Ok(false),
        Err(e) => Err(failed(e)),
    }
}

/// A new channel consuming `queue` from `from`, with `prefetch` deliveries unacknowledged at
/// most (RabbitMQ refuses a stream consumer without a prefetch, and one without acks).
async fn open_reader(
    link: &AmqpConnection,
    queue: &str,
    from: Attach,
    prefetch: u16,
) -> lapin::Result<Reader> {
    let channel = link.connection.create_channel().await?;
    channel
        .basic_qos(prefetch.max(1), BasicQosOptions::default())
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-stream-offset".into(), from.argument());
    let consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await?;
    Ok(Reader {
        generation: link.generation,
        _channel: channel,
        consumer,
    })
}

/// Declares `queue` (once per connection) and opens a reader on it; declares again if the queue
/// vanished since (an operator deleted it).
async fn open_declared_reader(
    state: &AmqpState,
    link: &AmqpConnection,
    queue: &str,
    from: Attach,
    prefetch: u16,
) -> Result<Reader, BrokerError> {
    declare(state, link, queue).await?;
    match open_reader(link, queue, from, prefetch).await {
        Err(e) if error::reply_code(&e) == Some(404) => {
            declared(link).remove(queue);
            declare(state, link, queue).await?;
            open_reader(link, queue, from, prefetch).await
        }
        other => other,
    }
    .map_err(|e| state.failed(e, Doing::History(queue)))
}

/// The next delivery of `reader` and its stream offset, acknowledged (an ack only returns
/// prefetch credit: the stream keeps the message), within `within`.
async fn next_delivery(
    state: &AmqpState,
    reader: &mut Reader,
    queue: &str,
    within: Duration,
) -> Result<(Delivery, u64), BrokerError> {
    let delivery = match timeout(within, reader.consumer.next()).await {
        Err(_elapsed) => return Err(error::timeout(within)),
        Ok(None) => {
            return Err(error::unavailable(
                &state.url,
                format!("the reader of the history queue {queue:?} was cancelled"),
            ));
        }
        Ok(Some(Err(e))) => return Err(state.failed(e, Doing::History(queue))),
        Ok(Some(Ok(delivery))) => delivery,
    };
    let Some(offset) = stream_offset(&delivery) else {
        return Err(BrokerError::rejected(
            error::BACKEND,
            format!(
                "a delivery from the history queue {queue:?} has no {OFFSET_HEADER} header: the \
                 queue is not a stream queue (delete it, or choose another \
                 AmqpOptions::history_queue_prefix)"
            ),
        ));
    };
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .map_err(|e| state.failed(e, Doing::History(queue)))?;
    Ok((delivery, offset))
}

/// Appends `payload` (a marker when `marker`) to `queue`, which exists, and returns the offset
/// RabbitMQ gave it: a publisher confirm does not carry it, so a reader attached just before
/// the publish reads until it sees the message's own id.
async fn append_to(
    state: &AmqpState,
    link: &AmqpConnection,
    queue: &str,
    payload: &[u8],
    marker: bool,
) -> Result<u64, BrokerError> {
    let mut reader = open_declared_reader(state, link, queue, Attach::Next, READ_PREFETCH).await?;
    let id = new_id();
    link.publish_to_queue(state, queue, payload, properties(&id, marker))
        .await?;
    let within = state.options.publish_timeout;
    loop {
        let (delivery, offset) = next_delivery(state, &mut reader, queue, within).await?;
        if has_id(&delivery, &id) {
            return Ok(offset);
        }
    }
}

impl AmqpHistory {
    pub(crate) fn new(state: Arc<AmqpState>, tasks: Arc<Tasks>) -> Self {
        Self { state, tasks }
    }

    /// The stream queue of `channel`, or why it cannot have one.
    fn queue(&self, channel: &str) -> Result<String, BrokerError> {
        let queue = format!("{}{channel}", self.state.options.history_queue_prefix);
        if channel.is_empty() || queue.len() > MAX_NAME_BYTES {
            return Err(BrokerError::Unsupported {
                backend: error::BACKEND,
                what: format!(
                    "the history of channel {channel:?}: its queue name {queue:?} must have 1 to \
                     {MAX_NAME_BYTES} bytes (a shorter channel name or \
                     AmqpOptions::history_queue_prefix)"
                ),
            });
        }
        Ok(queue)
    }

    /// The live connection, or the error of a call made now.
    fn link(&self) -> Result<Arc<AmqpConnection>, BrokerError> {
        if self.state.board.is_closed() {
            return Err(BrokerError::Closed);
        }
        self.state
            .live_connection()
            .ok_or_else(|| self.state.down_error())
    }

    /// Runs `operation` within `within`; a time-out has the connection checked.
    async fn bounded<T>(
        &self,
        within: Duration,
        operation: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        match timeout(within, operation).await {
            Ok(result) => result,
            Err(_elapsed) => {
                self.state.check.notify_one();
                Err(error::timeout(within))
            }
        }
    }
}

#[async_trait]
impl History for AmqpHistory {
    async fn append(&self, channel: &str, payload: Bytes) -> Result<Offset, BrokerError> {
        let queue = self.queue(channel)?;
        let link = self.link()?;
        let state = &self.state;
        let offset = self
            .bounded(
                state.options.publish_timeout,
                append_to(state, &link, &queue, &payload, false),
            )
            .await?;
        Ok(Offset::from_number(offset))
    }

    async fn read_after(
        &self,
        channel: &str,
        after: &Offset,
        limit: usize,
    ) -> Result<Replay, BrokerError> {
        let queue = self.queue(channel)?;
        let link = self.link()?;
        let Some(wanted) = first_wanted(after) else {
            return Ok(Replay::Unknown);
        };
        let state = &self.state;
        let within = state.options.publish_timeout;
        let setup = async {
            if !exists(state, &link, &queue).await? {
                return Ok(None);
            }
            let reader = open_reader(&link, &queue, Attach::Offset(wanted), READ_PREFETCH)
                .await
                .map_err(|e| state.failed(e, Doing::History(&queue)))?;
            // Everything appended before the marker is before it in the stream: reading up to
            // the marker reads all of it.
            let marker = new_id();
            link.publish_to_queue(state, &queue, b"", properties(&marker, true))
                .await?;
            Ok(Some((reader, marker)))
        };
        let Some((mut reader, marker)) = self.bounded(within, setup).await? else {
            return Ok(if after.is_start() {
                Replay::Entries(Vec::new())
            } else {
                Replay::Unknown
            });
        };
        let mut entries = Vec::new();
        let mut first = true;
        loop {
            // Each delivery within the time-out rather than the whole read: a long read is
            // fine as long as it progresses.
            let (delivery, offset) = next_delivery(state, &mut reader, &queue, within).await?;
            let own = has_id(&delivery, &marker);
            if own && offset < wanted {
                // The offset is past the end of the stream: never assigned.
                return Ok(Replay::Unknown);
            }
            if offset < wanted {
                // A reader attaches at the start of the chunk holding its offset.
                continue;
            }
            if first {
                first = false;
                // Offsets are consecutive (markers included): a gap before the first one
                // means what was after `after` has been trimmed.
                if offset > wanted {
                    return Ok(Replay::Trimmed);
                }
            }
            if own || entries.len() >= limit {
                return Ok(Replay::Entries(entries));
            }
            if is_marker(&delivery) {
                continue;
            }
            entries.push(HistoryEntry {
                offset: Offset::from_number(offset),
                payload: Bytes::from(delivery.data),
            });
            if entries.len() == limit {
                return Ok(Replay::Entries(entries));
            }
        }
    }

    async fn last_offset(&self, channel: &str) -> Result<Option<Offset>, BrokerError> {
        let queue = self.queue(channel)?;
        let link = self.link()?;
        let state = &self.state;
        let read = async {
            if !exists(state, &link, &queue).await? {
                return Ok(None);
            }
            // The offset just before a new marker: the newest entry, or a later marker.
            let marker = append_to(state, &link, &queue, b"", true).await?;
            Ok(marker.checked_sub(1))
        };
        let last = self.bounded(state.options.publish_timeout, read).await?;
        Ok(last.map(Offset::from_number))
    }

    async fn subscribe_from(
        &self,
        channel: &str,
        after: &Offset,
    ) -> Result<HistorySubscription, BrokerError> {
        let queue = self.queue(channel)?;
        let Some(wanted) = first_wanted(after) else {
            return Err(BrokerError::Unsupported {
                backend: error::BACKEND,
                what: format!("subscribing after {after:?}, an offset this history never made"),
            });
        };
        let link = self.link()?;
        let state = &self.state;
        let prefetch = follow_prefetch(state);
        // The first reader is opened here, so that the caller learns about a RabbitMQ that is
        // down or refuses the queue; later ones are the task's business.
        let reader = self
            .bounded(
                state.options.connect_timeout,
                open_declared_reader(state, &link, &queue, Attach::Offset(wanted), prefetch),
            )
            .await?;
        let (tx, subscription) = HistorySubscription::bounded(state.options.subscription_capacity);
        let follower = Follower {
            state: Arc::clone(state),
            id: state.next_part_id(),
            queue,
            wanted,
            prefetch,
            tx,
        };
        state.history_readers.fetch_add(1, Ordering::Relaxed);
        self.tasks
            .spawn(follower.run(reader, self.tasks.shutdown()));
        Ok(subscription)
    }

    fn retention(&self) -> HistoryRetention {
        self.state.options.history
    }
}

/// The prefetch of a history subscription: no more than its queue holds.
fn follow_prefetch(state: &AmqpState) -> u16 {
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
        let _part = state.board.part(self.id);
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
                        reader._channel.close(200, "history dropped".into()),
                    )
                    .await;
                    return;
                }
                PumpEnd::Lost(failure) => failure,
            };
            drop(reader);
            if state.board.is_closed() {
                return;
            }
            state.lost(self.id, &failure);
            // The connection probably went away for everybody: have it checked now.
            state.check.notify_one();
            match self.reopen(&mut shutdown, &mut links).await {
                Some(fresh) => {
                    reader = fresh;
                    resumed = true;
                    state.restored(self.id);
                    tracing::debug!(queue = %self.queue, from = self.wanted, "history subscription resumes");
                }
                None => return,
            }
        }
    }

    /// A new reader from the next offset wanted, waiting for a live connection and retrying
    /// with backoff (capped at [`RESUME_WITHIN`]). `None` when the broker shuts down or the
    /// consumer left.
    async fn reopen(
        &self,
        shutdown: &mut Shutdown,
        links: &mut watch::Receiver<Option<Arc<AmqpConnection>>>,
    ) -> Option<Reader> {
        let state = &self.state;
        let backoff = resume_backoff(state.backoff());
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            state.board.attempt(self.id, attempt);
            let link = wait_for_connection(state, || self.tx.closed(), shutdown, links).await?;
            let within = state.options.connect_timeout;
            let opening = open_declared_reader(
                state,
                &link,
                &self.queue,
                Attach::Offset(self.wanted),
                self.prefetch,
            );
            match timeout(within, opening).await {
                Ok(Ok(reader)) => return Some(reader),
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
        loop {
            let delivery = tokio::select! {
                biased;
                () = shutdown.signalled() => return PumpEnd::Shutdown,
                delivery = reader.consumer.next() => delivery,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_stream_offsets() {
        assert_eq!(first_wanted(&Offset::START), Some(0));
        assert_eq!(first_wanted(&Offset::from_number(0)), Some(1));
        assert_eq!(first_wanted(&Offset::from_number(41)), Some(42));
        assert_eq!(
            first_wanted(&Offset::new("41")),
            None,
            "not the offset form"
        );
        assert_eq!(first_wanted(&Offset::from_number(u64::MAX)), None);
        assert_eq!(
            first_wanted(&Offset::from_number(u64::try_from(i64::MAX).unwrap())),
            None,
            "beyond what x-stream-offset can carry"
        );
    }

    #[test]
    fn max_age_is_whole_seconds_rounded_up() {
        assert_eq!(max_age_argument(Duration::from_secs(120)), "120s");
        assert_eq!(max_age_argument(Duration::from_millis(1500)), "2s");
        assert_eq!(max_age_argument(Duration::from_millis(1)), "1s");
    }

    #[test]
    fn resume_backoff_is_capped() {
        let backoff = resume_backoff(Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
        });
        assert_eq!(backoff.max, RESUME_WITHIN);
        assert_eq!(backoff.min, Duration::from_millis(100));
    }
}
