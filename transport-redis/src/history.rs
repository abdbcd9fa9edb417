//! [`RedisHistory`]: the [`History`] of a [`crate::RedisBroker`], one Redis stream per channel
//! (`XADD` with trimming, `XINFO STREAM` and `XRANGE` for reads, `XREAD BLOCK` for
//! subscriptions, on a connection of their own that resumes from its last id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
use crate::replicas::Acker;
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

/// An append: `XADD` with age trimming, `XTRIM` by count, and, when the `XADD` created the
/// stream, the stream's epoch (the id of its first entry) in the epoch key, all in one atomic
/// step so that a stream and its epoch never disagree (a replica or a snapshot has both or
/// neither). KEYS: stream, epoch key. ARGV: min id, field, payload, max entries.
const APPEND: &str = r"
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local id = redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[1], '*', ARGV[2], ARGV[3])
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[4])
if fresh then
  redis.call('SET', KEYS[2], id)
end
return id
";

/// The history of one [`crate::RedisBroker`] (shared by its clones).
pub(crate) struct RedisHistory {
    state: Arc<RedisState>,
    tasks: Arc<Tasks>,
    losses: Arc<Losses>,
    /// The connection that waits for replicas, when `min_replicas > 0`.
    acker: Option<Acker>,
}

/// The losses a history found: counted, and logged once per channel and finding.
#[derive(Debug, Default)]
struct Losses {
    count: AtomicU64,
    /// The last finding logged per stream key, so that every client coming back from the same
    /// lost offsets does not log (and count) it again.
    reported: Mutex<HashMap<String, String>>,
    /// Per stream key, the ranges of entries this node's history subscriptions delivered and
    /// then found gone from a stream that lives on (a failover to a replica that lagged): ids
    /// after `.0` up to `.1`, in the stream of epoch `.2`. A client's offset may still be in the
    /// stream while entries after it are in such a range.
    gaps: Mutex<HashMap<String, Vec<Gap>>>,
}

/// Lost entries: ids after `after` up to `until`, in the stream of epoch `epoch`.
#[derive(Debug, Clone, Copy)]
struct Gap {
    after: StreamId,
    until: StreamId,
    epoch: Option<StreamId>,
}

/// The gaps kept per stream key (the oldest are forgotten first).
const MAX_GAPS: usize = 16;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Losses {
    /// Records that entries of `key` were lost, as `finding` (the same finding twice in a row is
    /// counted once); `what` says what was found, for the log.
    fn report(&self, url: &str, key: &str, finding: String, what: &str) {
        {
            let mut reported = lock(&self.reported);
            if reported.get(key) == Some(&finding) {
                return;
            }
            reported.insert(key.to_owned(), finding);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            url = %url, key = %key,
            "history entries were lost: {what}; clients coming back from before the loss are \
             told \"unknown\" (a Redis without persistence restarted, or a failover promoted a \
             replica that lagged)"
        );
    }

    /// Remembers that the entries of `key` after `gap.after` up to `gap.until` were lost.
    fn record_gap(&self, key: &str, gap: Gap) {
        let mut gaps = lock(&self.gaps);
        let list = gaps.entry(key.to_owned()).or_default();
        if list.len() == MAX_GAPS {
            list.remove(0);
        }
        list.push(gap);
    }

    /// The finding of a known gap among the entries after `after` in the stream of `epoch`.
    fn gap_after(
        &self,
        key: &str,
        after: StreamId,
        epoch: Option<StreamId>,
    ) -> Option<(String, String)> {
        let gaps = lock(&self.gaps);
        let gap = gaps
            .get(key)?
            .iter()
            .find(|gap| gap.epoch == epoch && after < gap.until)?;
        Some((
            gap_finding(gap.after),
            format!(
                "entries after {} up to {} were lost, and a client came back from {}",
                id_arg(gap.after),
                id_arg(gap.until),
                id_arg(after)
            ),
        ))
    }
}

/// The finding of entries lost after `after` (the stream now ends there, or did).
fn gap_finding(after: StreamId) -> String {
    format!("end {}", id_arg(after))
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("url", &self.state.url)
            .field("retention", &self.state.options.history)
            .finish_non_exhaustive()
    }
}

/// What `XINFO STREAM` (and the epoch key) say of a stream.
#[derive(Debug, Clone, Copy)]
struct StreamInfo {
    length: u64,
    entries_added: u64,
    last_generated: StreamId,
    first: Option<StreamId>,
    /// The largest id removed by `XDEL` (trimming does not move it in Redis 7.0).
    max_deleted: StreamId,
    /// The id of the stream's first entry ever, which tells one life of the stream from the
    /// next (after a wipe); `None` for a stream written before epochs were kept.
    epoch: Option<StreamId>,
}

/// What a read after an offset found, before the entries are handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// The entries read are all those after the offset.
    Complete,
    /// Entries after the offset may have been trimmed.
    Trimmed,
    /// Entries were lost other than by trimming: the finding (the same loss gives the same
    /// finding) and what it is, for the log.
    Lost(String, String),
}

/// What a read after `after` (not the start) finds, from whether its exact entry is `present`,
/// the id of the `next` entry after it, and the stream's state (`None`: no stream).
fn classify(
    after: StreamId,
    present: bool,
    next: Option<StreamId>,
    info: Option<&StreamInfo>,
) -> Found {
    let Some(info) = info else {
        return Found::Lost("gone".to_owned(), "the stream no longer exists".to_owned());
    };
    if let Some(epoch) = info.epoch
        && after < epoch
    {
        return Found::Lost(
            format!("epoch {}", id_arg(epoch)),
            format!(
                "the stream was created anew at {}, after offset {}",
                id_arg(epoch),
                id_arg(after)
            ),
        );
    }
    if after > info.last_generated {
        return Found::Lost(
            gap_finding(info.last_generated),
            format!(
                "offset {} is beyond the stream's last entry {}",
                id_arg(after),
                id_arg(info.last_generated)
            ),
        );
    }
    if present || after == info.last_generated {
        // Trimmed or deleted when it was the last one: nothing after it is missing.
        return Found::Complete;
    }
    if info.trimmed_after(after) || after <= info.max_deleted {
        return Found::Trimmed;
    }
    let next = next.unwrap_or(info.last_generated);
    Found::Lost(
        format!("gap before {}", id_arg(next)),
        format!(
            "the entry at offset {} is missing although nothing after it was trimmed",
            id_arg(after)
        ),
    )
}

/// The id just before `id` (`0-0` stays).
fn before((ms, seq): StreamId) -> StreamId {
    match (ms, seq) {
        (0, 0) => (0, 0),
        (ms, 0) => (ms - 1, u64::MAX),
        (ms, seq) => (ms, seq - 1),
    }
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

fn stream_info(value: &Value, epoch: Option<StreamId>) -> Result<StreamInfo, BrokerError> {
    let mut length = None;
    let mut entries_added = None;
    let mut last_generated = None;
    let mut first = None;
    let mut max_deleted = (0, 0);
    for (key, value) in pairs(value) {
        match key.as_str() {
            "length" => length = integer(value),
            "entries-added" => entries_added = integer(value),
            "last-generated-id" => last_generated = text(value).as_deref().and_then(parse_id),
            "first-entry" => first = entry(value).map(|(id, _)| id),
            "max-deleted-entry-id" => {
                max_deleted = text(value).as_deref().and_then(parse_id).unwrap_or((0, 0));
            }
            _ => {}
        }
    }
    match (length, entries_added, last_generated) {
        (Some(length), Some(entries_added), Some(last_generated)) => Ok(StreamInfo {
            length,
            entries_added,
            last_generated,
            first,
            max_deleted,
            epoch,
        }),
        // entries-added came with Redis 7.0.
        _ => Err(protocol_error(
            "XINFO STREAM lacks length, entries-added or last-generated-id (the history needs Redis 7.0 or newer)",
        )),
    }
}

impl RedisHistory {
    pub(crate) fn new(state: Arc<RedisState>, tasks: Arc<Tasks>) -> Self {
        let acker = (state.options.min_replicas > 0)
            .then(|| Acker::new(Arc::clone(&state), Arc::clone(&tasks)));
        Self {
            state,
            tasks,
            losses: Arc::default(),
            acker,
        }
    }

    fn key(&self, channel: &str) -> String {
        // `{prefix}{channel}`; on a Cluster the channel is the hash tag (one slot per channel).
        self.state
            .channel_key(&self.state.options.history_key_prefix, channel, "")
    }

    /// Runs one append, on the connection that waits for replicas when `min_replicas > 0`.
    async fn run_append(&self, key: &str, command: redis::Cmd) -> Result<Value, BrokerError> {
        match &self.acker {
            Some(acker) => acker.run(key, command).await,
            None => {
                publisher::query(&self.state, |mut connection| async move {
                    command.query_async(&mut connection).await
                })
                .await
            }
        }
    }
}

/// The key that holds the epoch of the stream `key` under `prefix`: the prefix with `-epoch`
/// before its last `:` (`sidecast:history:c` → `sidecast:history-epoch:c`), so that it is never
/// the stream key of another channel.
fn epoch_key(prefix: &str, key: &str) -> String {
    let channel = key.strip_prefix(prefix).unwrap_or(key);
    match prefix.strip_suffix(':') {
        Some(stem) => format!("{stem}-epoch:{channel}"),
        None => format!("{prefix}-epoch:{channel}"),
    }
}

/// The raw state of stream `key`: `None` when it does not exist, else `XINFO STREAM` and the
/// epoch key's value.
async fn raw_state(
    connection: &mut (impl redis::aio::ConnectionLike + Send),
    key: &str,
    epoch_key: &str,
) -> redis::RedisResult<Option<(Value, Option<String>)>> {
    // EXISTS first: XINFO STREAM on a missing key is an error, not an empty answer.
    let (exists, epoch): (i64, Option<String>) = redis::pipe()
        .cmd("EXISTS")
        .arg(key)
        .cmd("GET")
        .arg(epoch_key)
        .query_async(connection)
        .await?;
    if exists == 0 {
        return Ok(None);
    }
    let info = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(connection)
        .await?;
    Ok(Some((info, epoch)))
}

fn parse_state(raw: Option<(Value, Option<String>)>) -> Result<Option<StreamInfo>, BrokerError> {
    match raw {
        None => Ok(None),
        Some((info, epoch)) => stream_info(&info, epoch.as_deref().and_then(parse_id)).map(Some),
    }
}

/// The state of stream `key` through the publish connection, `None` when the key does not
/// exist.
async fn stream_state(state: &RedisState, key: &str) -> Result<Option<StreamInfo>, BrokerError> {
    let epoch_key = epoch_key(&state.options.history_key_prefix, key);
    let raw = publisher::query(state, |mut connection| {
        let key = key.to_owned();
        async move { raw_state(&mut connection, &key, &epoch_key).await }
    })
    .await?;
    parse_state(raw)
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
        // right after it, in one script (APPEND). Both approximate (`~`), which lets Redis drop
        // whole nodes instead of rewriting them.
        let command = redis::cmd("EVAL")
            .arg(APPEND)
            .arg(2)
            .arg(&key)
            .arg(epoch_key(&self.state.options.history_key_prefix, &key))
            .arg(min_id.to_string())
            .arg(FIELD)
            .arg(payload.as_ref())
            .arg(retention.max_entries)
            .to_owned();
        let reply = self.run_append(&key, command).await?;
        let id = text(&reply).unwrap_or_default();
        let (ms, seq) =
            parse_id(&id).ok_or_else(|| protocol_error(format!("XADD returned {reply:?}")))?;
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
        // `0-0` is never assigned (Redis' first id is 0-1): after it is the whole history, in
        // every life of the stream, as after the start "0".
        let from_start = after.is_start() || after_id == (0, 0);
        // The entries first, the stream's state second: trimming only ever moves the oldest
        // entry forward, so if nothing after `after` is trimmed when XINFO answers, nothing was
        // when XRANGE read either, and the entries read are complete. (The other order could
        // miss entries trimmed between the two commands without saying so.) The range includes
        // `after` itself, to learn whether its entry is still there: an entry that is gone
        // although nothing after it was trimmed means the history lost it.
        let start = if from_start {
            "-".to_owned()
        } else {
            id_arg(after_id)
        };
        let count = limit.saturating_add(1);
        let range_key = key.clone();
        let reply: Value = publisher::query(&self.state, |mut connection| async move {
            redis::cmd("XRANGE")
                .arg(&range_key)
                .arg(start)
                .arg("+")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut connection)
                .await
        })
        .await?;
        let mut read = entries(&reply)?;
        let present = !from_start && read.first().is_some_and(|(id, _)| *id == after_id);
        if present {
            read.remove(0);
        }
        read.truncate(limit);
        let next = read.first().map(|(id, _)| *id);
        let info = stream_state(&self.state, &key).await?;
        let found = if from_start {
            match &info {
                Some(info) if info.trimmed_after(after_id) => Found::Trimmed,
                _ => Found::Complete,
            }
        } else {
            classify(after_id, present, next, info.as_ref())
        };
        // Entries after the offset may be complete in the stream and still be missing some that
        // this node delivered before a failover lost them.
        let found = match (found, &info) {
            (Found::Complete, Some(info)) => self
                .losses
                .gap_after(&key, after_id, info.epoch)
                .map_or(Found::Complete, |(finding, what)| {
                    Found::Lost(finding, what)
                }),
            (found, _) => found,
        };
        Ok(match found {
            Found::Complete => Replay::Entries(read.into_iter().map(|(_, e)| e).collect()),
            Found::Trimmed => Replay::Trimmed,
            Found::Lost(finding, what) => {
                self.losses.report(
                    &self.state.url,
                    &key,
                    finding,
                    &format!("a client's {what}"),
                );
                Replay::Unknown
            }
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
        let mut connection = state.connect_reader(&key).await?;
        let epoch = fetch_state(state, &mut connection.1, &key)
            .await?
            .and_then(|info| info.epoch);
        let (tx, subscription) = HistorySubscription::bounded(state.options.subscription_capacity);
        let reader = Reader {
            state: Arc::clone(state),
            id: state.parts.next_id(),
            key,
            after,
            epoch,
            resumed: false,
            losses: Arc::clone(&self.losses),
            tx,
        };
        self.tasks
            .spawn(reader.run(connection, self.tasks.shutdown()));
        Ok(subscription)
    }

    fn retention(&self) -> HistoryRetention {
        self.state.options.history
    }

    fn losses_detected(&self) -> u64 {
        self.losses.count.load(Ordering::Relaxed)
    }
}

/// The state of stream `key` on `connection` (a history subscription's own), within the
/// publish time-out.
async fn fetch_state(
    state: &RedisState,
    connection: &mut MultiplexedConnection,
    key: &str,
) -> Result<Option<StreamInfo>, BrokerError> {
    let after = state.options.publish_timeout;
    let epoch_key = epoch_key(&state.options.history_key_prefix, key);
    match timeout(after, raw_state(connection, key, &epoch_key)).await {
        Ok(Ok(raw)) => parse_state(raw),
        Ok(Err(e)) => Err(error::map(e, &state.url)),
        Err(_elapsed) => Err(error::timeout(after)),
    }
}

/// The task behind one history subscription.
struct Reader {
    state: Arc<RedisState>,
    id: PartId,
    key: String,
    /// The id of the last entry delivered (or the starting point).
    after: StreamId,
    /// The epoch of the stream when last checked.
    epoch: Option<StreamId>,
    /// Set when the connection was replaced: the stream is checked for losses before reading on.
    resumed: bool,
    losses: Arc<Losses>,
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
                    self.resumed = true;
                    tracing::debug!(key = %self.key, after = %id_arg(self.after), "history subscription resumes");
                }
                None => return,
            }
        }
    }

    /// Checks the stream on a fresh connection before reading on. Entries this subscription
    /// delivered may be gone (a Redis without persistence restarted, a failover promoted a
    /// replica that lagged): the loss is logged and counted, and the subscription moves back to
    /// where the stream now ends (or before the new stream's first entry), so that entries
    /// appended from now on are not skipped for having smaller ids than the lost ones. Entries it
    /// had not delivered yet may have been trimmed during the outage: that is logged.
    async fn check_resume(&mut self, connection: &mut MultiplexedConnection) -> Result<(), String> {
        let info = fetch_state(&self.state, connection, &self.key)
            .await
            .map_err(|e| format!("could not check the stream after reconnecting: {e}"))?;
        let url = &self.state.url;
        let was = id_arg(self.after);
        match info {
            None if self.after != (0, 0) => {
                self.losses.report(
                    url,
                    &self.key,
                    "gone".to_owned(),
                    &format!(
                        "the stream no longer exists; this node had delivered up to {was} and \
                         reads it again from its start"
                    ),
                );
                self.after = (0, 0);
                self.epoch = None;
            }
            None => {}
            Some(info) => {
                // A new epoch, or a first one that begins after entries this node delivered:
                // either way the entries it delivered are not in this stream.
                // A stream whose epoch key went away was created anew by something else than
                // an append of this transport: its entries all count as new.
                let renewed = match (self.epoch, info.epoch) {
                    (Some(known), Some(now)) => known != now,
                    (None, Some(now)) => self.after != (0, 0) && self.after < now,
                    (Some(_), None) => true,
                    (None, None) => false,
                };
                if renewed {
                    let since = info.epoch.map_or_else(|| "(unknown)".to_owned(), id_arg);
                    self.losses.report(
                        url,
                        &self.key,
                        format!("epoch {since}"),
                        &format!(
                            "the stream was created anew (epoch {since}); this node had \
                             delivered up to {was} and reads the new stream from its start"
                        ),
                    );
                    self.after = info
                        .epoch
                        .map_or((0, 0), |epoch| self.after.min(before(epoch)));
                } else if info.last_generated < self.after {
                    self.losses.record_gap(
                        &self.key,
                        Gap {
                            after: info.last_generated,
                            until: self.after,
                            epoch: info.epoch,
                        },
                    );
                    self.losses.report(
                        url,
                        &self.key,
                        gap_finding(info.last_generated),
                        &format!(
                            "the stream ends at {}, before {was}, the last entry this node \
                             delivered",
                            id_arg(info.last_generated)
                        ),
                    );
                    self.after = info.last_generated;
                } else if info.trimmed_after(self.after) {
                    tracing::warn!(
                        url = %url, key = %self.key, after = %was,
                        "history subscription resumed after entries it had not delivered were \
                         trimmed; they are lost to it"
                    );
                }
                self.epoch = info.epoch;
            }
        }
        Ok(())
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
        if self.resumed {
            if let Err(failure) = self.check_resume(connection).await {
                return PumpEnd::Lost(failure);
            }
            self.resumed = false;
        }
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
            max_deleted: (0, 0),
            epoch: None,
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
            max_deleted: (0, 0),
            epoch: None,
        };
        assert!(emptied.trimmed_after((4, 0)));
        assert!(!emptied.trimmed_after((5, 0)));
    }

    #[test]
    fn a_missing_entry_is_lost_unless_trimming_explains_it() {
        let info = StreamInfo {
            length: 3,
            entries_added: 5,
            last_generated: (9, 0),
            first: Some((7, 0)),
            max_deleted: (0, 0),
            epoch: Some((2, 0)),
        };
        let lost = |found: Found| matches!(found, Found::Lost(..));
        assert_eq!(
            classify((8, 0), true, Some((9, 0)), Some(&info)),
            Found::Complete
        );
        assert_eq!(classify((9, 0), false, None, Some(&info)), Found::Complete);
        assert_eq!(
            classify((5, 0), false, Some((7, 0)), Some(&info)),
            Found::Trimmed
        );
        assert!(
            lost(classify((8, 1), false, Some((9, 0)), Some(&info))),
            "a gap"
        );
        assert!(
            lost(classify((1, 0), false, Some((7, 0)), Some(&info))),
            "before the epoch"
        );
        assert!(
            lost(classify((10, 0), false, None, Some(&info))),
            "beyond the end"
        );
        assert!(lost(classify((8, 0), false, None, None)), "no stream");
        let deleted = StreamInfo {
            max_deleted: (8, 5),
            ..info
        };
        assert_eq!(
            classify((8, 1), false, Some((9, 0)), Some(&deleted)),
            Found::Trimmed
        );
        let same = classify((8, 1), false, Some((9, 0)), Some(&info));
        let other = classify((8, 2), false, Some((9, 0)), Some(&info));
        assert!(
            matches!((same, other), (Found::Lost(a, _), Found::Lost(b, _)) if a == b),
            "offsets in one gap are one finding"
        );
    }

    #[test]
    fn epoch_keys_never_collide_with_stream_keys() {
        let prefix = crate::DEFAULT_HISTORY_KEY_PREFIX;
        assert_eq!(
            epoch_key(prefix, "sidecast:history:news"),
            "sidecast:history-epoch:news"
        );
        assert!(!epoch_key(prefix, "sidecast:history:news").starts_with(prefix));
        assert_eq!(epoch_key("h", "hnews"), "h-epoch:news");
        assert_eq!(before((5, 0)), (4, u64::MAX));
        assert_eq!(before((5, 3)), (5, 2));
        assert_eq!(before((0, 0)), (0, 0));
    }
}
