//! [`AmqpHistory`]: the [`History`] of a [`crate::AmqpBroker`], one RabbitMQ stream queue per
//! channel (decision 20): appended to straight through the default exchange, each append's
//! offset learnt by reading its own `message_id` back, the end of a stream learnt by appending
//! a marker, and subscriptions that consume from the offset after the last one delivered.

// This file is the `History` impl; `stream` is the stream queue on the wire (arguments,
// headers, readers, appends), `follower` the task behind each history subscription.
mod follower;
mod stream;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sidecast_core::broker::{
    BrokerError, History, HistoryEntry, HistoryRetention, HistorySubscription, Offset, Replay,
};
use sidecast_core::supervision::Tasks;
use tokio::time::timeout;

use crate::MAX_NAME_BYTES;
use crate::connection::{AmqpConnection, AmqpState};
use crate::error;
use stream::{
    Attach, READ_PREFETCH, append_to, exists, has_id, identity, is_marker, new_id, next_delivery,
    open_declared_reader, open_reader, placed, properties,
};

/// How many times one operation follows the connection to another node for a replica of its
/// stream: a cluster of three or five nodes needs no more.
const MAX_MOVES: usize = 4;

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

/// The renewed streams this node found (decision 33): a stream queue deleted and declared again
/// restarts its offsets at 0, so an offset of its earlier life names another entry of the new
/// one. Shared by the history and its subscriptions, which find them.
#[derive(Debug, Default)]
pub(crate) struct Renewals {
    /// Findings so far ([`History::losses_detected`]).
    losses: AtomicU64,
    /// Per queue, the stream offset below which a client's offset may be from an earlier life
    /// of the stream: the position its subscription had reached in the old one.
    before: Mutex<HashMap<String, u64>>,
}

impl Renewals {
    /// Records that `queue` was found renewed while this node was at stream offset `reached`
    /// of its earlier life.
    fn found(&self, queue: &str, reached: u64) {
        self.losses.fetch_add(1, Ordering::Relaxed);
        let mut before = self.before.lock().unwrap_or_else(PoisonError::into_inner);
        let bound = before.entry(queue.to_owned()).or_insert(0);
        *bound = (*bound).max(reached);
    }

    /// Whether a client's stream offset `offset` of `queue` may be from an earlier life of it.
    fn may_be_old(&self, queue: &str, offset: u64) -> bool {
        self.before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(queue)
            .is_some_and(|&bound| offset < bound)
    }
}

/// The history of one [`crate::AmqpBroker`] (shared by its clones).
pub(crate) struct AmqpHistory {
    state: Arc<AmqpState>,
    tasks: Arc<Tasks>,
    renewals: Arc<Renewals>,
}

impl std::fmt::Debug for AmqpHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpHistory")
            .field("url", &self.state.url)
            .field("retention", &self.state.options.history)
            .finish_non_exhaustive()
    }
}

impl AmqpHistory {
    pub(crate) fn new(state: Arc<AmqpState>, tasks: Arc<Tasks>) -> Self {
        Self {
            state,
            tasks,
            renewals: Arc::default(),
        }
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
        self.state.parts.board().check_open()?;
        self.state
            .live_connection()
            .ok_or_else(|| self.state.down_error())
    }

    /// After `error` from an operation on `link`: the next connection if the error is the
    /// connection leaving a node that holds no replica of the stream (the operation was refused
    /// before it wrote anything, so running it again writes nothing twice), awaited within the
    /// connect time-out; otherwise, or after [`MAX_MOVES`] moves, `error`.
    async fn after_move(
        &self,
        link: &AmqpConnection,
        error: BrokerError,
        moves: &mut usize,
    ) -> Result<Arc<AmqpConnection>, BrokerError> {
        if !stream::is_moving(&error) || *moves >= MAX_MOVES {
            return Err(error);
        }
        *moves += 1;
        let mut links = self.state.connection.subscribe();
        let next = async {
            loop {
                let current = links.borrow_and_update().clone();
                if let Some(next) = current
                    && next.generation != link.generation
                {
                    return Some(next);
                }
                if links.changed().await.is_err() {
                    return None;
                }
            }
        };
        match timeout(self.state.options.connect_timeout, next).await {
            Ok(Some(next)) => Ok(next),
            Ok(None) | Err(_) => Err(error),
        }
    }

    /// Runs `operation` on `link` within `within`; a time-out has the connection checked. An
    /// operation still waiting when `link` is replaced (the connection was lost, or moved) fails
    /// at once, as it would at the time-out: a confirm never comes on a dead connection, and
    /// waiting for the time-out would hold a caller (and the next `POST /api/`) that long after
    /// the node already reconnected.
    async fn bounded<T>(
        &self,
        within: Duration,
        link: &AmqpConnection,
        operation: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        let mut links = self.state.connection.subscribe();
        let replaced = async {
            loop {
                let current = links
                    .borrow_and_update()
                    .as_ref()
                    .map(|current| current.generation);
                if current != Some(link.generation) || links.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            // A result that is ready wins over a replacement seen at the same moment.
            biased;
            result = timeout(within, operation) => match result {
                Ok(result) => result,
                Err(_elapsed) => {
                    self.state.check.notify_one();
                    Err(error::timeout(within))
                }
            },
            () = replaced => Err(self.state.down_error()),
        }
    }
}

#[async_trait]
impl History for AmqpHistory {
    async fn append(&self, channel: &str, payload: Bytes) -> Result<Offset, BrokerError> {
        let queue = self.queue(channel)?;
        let mut link = self.link()?;
        let state = &self.state;
        let mut moves = 0;
        loop {
            let appended = self
                .bounded(
                    state.options.publish_timeout,
                    &link,
                    append_to(state, &link, &queue, &payload, false),
                )
                .await;
            match appended {
                Ok(offset) => return Ok(Offset::from_number(offset)),
                Err(e) => link = self.after_move(&link, e, &mut moves).await?,
            }
        }
    }

    async fn read_after(
        &self,
        channel: &str,
        after: &Offset,
        limit: usize,
    ) -> Result<Replay, BrokerError> {
        let queue = self.queue(channel)?;
        let mut link = self.link()?;
        let Some(wanted) = first_wanted(after) else {
            return Ok(Replay::Unknown);
        };
        if !after.is_start() && self.renewals.may_be_old(&queue, wanted - 1) {
            // Perhaps an entry of the stream before it was declared again: never replay the
            // new stream from that number.
            return Ok(Replay::Unknown);
        }
        let state = &self.state;
        let within = state.options.publish_timeout;
        let mut moves = 0;
        let set_up = loop {
            let setup = async {
                if !exists(state, &link, &queue).await? {
                    return Ok(None);
                }
                let opened =
                    open_reader(&link, &queue, Attach::Offset(wanted), READ_PREFETCH).await;
                let reader = placed(state, &link, &queue, opened).await?;
                // Everything appended before the marker is before it in the stream: reading up to
                // the marker reads all of it.
                let marker = new_id();
                link.publishing
                    .publish_to_queue(
                        &link.connection,
                        state.as_ref(),
                        &queue,
                        b"",
                        properties(&marker, true),
                    )
                    .await?;
                Ok(Some((reader, marker)))
            };
            match self.bounded(within, &link, setup).await {
                Ok(set_up) => break set_up,
                Err(e) => link = self.after_move(&link, e, &mut moves).await?,
            }
        };
        let Some((mut reader, marker)) = set_up else {
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
        let mut link = self.link()?;
        let state = &self.state;
        let mut moves = 0;
        loop {
            let read = async {
                if !exists(state, &link, &queue).await? {
                    return Ok(None);
                }
                // The offset just before a new marker: the newest entry, or a later marker.
                let marker = append_to(state, &link, &queue, b"", true).await?;
                Ok(marker.checked_sub(1))
            };
            match self
                .bounded(state.options.publish_timeout, &link, read)
                .await
            {
                Ok(last) => return Ok(last.map(Offset::from_number)),
                Err(e) => link = self.after_move(&link, e, &mut moves).await?,
            }
        }
    }

    async fn subscribe_from(
        &self,
        channel: &str,
        after: &Offset,
    ) -> Result<HistorySubscription, BrokerError> {
        let queue = self.queue(channel)?;
        let Some(wanted) = first_wanted(after) else {
            return Err(BrokerError::unknown_offset(error::BACKEND, after));
        };
        let mut link = self.link()?;
        let state = &self.state;
        let prefetch = follower::follow_prefetch(state);
        // The first reader is opened here, so that the caller learns about a RabbitMQ that is
        // down or refuses the queue; later ones are the task's business. The stream's identity
        // first, so that a stream declared again later is told from this one.
        let mut moves = 0;
        let (known, reader) = loop {
            let opened = self
                .bounded(state.options.connect_timeout, &link, async {
                    let known = identity(state, &link, &queue).await?;
                    let reader = open_declared_reader(
                        state,
                        &link,
                        &queue,
                        Attach::Offset(wanted),
                        prefetch,
                    )
                    .await?;
                    Ok((known, reader))
                })
                .await;
            match opened {
                Ok(opened) => break opened,
                Err(e) => link = self.after_move(&link, e, &mut moves).await?,
            }
        };
        Ok(follower::start(
            state,
            &self.tasks,
            follower::Position {
                queue,
                wanted,
                identity: known,
            },
            Arc::clone(&self.renewals),
            prefetch,
            reader,
        ))
    }

    fn retention(&self) -> HistoryRetention {
        self.state.options.history
    }

    fn losses_detected(&self) -> u64 {
        self.renewals.losses.load(Ordering::Relaxed)
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
}
