//! [`RedisHistory`]: the [`History`] of a [`crate::RedisBroker`], one Redis stream per channel
//! (`XADD` with trimming, `XINFO STREAM` and `XRANGE` for reads, `XREAD BLOCK` for
//! subscriptions, on a connection of their own that resumes from its last id).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use redis::Value;
use redis::aio::MultiplexedConnection;
use sidecast_core::broker::{
    BrokerError, History, HistoryEntry, HistoryRetention, HistorySender, HistorySubscription,
    Offset, Replay,
};
use sidecast_core::supervision::{PartId, PumpEnd, Shutdown, Tasks};
use tokio::time::timeout;

use crate::connection::RedisState;
use crate::{error, publisher};

/// The stream field that holds an entry's payload.
const FIELD: &str = "p";
/// How long one `XREAD` blocks: also how often a quiet subscription checks its consumer.
const BLOCK: Duration = Duration::from_secs(1);
/// Entries one `XREAD` returns at most.
const READ_COUNT: usize = 256;
/// The reconnect backoff cap of a history subscription: it retries at least this often, so that
/// it resumes within this long of Redis answering again.
const RESUME_WITHIN: Duration = Duration::from_secs(1);

/// A stream id `ms-seq`.
type StreamId = (u64, u64);

/// The history of one [`crate::RedisBroker`] (shared by its clones).
pub(crate) struct RedisHistory {
    state: Arc<RedisState>,
    tasks: Arc<Tasks>,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("url", &self.state.url)
            .field("retention", &self.state.options.history)
            .finish_non_exhaustive()
    }
}

/// What `XINFO STREAM` says of a stream.
#[derive(Debug)]
struct StreamInfo {
    length: u64,
    entries_added: u64,
    last_generated: StreamId,
    first: Option<StreamId>,
}

impl StreamInfo {
    /// Whether entries were ever trimmed from the stream.
    fn trimmed_any(&self) -> bool {
        self.entries_added > self.length
    }

    /// Whether entries after `after` may have been trimmed. Redis does not remember the id of
    /// the last trimmed entry, so an offset just before the oldest entry left counts as trimmed.
    fn trimmed_after(&self, after: StreamId) -> bool {
        self.trimmed_any()
            && self
                .first
                .map_or(after < self.last_generated, |first| after < first)
    }
}

fn parse_id(id: &str) -> Option<StreamId> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn id_arg((ms, seq): StreamId) -> String {
    format!("{ms}-{seq}")
}

/// The stream id of an offset: `0-0` for [`Offset::START`], `None` for a string this history
/// never makes.
fn id_of(offset: &Offset) -> Option<StreamId> {
    if offset.is_start() {
        Some((0, 0))
    } else {
        offset.to_pair()
    }
}

fn protocol_error(what: impl Into<String>) -> BrokerError {
    BrokerError::rejected(error::BACKEND, what.into())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// The key/value pairs of a reply that is a map (RESP3) or a flat array of pairs (RESP2).
fn pairs(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|pair| Some((text(&pair[0])?, &pair[1])))
            .collect(),
        _ => Vec::new(),
    }
}

/// One stream entry (`[id, [field, value, ...]]`) as a history entry.
fn entry(value: &Value) -> Option<(StreamId, HistoryEntry)> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [id, fields] = parts.as_slice() else {
        return None;
    };
    let id = parse_id(&text(id)?)?;
    let payload = pairs(fields)
        .into_iter()
        .find(|(field, _)| field == FIELD)
        .and_then(|(_, value)| match value {
            Value::BulkString(bytes) => Some(Bytes::copy_from_slice(bytes)),
            _ => None,
        })
        // An entry written by someone else without our field: delivered empty rather than
        // silently skipped, so that offsets stay contiguous for readers.
        .unwrap_or_default();
    Some((
        id,
        HistoryEntry {
            offset: Offset::from_pair(id.0, id.1),
            payload,
        },
    ))
}

/// The entries of an `XRANGE` reply (an array of entries).
fn entries(value: &Value) -> Result<Vec<(StreamId, HistoryEntry)>, BrokerError> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| entry(item).ok_or_else(|| protocol_error("malformed stream entry")))
            .collect(),
        Value::Nil => Ok(Vec::new()),
        _ => Err(protocol_error("unexpected reply to XRANGE")),
    }
}

/// The entries of an `XREAD` reply for one stream (nil on time-out).
fn read_entries(value: &Value) -> Result<Vec<(StreamId, HistoryEntry)>, BrokerError> {
    let streams: Vec<&Value> = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Value::Array(parts) if parts.len() == 2 => Some(&parts[1]),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, v)| v).collect(),
        _ => return Err(protocol_error("unexpected reply to XREAD")),
    };
    let mut all = Vec::new();
    for stream in streams {
        all.extend(entries(stream)?);
    }
    Ok(all)
}

fn stream_info(value: &Value) -> Result<StreamInfo, BrokerError> {
    let mut length = None;
    let mut entries_added = None;
    let mut last_generated = None;
    let mut first = None;
    for (key, value) in pairs(value) {
        match key.as_str() {
            "length" => length = integer(value),
            "entries-added" => entries_added = integer(value),
            "last-generated-id" => last_generated = text(value).as_deref().and_then(parse_id),
            "first-entry" => first = entry(value).map(|(id, _)| id),
            _ => {}
        }
    }
    match (length, entries_added, last_generated) {
        (Some(length), Some(entries_added), Some(last_generated)) => Ok(StreamInfo {
            length,
            entries_added,
            last_generated,
            first,
        }),
        // entries-added came with Redis 7.0.
        _ => Err(protocol_error(
            "XINFO STREAM lacks length, entries-added or last-generated-id (the history needs Redis 7.0 or newer)",
        )),
    }
}

impl RedisHistory {
    pub(crate) fn new(state: Arc<RedisState>, tasks: Arc<Tasks>) -> Self {
        Self { state, tasks }
    }

    fn key(&self, channel: &str) -> String {
        // `{prefix}{channel}`; on a Cluster the channel is the hash tag (one slot per channel).
        self.state
            .channel_key(&self.state.options.history_key_prefix, channel, "")
    }
}

/// `XINFO STREAM` of `key` through the publish connection, `None` when the key does not exist.
async fn stream_state(state: &RedisState, key: &str) -> Result<Option<StreamInfo>, BrokerError> {
    let (exists, info): (i64, Value) = publisher::query(state, |mut connection| {
        let key = key.to_owned();
        async move {
            // EXISTS first: XINFO STREAM on a missing key is an error, not an empty answer.
            let exists: i64 = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut connection)
                .await?;
            if exists == 0 {
                return Ok((0, Value::Nil));
            }
            let info = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&key)
                .query_async(&mut connection)
                .await?;
            Ok((exists, info))
        }
    })
    .await?;
    if exists == 0 {
        return Ok(None);
    }
    stream_info(&info).map(Some)
}

#[async_trait]
impl History for RedisHistory {
    async fn append(&self, channel: &str, payload: Bytes) -> Result<Offset, BrokerError> {
        self.state.parts.board().check_open()?;
        let retention = &self.state.options.history;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let min_id = now_ms.saturating_sub(retention.max_age.as_millis());
        let key = self.key(channel);
        // One command can trim by one strategy only: MINID (age) in the XADD, MAXLEN (count)
        // right after it, in one transaction. Both approximate (`~`), which lets Redis drop
        // whole nodes instead of rewriting them.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("XADD")
            .arg(&key)
            .arg("MINID")
            .arg("~")
            .arg(min_id.to_string())
            .arg("*")
            .arg(FIELD)
            .arg(payload.as_ref())
            .cmd("XTRIM")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(retention.max_entries)
            .ignore();
        let (id,): (String,) = publisher::query(&self.state, |mut connection| async move {
            pipe.query_async(&mut connection).await
        })
        .await?;
        let (ms, seq) =
            parse_id(&id).ok_or_else(|| protocol_error(format!("XADD returned id {id:?}")))?;
        Ok(Offset::from_pair(ms, seq))
    }

    async fn read_after(
        &self,
        channel: &str,
        after: &Offset,
        limit: usize,
    ) -> Result<Replay, BrokerError> {
        self.state.parts.board().check_open()?;
        let Some(after_id) = id_of(after) else {
            return Ok(Replay::Unknown);
        };
        let key = self.key(channel);
        // The entries first, the stream's state second: trimming only ever moves the oldest
        // entry forward, so if nothing after `after` is trimmed when XINFO answers, nothing was
        // when XRANGE read either, and the entries read are complete. (The other order could
        // miss entries trimmed between the two commands without saying so.)
        // Nothing can follow the largest stream id, and Redis refuses an exclusive range that
        // starts there ("invalid start ID"): such an offset (only ever forged) reads nothing
        // and is found to be past the end below.
        let read = if limit == 0 || after_id == (u64::MAX, u64::MAX) {
            Vec::new()
        } else {
            let start = format!("({}", id_arg(after_id));
            let range_key = key.clone();
            let reply: Value = publisher::query(&self.state, |mut connection| async move {
                redis::cmd("XRANGE")
                    .arg(&range_key)
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
            entries(&reply)?.into_iter().map(|(_, e)| e).collect()
        };
        let Some(info) = stream_state(&self.state, &key).await? else {
            return Ok(if after.is_start() {
                Replay::Entries(Vec::new())
            } else {
                Replay::Unknown
            });
        };
        Ok(if after_id > info.last_generated {
            Replay::Unknown
        } else if info.trimmed_after(after_id) {
            Replay::Trimmed
        } else {
            Replay::Entries(read)
        })
    }

    async fn last_offset(&self, channel: &str) -> Result<Option<Offset>, BrokerError> {
        self.state.parts.board().check_open()?;
        Ok(stream_state(&self.state, &self.key(channel))
            .await?
            .filter(|info| info.entries_added > 0)
            .map(|info| Offset::from_pair(info.last_generated.0, info.last_generated.1)))
    }

    async fn subscribe_from(
        &self,
        channel: &str,
        after: &Offset,
    ) -> Result<HistorySubscription, BrokerError> {
        self.state.parts.board().check_open()?;
        let Some(after) = id_of(after) else {
            return Err(BrokerError::unknown_offset(error::BACKEND, after));
        };
        let state = &self.state;
        // The first connection is made here, so that the caller learns about a Redis that is
        // down; later ones are the task's business.
        let key = self.key(channel);
        let connection = state.connect_reader(&key).await?;
        let (tx, subscription) = HistorySubscription::bounded(state.options.subscription_capacity);
        let reader = Reader {
            state: Arc::clone(state),
            id: state.parts.next_id(),
            key,
            after,
            tx,
        };
        self.tasks
            .spawn(reader.run(connection, self.tasks.shutdown()));
        Ok(subscription)
    }

    fn retention(&self) -> HistoryRetention {
        self.state.options.history
    }
}

/// The task behind one history subscription.
struct Reader {
    state: Arc<RedisState>,
    id: PartId,
    key: String,
    /// The id of the last entry delivered (or the starting point).
    after: StreamId,
    tx: HistorySender,
}

impl Reader {
    /// `connection` comes with the master epoch it was opened under.
    async fn run(mut self, mut connection: (u64, MultiplexedConnection), mut shutdown: Shutdown) {
        let state = Arc::clone(&self.state);
        // However the task ends, its connection stops counting on the health board.
        let _part = state.parts.board().part(self.id);
        loop {
            let failure = match self.pump(&mut connection, &mut shutdown).await {
                PumpEnd::Shutdown | PumpEnd::ConsumerGone => return,
                PumpEnd::Lost(failure) => failure,
            };
            if state.parts.board().is_closed() {
                return;
            }
            state.parts.lost(self.id, &failure);
            state.check_publisher.notify_one();
            let (tx, key) = (&self.tx, &self.key);
            let reconnected = state
                .reconnect(
                    self.id,
                    RESUME_WITHIN,
                    &mut shutdown,
                    || tx.is_closed(),
                    || state.connect_reader(key),
                )
                .await;
            match reconnected {
                Some(fresh) => {
                    connection = fresh;
                    state.parts.restored(self.id);
                    self.warn_if_trimmed().await;
                    tracing::debug!(key = %self.key, after = %id_arg(self.after), "history subscription resumes");
                }
                None => return,
            }
        }
    }

    /// Logs when entries this subscription had not delivered yet were trimmed during the outage:
    /// they are lost to it (the outage outlasted the retention). Best effort: the publish
    /// connection may still be reconnecting.
    async fn warn_if_trimmed(&self) {
        match stream_state(&self.state, &self.key).await {
            Ok(Some(info)) if info.trimmed_after(self.after) => tracing::warn!(
                url = %self.state.url, key = %self.key, after = %id_arg(self.after),
                "history subscription resumed after entries it had not delivered were trimmed; \
                 they are lost to it"
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!(
                key = %self.key, error = %e,
                "could not check whether the history was trimmed during the outage"
            ),
        }
    }

    /// Reads the stream after the last delivered id until the connection breaks, the consumer
    /// leaves or the broker shuts down. Waits for a consumer that lags: the entries wait in
    /// Redis.
    async fn pump(
        &mut self,
        (epoch, connection): &mut (u64, MultiplexedConnection),
        shutdown: &mut Shutdown,
    ) -> PumpEnd {
        let bound = BLOCK + self.state.options.publish_timeout;
        let block_ms = u64::try_from(BLOCK.as_millis()).unwrap_or(u64::MAX);
        loop {
            let command = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(id_arg(self.after))
                .to_owned();
            let reply = tokio::select! {
                biased;
                () = shutdown.signalled() => return PumpEnd::Shutdown,
                () = self.tx.closed() => return PumpEnd::ConsumerGone,
                // A new master (with Sentinel): resume there from the last delivered id.
                () = self.state.master_moved(*epoch) => {
                    return PumpEnd::Lost("the master moved".to_owned());
                }
                reply = timeout(bound, command.query_async::<Value>(connection)) => reply,
            };
            let batch = match reply {
                Ok(Ok(value)) => match read_entries(&value) {
                    Ok(batch) => batch,
                    Err(e) => return PumpEnd::Lost(e.to_string()),
                },
                Ok(Err(e)) => return PumpEnd::Lost(format!("XREAD failed: {e}")),
                Err(_elapsed) => {
                    return PumpEnd::Lost(format!("no answer to XREAD within {bound:?}"));
                }
            };
            for (id, entry) in batch {
                tokio::select! {
                    biased;
                    () = shutdown.signalled() => return PumpEnd::Shutdown,
                    sent = self.tx.send(entry) => if !sent { return PumpEnd::ConsumerGone },
                }
                self.after = id;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_stream_ids() {
        assert_eq!(id_of(&Offset::START), Some((0, 0)));
        assert_eq!(id_of(&Offset::from_pair(1700, 3)), Some((1700, 3)));
        assert_eq!(id_of(&Offset::new("1700-3")), None, "not the offset form");
        assert_eq!(id_arg((1700, 3)), "1700-3");
        assert_eq!(parse_id("1700-3"), Some((1700, 3)));
    }

    #[test]
    fn trimming_is_told_from_the_oldest_entry() {
        let info = StreamInfo {
            length: 2,
            entries_added: 5,
            last_generated: (5, 0),
            first: Some((4, 0)),
        };
        assert!(info.trimmed_after((2, 0)));
        assert!(
            info.trimmed_after((3, 0)),
            "just before the oldest: cannot tell"
        );
        assert!(!info.trimmed_after((4, 0)));
        let untrimmed = StreamInfo {
            entries_added: 2,
            ..info
        };
        assert!(!untrimmed.trimmed_after((0, 0)));
        let emptied = StreamInfo {
            length: 0,
            entries_added: 5,
            last_generated: (5, 0),
            first: None,
        };
        assert!(emptied.trimmed_after((4, 0)));
        assert!(!emptied.trimmed_after((5, 0)));
    }
}
