//! The retention checks: a history trims by entries ([`history_retention`]) or by bytes
//! ([`history_retention_bytes`]) as its [`HistoryRetention`](sidecast_core::HistoryRetention) says.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use sidecast_core::broker::{History, HistoryEntry, Offset, Replay};

use super::MakeBroker;
use super::history::{append, append_numbered, entries_after, history_of, read_after};
use super::support::DEADLINE;
use crate::unique_channel;

/// Entries beyond [`HistoryRetention::max_entries`](sidecast_core::HistoryRetention) that a
/// history may keep because it trims approximately (Redis trims whole nodes of up to 100
/// entries). [`history_retention`] accepts this many extra entries.
pub const HISTORY_TRIM_SLACK: usize = 150;

/// The largest `max_entries` [`history_retention`] works with: configure the brokers of the
/// conformance factory with a small bound, so that the check stays fast.
pub const HISTORY_CHECK_MAX_ENTRIES: usize = 1_000;

/// The largest `max_bytes` [`history_retention_bytes`] works with: configure the brokers of the
/// conformance factory with a small bound, so that the check stays fast.
pub const HISTORY_CHECK_MAX_BYTES: usize = 256 << 10;

/// Entries [`history_retention_bytes`] appends per `max_bytes` of payload.
const ENTRIES_PER_MAX_BYTES: usize = 64;

/// A size bound of [`HistoryRetention`](sidecast_core::HistoryRetention), and the check that
/// needs it small.
#[derive(Clone, Copy)]
enum Bound {
    /// `max_entries`, for [`history_retention`].
    Entries,
    /// `max_bytes`, for [`history_retention_bytes`].
    Bytes,
}

/// `history`'s `bound`, which must be configured small for its check to stay fast (at most
/// [`HISTORY_CHECK_MAX_ENTRIES`], [`HISTORY_CHECK_MAX_BYTES`]); panics otherwise.
fn small_bound(history: &dyn History, bound: Bound) -> usize {
    let retention = history.retention();
    let (max, most, check, name) = match bound {
        Bound::Entries => (
            retention.max_entries,
            HISTORY_CHECK_MAX_ENTRIES,
            "history_retention",
            "max_entries",
        ),
        Bound::Bytes => (
            retention.max_bytes,
            HISTORY_CHECK_MAX_BYTES,
            "history_retention_bytes",
            "max_bytes",
        ),
    };
    assert!(
        max > 0 && max <= most,
        "{check} needs brokers configured with 1..={most} {name}, not {max}"
    );
    max
}

/// Retention: with more entries than [`HistoryRetention::max_entries`](sidecast_core::HistoryRetention)
/// appended, the newest `max_entries` are still readable, entries older than that (give or take
/// [`HISTORY_TRIM_SLACK`]) are trimmed, and reading after a trimmed offset (or after
/// [`Offset::START`]) says [`Replay::Trimmed`].
///
/// Needs brokers configured with `max_entries` of at most [`HISTORY_CHECK_MAX_ENTRIES`].
pub async fn history_retention<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    let history = history_of(&broker);
    let max = small_bound(history, Bound::Entries);
    let channel = unique_channel("history-retention");
    let total = max + HISTORY_TRIM_SLACK + 50;
    let appended = append_numbered(history, &channel, "kept", total).await;

    assert_eq!(
        read_after(history, &channel, &appended[0].offset, 10).await,
        Replay::Trimmed,
        "after the first of {total} entries with max_entries {max}"
    );
    assert_eq!(
        read_after(history, &channel, &Offset::START, 10).await,
        Replay::Trimmed,
        "after START once entries were trimmed"
    );
    let too_old = &appended[total - max - HISTORY_TRIM_SLACK - 1].offset;
    assert_eq!(
        read_after(history, &channel, too_old, 10).await,
        Replay::Trimmed,
        "more than max_entries + {HISTORY_TRIM_SLACK} entries kept"
    );
    // Read after the oldest of the newest `max_entries`, not before it: a backend that cannot
    // tell the last trimmed offset from older ones reports that one as Trimmed (see Replay).
    let newest_kept = entries_after(history, &channel, &appended[total - max].offset, total).await;
    assert_eq!(
        newest_kept,
        appended[total - max + 1..],
        "the newest max_entries ({max}) entries must stay readable"
    );
}

/// A replay in a few words: the offsets of its entries rather than their payloads.
fn summary(replay: &Replay) -> String {
    match replay {
        Replay::Entries(entries) => match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => format!(
                "{} entries, offsets {} to {}",
                entries.len(),
                first.offset,
                last.offset
            ),
            _ => "no entries".to_owned(),
        },
        other => format!("{other:?}"),
    }
}

/// Retention by bytes: with three times [`HistoryRetention::max_bytes`](sidecast_core::HistoryRetention)
/// of payload appended, the newest half of `max_bytes` is still readable, entries older than
/// twice `max_bytes` (counted from the newest) are trimmed, and reading after a trimmed offset
/// (or after [`Offset::START`]) says [`Replay::Trimmed`].
///
/// The slack (half to twice the bound) is for backends that trim approximately and count bytes
/// their own way: RabbitMQ deletes whole segments and counts bytes on disk, per-message overhead
/// included. Trimming may also lag behind the appends (RabbitMQ trims in the background), so the
/// trimmed offsets are polled until [`DEADLINE`].
///
/// Needs brokers configured with `max_bytes` of at most [`HISTORY_CHECK_MAX_BYTES`].
pub async fn history_retention_bytes<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    let history = history_of(&broker);
    let max = small_bound(history, Bound::Bytes);
    let channel = unique_channel("history-retention-bytes");
    let size = (max / ENTRIES_PER_MAX_BYTES).max(1);
    let total = 3 * ENTRIES_PER_MAX_BYTES;
    let mut appended = Vec::with_capacity(total);
    for i in 0..total {
        // Fixed-size payloads, numbered so that each is told apart.
        let mut payload = format!("{i:08} ").into_bytes();
        payload.resize(size.max(payload.len()), b'.');
        let payload = Bytes::from(payload);
        let offset = append(history, &channel, payload.clone()).await;
        appended.push(HistoryEntry { offset, payload });
    }
    // The index of the oldest entry such that it and everything newer hold at least `bytes` of
    // payload.
    let newest_holding = |bytes: usize| {
        let mut held = 0;
        for i in (0..total).rev() {
            held += appended[i].payload.len();
            if held >= bytes {
                return i;
            }
        }
        0
    };

    let too_old = newest_holding(2 * max + 1);
    let deadline = Instant::now() + DEADLINE;
    for (after, what) in [
        (&appended[0].offset, "after the first entry"),
        (&Offset::START, "after START"),
        (
            &appended[too_old].offset,
            "after an entry older than twice max_bytes",
        ),
    ] {
        loop {
            match read_after(history, &channel, after, 10).await {
                Replay::Trimmed => break,
                other if Instant::now() >= deadline => panic!(
                    "{what}, with {} bytes appended and max_bytes {max}: expected Trimmed \
                     within {DEADLINE:?}, got {}",
                    total * size,
                    summary(&other)
                ),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    // Read after the entry before the newest half of max_bytes: a backend that cannot tell the
    // last trimmed offset from older ones reports that one as Trimmed (see Replay).
    let kept = newest_holding(max / 2);
    let newest_kept = entries_after(history, &channel, &appended[kept - 1].offset, total).await;
    assert_eq!(
        newest_kept,
        appended[kept..],
        "the newest half of max_bytes ({max}) must stay readable"
    );
}
