//! The optional history capability of a [`Broker`](super::Broker): [`History`], its offsets, what
//! a read after an offset finds ([`Replay`]), its retention bounds, and [`HistorySubscription`],
//! the stream that delivers every entry after an offset.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use super::BrokerError;

/// The position of an entry in a channel's history, assigned by the shared backend when the
/// entry is appended: every node sees the same offset for the same entry.
///
/// Offsets are strings (socket.io carries them to browsers as the last argument of an event).
/// The offsets of one channel **compare as strings in history order**: an entry appended after
/// another has a greater offset, byte-wise. Transports make that true by writing numbers with a
/// fixed width ([`Offset::from_number`], [`Offset::from_pair`]). Offsets of different channels
/// are not comparable. [`Offset::START`] (the empty string) is before every entry of every
/// channel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(String);

/// Digits of a number in an offset: enough for every `u64`.
const NUMBER_WIDTH: usize = 20;

impl Offset {
    /// Before every entry: reading or subscribing after `START` starts at the oldest entry the
    /// history ever held.
    pub const START: Self = Self(String::new());

    /// An offset as received (from a client, a log, another node). Any string is accepted; one
    /// the history never assigned is reported as [`Replay::Unknown`] when read after.
    pub fn new(offset: impl Into<String>) -> Self {
        Self(offset.into())
    }

    /// The offset as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is [`Offset::START`].
    pub fn is_start(&self) -> bool {
        self.0.is_empty()
    }

    /// The offset of a backend that numbers entries with one integer (a counter, a RabbitMQ
    /// stream offset): 20 decimal digits, so that string order is numeric order.
    pub fn from_number(n: u64) -> Self {
        Self(format!("{n:0NUMBER_WIDTH$}"))
    }

    /// The number of an offset made by [`Offset::from_number`]; `None` for any other string
    /// (including [`Offset::START`]).
    pub fn to_number(&self) -> Option<u64> {
        parse_number(&self.0)
    }

    /// The offset of a backend that numbers entries with two integers ordered as a pair (a Redis
    /// stream id `ms-seq`): `{first:020}-{second:020}`.
    pub fn from_pair(first: u64, second: u64) -> Self {
        Self(format!("{first:0NUMBER_WIDTH$}-{second:0NUMBER_WIDTH$}"))
    }

    /// The pair of an offset made by [`Offset::from_pair`]; `None` for any other string.
    pub fn to_pair(&self) -> Option<(u64, u64)> {
        let (first, second) = self.0.split_once('-')?;
        Some((parse_number(first)?, parse_number(second)?))
    }
}

/// A number written with exactly [`NUMBER_WIDTH`] ASCII digits.
fn parse_number(digits: &str) -> Option<u64> {
    if digits.len() != NUMBER_WIDTH || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Offset {
    fn from(offset: String) -> Self {
        Self(offset)
    }
}

impl From<&str> for Offset {
    fn from(offset: &str) -> Self {
        Self(offset.to_owned())
    }
}

/// One entry of a channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its offset, as the backend assigned it.
    pub offset: Offset,
    /// The payload exactly as appended.
    pub payload: Bytes,
}

/// What [`History::read_after`] found after an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The entries after the offset, oldest first, at most the `limit` asked for; empty when
    /// nothing is newer. Fewer than `limit` means these are all of them (so far).
    Entries(Vec<HistoryEntry>),
    /// Entries after the offset may have been trimmed (the offset is older than the history):
    /// a reader that needs everything must refetch by other means. A transport whose backend
    /// cannot tell the last trimmed offset apart from older ones reports `Trimmed` for it too.
    Trimmed,
    /// The history never assigned this offset on this channel (malformed, from another channel
    /// or backend, or newer than its newest entry), or the transport found that it lost the
    /// offset's entry or entries after it other than by trimming (a backend restarted without
    /// persistence, a failover to a replica that lagged): entries after it may be missing, and
    /// are never given as if the history were complete.
    Unknown,
}

impl BrokerError {
    /// The error of [`History::subscribe_from`] after an offset the history never makes (a
    /// malformed string, or the offset form of another backend), for the transport `backend`:
    /// [`BrokerError::Unsupported`]. (A read after such an offset is [`Replay::Unknown`].)
    pub fn unknown_offset(backend: &'static str, after: &Offset) -> Self {
        Self::Unsupported {
            backend,
            what: format!("subscribing after {after:?}, an offset this history never made"),
        }
    }
}

/// How long and how much a history keeps: entries older than `max_age` are trimmed, and so are
/// the oldest entries beyond `max_entries` or `max_bytes` (of payload).
///
/// Each transport documents how exactly it applies the bounds: trimming may be approximate
/// (Redis trims whole nodes of entries, see its docs) and may happen at the next append rather
/// than at the moment an entry ages out, so entries stay readable for *at least* `max_age`
/// unless a size bound trims them first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRetention {
    /// Entries older than this are trimmed. Default 2 minutes, as socket.io's connection state
    /// recovery.
    pub max_age: Duration,
    /// At most this many entries per channel. Default 10,000 (100 events/s for the default age).
    pub max_entries: usize,
    /// At most this many payload bytes per channel. Default 64 MiB.
    pub max_bytes: usize,
}

impl Default for HistoryRetention {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(120),
            max_entries: 10_000,
            max_bytes: 64 << 20,
        }
    }
}

/// An ordered history of entries per channel, with offsets assigned by the shared backend: the
/// optional capability of a [`Broker`](super::Broker) that lets nodes catch up after an outage
/// and clients recover what they missed. A broker offers it by returning `Some` from
/// [`Broker::history`](super::Broker::history).
///
/// # Guarantees
///
/// * **Shared offsets.** [`History::append`] returns the offset the backend assigned; every node
///   (every broker connected to the same backend) reads and receives the entry with that same
///   offset.
/// * **Total order per channel.** Entries of one channel have one order, the same for every
///   reader, and their offsets compare (as strings) in that order ([`Offset`]). Appends that
///   one broker value makes one after the other are in that order.
/// * **Exactly once, in order, across reconnects.** A [`HistorySubscription`] delivers every
///   entry after its starting offset once, in order, each with its offset. When the connection
///   drops, the transport resumes from the last entry it delivered, so nothing accepted by the
///   backend meanwhile is lost or repeated, unless the outage outlasted the retention (then the
///   entries trimmed meanwhile are lost; the transport logs it).
/// * **Durability is the backend's.** An entry is in the history once `append` returned `Ok`;
///   whether it survives a restart of the backend itself depends on its persistence settings
///   (and, with replicas, on how many acknowledged it: a transport may wait for them before
///   returning `Ok`). A transport that finds entries lost reports reads across the loss as
///   [`Replay::Unknown`], never as complete, and counts them ([`History::losses_detected`]).
/// * **Retention** is bounded by [`HistoryRetention`], which [`History::retention`] reports.
///
/// The history is separate from pub/sub: [`History::append`] does not reach
/// [`Broker::subscribe`](super::Broker::subscribe)'s subscriptions, and
/// [`Broker::publish`](super::Broker::publish) does not append.
///
/// # Errors
///
/// As for the rest of the broker: transient [`BrokerError`]s during outages (fail fast, never
/// hang), [`BrokerError::Closed`] after close.
#[async_trait]
pub trait History: Send + Sync + fmt::Debug {
    /// Appends `payload` to `channel`'s history and returns the offset the backend assigned,
    /// once the backend holds the entry. Trims what the retention no longer allows.
    async fn append(&self, channel: &str, payload: Bytes) -> Result<Offset, BrokerError>;

    /// The entries of `channel` after `after`, oldest first, at most `limit` of them (read again
    /// after the last one for more), or why they cannot be given ([`Replay`]).
    async fn read_after(
        &self,
        channel: &str,
        after: &Offset,
        limit: usize,
    ) -> Result<Replay, BrokerError>;

    /// The offset of `channel`'s newest entry, `None` while it has none (nothing was appended,
    /// or everything was trimmed and the backend does not remember the last offset). A backend
    /// that can only learn the end of a history by writing to it may return a later position
    /// that no entry has (an offset greater than the newest entry's). Either way, reading after
    /// it finds nothing appended before the call: a reader that starts now reads and subscribes
    /// after it ([`Offset::START`] when `None`).
    async fn last_offset(&self, channel: &str) -> Result<Option<Offset>, BrokerError>;

    /// A stream of every entry of `channel` after `after`: first those already in the history,
    /// then new ones as they are appended, each exactly once and in order, across reconnects. If
    /// entries after `after` were trimmed, it starts at the oldest one left (check with
    /// [`History::read_after`] first when that matters).
    ///
    /// The transport waits for a consumer that lags (the entries stay in the backend) instead of
    /// dropping entries. The stream ends when the broker is closed; dropping it frees the
    /// transport's resources.
    async fn subscribe_from(
        &self,
        channel: &str,
        after: &Offset,
    ) -> Result<HistorySubscription, BrokerError>;

    /// The retention bounds this history applies.
    fn retention(&self) -> HistoryRetention;

    /// How many times this history found entries missing that it had acknowledged or delivered
    /// (a backend that restarted without persistence, a failover to a replica that lagged), so
    /// far: cumulative, for metrics. Each finding is logged when it is made. A transport that
    /// cannot tell reports 0 (the default).
    fn losses_detected(&self) -> u64 {
        0
    }
}

/// A stream of [`HistoryEntry`]s from [`History::subscribe_from`], fed by a transport through a
/// bounded queue that waits rather than drops: create one with [`HistorySubscription::bounded`].
#[derive(Debug)]
pub struct HistorySubscription {
    rx: mpsc::Receiver<HistoryEntry>,
}

impl HistorySubscription {
    /// A queue of at most `capacity` entries (at least 1) and its sending half.
    pub fn bounded(capacity: usize) -> (HistorySender, HistorySubscription) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (HistorySender { tx }, HistorySubscription { rx })
    }

    /// The next entry, or `None` once the broker was closed.
    pub async fn recv(&mut self) -> Option<HistoryEntry> {
        self.rx.recv().await
    }
}

impl Stream for HistorySubscription {
    type Item = HistoryEntry;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HistoryEntry>> {
        self.rx.poll_recv(cx)
    }
}

/// The transport's half of a [`HistorySubscription`].
#[derive(Debug, Clone)]
pub struct HistorySender {
    tx: mpsc::Sender<HistoryEntry>,
}

impl HistorySender {
    /// Queues `entry`, waiting while the queue is full. `false` when the consumer dropped its
    /// [`HistorySubscription`]: the transport should stop.
    pub async fn send(&self, entry: HistoryEntry) -> bool {
        self.tx.send(entry).await.is_ok()
    }

    /// Whether the consumer dropped its [`HistorySubscription`].
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes once the consumer dropped its [`HistorySubscription`]. Cancel-safe.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// The optional capabilities a broker offers, as [`Broker::capabilities`](super::Broker::capabilities)
/// reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerCapabilities {
    /// [`Broker::history`](super::Broker::history) returns a [`History`].
    pub history: bool,
}

impl BrokerCapabilities {
    /// No optional capability.
    pub const NONE: Self = Self { history: false };

    /// These capabilities, with or without history.
    pub const fn with_history(self, history: bool) -> Self {
        Self { history }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_compare_in_numeric_order() {
        assert!(Offset::from_number(9) < Offset::from_number(10));
        assert!(Offset::START < Offset::from_number(0));
        assert!(Offset::from_pair(9, 99) < Offset::from_pair(10, 0));
        assert!(Offset::from_pair(10, 9) < Offset::from_pair(10, 10));
        assert_eq!(Offset::from_number(42).to_number(), Some(42));
        assert_eq!(Offset::from_number(u64::MAX).to_number(), Some(u64::MAX));
        assert_eq!(Offset::from_pair(7, 3).to_pair(), Some((7, 3)));
        for bad in ["", "42", "x", "-1", "000000000000000000001-0"] {
            assert_eq!(Offset::new(bad).to_number(), None, "{bad:?}");
            assert_eq!(Offset::new(bad).to_pair(), None, "{bad:?}");
        }
        assert!(Offset::START.is_start());
        assert_eq!(Offset::from("abc").as_str(), "abc");
    }
}
