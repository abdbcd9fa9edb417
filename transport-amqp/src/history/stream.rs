//! A history's RabbitMQ stream queue as this history uses it: the queue's arguments, the headers
//! of its messages (offsets, markers, ids), declaring it once per connection, readers attached
//! at an offset, and appends that learn their offset by reading their own message back.

use std::collections::HashSet;
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer};
use sidecast_core::broker::BrokerError;
use tokio::time::timeout;

use crate::CLOSE_WAIT;
use crate::connection::{AmqpConnection, AmqpState};
use crate::error::{self, Doing};
use crate::options::AmqpOptions;
use crate::placement::Refused;

/// The header that makes a message a marker: written by reads to learn where a stream ends,
/// skipped by every reader.
const MARKER_HEADER: &str = "x-sidecast-marker";
/// The header in which RabbitMQ gives each delivery from a stream its offset.
pub(super) const OFFSET_HEADER: &str = "x-stream-offset";
/// Unacknowledged deliveries a read or an append's read-back lets RabbitMQ send ahead.
pub(super) const READ_PREFETCH: u16 = 256;

/// The argument of the replica count, which RabbitMQ compares like the others.
const REPLICAS_ARGUMENT: &str = "x-initial-cluster-size";

/// The replica count the existing queue has, read from RabbitMQ's refusal of another one
/// (`inequivalent arg 'x-initial-cluster-size' ... received '1' but current is '3'`):
/// `Some(None)` for a queue declared without one, `None` for any other refusal.
fn existing_replicas(error: &lapin::Error) -> Option<Option<i64>> {
    let lapin::ErrorKind::ProtocolError(refusal) = error.kind() else {
        return None;
    };
    replicas_in_refusal(refusal.get_message().as_str())
}

/// [`existing_replicas`] from the refusal's text: the first quoted value after
/// `but current is` (`'3'`, or `the value '3' of type 'long'`), or `none`.
fn replicas_in_refusal(message: &str) -> Option<Option<i64>> {
    if !message.contains(&format!("inequivalent arg '{REPLICAS_ARGUMENT}'")) {
        return None;
    }
    let (_, current) = message.rsplit_once("but current is ")?;
    if current.trim() == "none" {
        return Some(None);
    }
    let (_, quoted) = current.split_once('\'')?;
    let (value, _) = quoted.split_once('\'')?;
    value.parse().ok().map(Some)
}

/// The arguments of every history stream queue; RabbitMQ refuses to redeclare a queue with
/// others ([`crate::HistoryMismatch`]), which [`declare`] avoids for the replica count alone.
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
        )
        .insert(
            REPLICAS_ARGUMENT.into(),
            AMQPValue::LongLongInt(i64::from(options.stream_replicas)),
        );
    arguments
}

/// `x-max-age` in whole seconds, rounded up (RabbitMQ takes `<n>s`, `<n>m`, ...).
fn max_age_argument(age: Duration) -> String {
    let seconds = age.as_secs() + u64::from(age.subsec_nanos() > 0);
    format!("{}s", seconds.max(1))
}

/// The stream offset RabbitMQ gave a delivery.
pub(super) fn stream_offset(delivery: &Delivery) -> Option<u64> {
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

pub(super) fn is_marker(delivery: &Delivery) -> bool {
    delivery
        .properties
        .headers()
        .as_ref()
        .is_some_and(|headers| headers.contains_key(MARKER_HEADER))
}

pub(super) fn has_id(delivery: &Delivery, id: &str) -> bool {
    delivery
        .properties
        .message_id()
        .as_ref()
        .is_some_and(|own| own.as_str() == id)
}

/// The properties of an appended message: a unique `message_id` to find it by, and the marker
/// header for a marker.
pub(super) fn properties(id: &str, marker: bool) -> BasicProperties {
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
pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A channel consuming a stream queue, and the connection it is on.
pub(super) struct Reader {
    pub(super) generation: u64,
    /// Kept so that the channel lives as long as the consumer; dropping it closes the channel.
    pub(super) channel: Channel,
    pub(super) consumer: Consumer,
}

/// Where a reader attaches.
#[derive(Debug, Clone, Copy)]
pub(super) enum Attach {
    /// At the oldest message the stream still holds.
    First,
    /// After the last message: only what is appended from now on.
    Next,
    /// At this stream offset (or the oldest one left, if it was trimmed).
    Offset(u64),
}

impl Attach {
    fn argument(self) -> AMQPValue {
        match self {
            Self::First => AMQPValue::LongString("first".into()),
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
    let arguments = queue_arguments(&state.options);
    let refused = match declare_with(link, queue, arguments.clone()).await {
        Ok(()) => None,
        Err(e) => match existing_replicas(&e) {
            None => return Err(failed(e)),
            Some(current) => Some(current),
        },
    };
    if let Some(current) = refused {
        // The replica count only matters when the queue is created (decision 33): declare
        // again with the queue's own, so that the retention is still compared.
        let mut arguments = arguments;
        let mut inner = arguments.inner().clone();
        match current {
            Some(n) => {
                inner.insert(REPLICAS_ARGUMENT.into(), AMQPValue::LongLongInt(n));
            }
            None => {
                inner.remove(REPLICAS_ARGUMENT);
            }
        }
        arguments = FieldTable::from(inner);
        tracing::debug!(
            queue, existing = ?current, wanted = state.options.stream_replicas,
            "history stream queue exists with another replica count; kept"
        );
        declare_with(link, queue, arguments).await.map_err(failed)?;
    }
    declared(link).insert(queue.to_owned());
    Ok(())
}

/// Declares `queue` as a durable stream queue with `arguments`, on a channel of its own:
/// RabbitMQ closes the channel of a refused declaration.
async fn declare_with(
    link: &AmqpConnection,
    queue: &str,
    arguments: FieldTable,
) -> lapin::Result<()> {
    let channel = link.connection.create_channel().await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    Ok(())
}

/// Whether `queue` exists (a passive declaration, which creates nothing).
pub(super) async fn exists(
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
pub(super) async fn open_reader(
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
        channel,
        consumer,
    })
}

/// Declares `queue` (once per connection) and opens a reader on it; declares again if the queue
/// vanished since (an operator deleted it).
pub(super) async fn open_declared_reader(
    state: &AmqpState,
    link: &AmqpConnection,
    queue: &str,
    from: Attach,
    prefetch: u16,
) -> Result<Reader, BrokerError> {
    declare(state, link, queue).await?;
    let opened = match open_reader(link, queue, from, prefetch).await {
        Err(e) if error::reply_code(&e) == Some(404) => {
            declared(link).remove(queue);
            declare(state, link, queue).await?;
            open_reader(link, queue, from, prefetch).await
        }
        other => other,
    };
    placed(state, link, queue, opened).await
}

/// `opened`, a reader of `queue` on `link`, or the error of its opening. A refusal because the
/// node holds no replica of the stream moves the connection to another configured node when
/// one may hold a replica (it is closed; the supervisor connects to the next URL, trying last
/// those known to lack one), and is a transient error either way: the caller's retry, or the
/// history subscription's, runs on the new connection.
pub(super) async fn placed(
    state: &AmqpState,
    link: &AmqpConnection,
    queue: &str,
    opened: lapin::Result<Reader>,
) -> Result<Reader, BrokerError> {
    match opened {
        Ok(reader) => {
            state.placement.served(queue, link.endpoint_index);
            Ok(reader)
        }
        Err(e) if error::no_local_replica(&e) => Err(no_replica_here(state, link, queue).await),
        Err(e) => Err(state.failed(e, Doing::History(queue))),
    }
}

/// The connection leaves its node for one that holds a replica of `queue`: the source of the
/// transient error of the operation that found out ([`is_moving`]).
#[derive(Debug)]
struct Moving {
    queue: String,
}

impl std::fmt::Display for Moving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this RabbitMQ node holds no replica of the history queue {:?}; moving to another \
             node of broker.url",
            self.queue
        )
    }
}

impl std::error::Error for Moving {}

/// Whether `error` is the refusal of an operation whose connection is leaving its node for one
/// that holds a replica.
pub(super) fn is_moving(error: &BrokerError) -> bool {
    std::error::Error::source(error).is_some_and(|source| source.is::<Moving>())
}

/// Leaves `link`'s node, which holds no replica of `queue`, if another configured node may hold
/// one; the error of the refused operation.
async fn no_replica_here(state: &AmqpState, link: &AmqpConnection, queue: &str) -> BrokerError {
    match state.placement.refused(queue, link.endpoint_index) {
        Refused::Move => {
            tracing::info!(
                url = %link.endpoint, queue,
                "this RabbitMQ node holds no replica of the history stream queue (RabbitMQ \
                 refuses a stream consumer there); moving the connection to another node"
            );
            let _ = timeout(
                CLOSE_WAIT,
                link.connection
                    .close(200, "no replica of the history stream on this node".into()),
            )
            .await;
            state.check.notify_one();
            BrokerError::unavailable(
                error::BACKEND,
                &link.endpoint,
                Moving {
                    queue: queue.to_owned(),
                },
            )
        }
        Refused::Stay => {
            tracing::debug!(url = %link.endpoint, queue, "no configured RabbitMQ node is known to hold a replica of the history stream queue");
            error::unavailable(
                &link.endpoint,
                format!(
                    "no RabbitMQ node of broker.url is known to hold a replica of the history \
                     queue {queue:?} (RabbitMQ refuses a stream consumer on a node without \
                     one): add the URL of a node that holds one to broker.url, or add a replica \
                     (rabbitmq-streams add_replica {queue} <node>)"
                ),
            )
        }
    }
}

/// The next delivery of `reader` and its stream offset, acknowledged (an ack only returns
/// prefetch credit: the stream keeps the message), within `within`.
pub(super) async fn next_delivery(
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
pub(super) async fn append_to(
    state: &AmqpState,
    link: &AmqpConnection,
    queue: &str,
    payload: &[u8],
    marker: bool,
) -> Result<u64, BrokerError> {
    let mut reader = open_declared_reader(state, link, queue, Attach::Next, READ_PREFETCH).await?;
    let id = new_id();
    link.publishing
        .publish_to_queue(
            &link.connection,
            state,
            queue,
            payload,
            properties(&id, marker),
        )
        .await?;
    let within = state.options.publish_timeout;
    loop {
        let (delivery, offset) = next_delivery(state, &mut reader, queue, within).await?;
        if has_id(&delivery, &id) {
            return Ok(offset);
        }
    }
}

/// What tells one life of a stream queue from the next (decision 33): the offset and message id
/// of the oldest message it holds. A queue deleted and declared again restarts its offsets at 0
/// with other messages; trimming only moves the oldest offset up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    /// The stream offset of the oldest message held.
    pub(super) first: u64,
    /// Its `message_id` (empty for a message without one, written by another client).
    pub(super) id: String,
}

impl Identity {
    /// Whether `now` is another stream than the one `self` was read from: its oldest message
    /// is older than ours was (offsets started again), or at the same offset but another
    /// message. A stream whose oldest offset moved up was trimmed; so is a new stream that was
    /// itself trimmed beyond our oldest offset, which this cannot tell (decision 33).
    pub(super) fn renewed_by(&self, now: &Identity) -> bool {
        now.first < self.first || (now.first == self.first && now.id != self.id)
    }
}

/// The [`Identity`] of the stream in `queue` (declared if missing). A marker is appended first,
/// so that an empty stream has an oldest message too.
pub(super) async fn identity(
    state: &AmqpState,
    link: &AmqpConnection,
    queue: &str,
) -> Result<Identity, BrokerError> {
    let mut reader = open_declared_reader(state, link, queue, Attach::First, 1).await?;
    link.publishing
        .publish_to_queue(
            &link.connection,
            state,
            queue,
            b"",
            properties(&new_id(), true),
        )
        .await?;
    let within = state.options.publish_timeout;
    let (delivery, first) = next_delivery(state, &mut reader, queue, within).await?;
    let id = delivery
        .properties
        .message_id()
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    Ok(Identity { first, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_whole_seconds_rounded_up() {
        assert_eq!(max_age_argument(Duration::from_secs(120)), "120s");
        assert_eq!(max_age_argument(Duration::from_millis(1500)), "2s");
        assert_eq!(max_age_argument(Duration::from_millis(1)), "1s");
    }

    #[test]
    fn the_existing_replica_count_is_read_from_the_refusal() {
        let refusal = |current: &str| {
            format!(
                "PRECONDITION_FAILED - inequivalent arg 'x-initial-cluster-size' for queue 'q' \
                 in vhost '/': received '1' but current is {current}"
            )
        };
        assert_eq!(replicas_in_refusal(&refusal("'3'")), Some(Some(3)));
        assert_eq!(
            replicas_in_refusal(&refusal("the value '5' of type 'long'")),
            Some(Some(5))
        );
        assert_eq!(replicas_in_refusal(&refusal("none")), Some(None));
        assert_eq!(
            replicas_in_refusal(
                "PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue 'q' in vhost '/': \
                 received '1s' but current is '2s'"
            ),
            None,
            "another argument is a mismatch"
        );
    }

    #[test]
    fn a_stream_is_renewed_when_its_oldest_message_changes_or_its_offsets_start_again() {
        let at = |first, id: &str| Identity {
            first,
            id: id.to_owned(),
        };
        assert!(!at(0, "a").renewed_by(&at(0, "a")), "the same stream");
        assert!(at(0, "a").renewed_by(&at(0, "b")), "another message at 0");
        assert!(at(7, "a").renewed_by(&at(0, "b")), "offsets started again");
        assert!(!at(0, "a").renewed_by(&at(7, "b")), "trimmed");
    }
}
