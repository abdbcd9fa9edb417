//! The history checks (`Capabilities::history`): offsets shared by every node, reads after an
//! offset, unknown offsets, subscriptions that resume, a consumer that lags; and the helpers
//! that read and append or panic with the error.

use bytes::Bytes;
use tokio::time::timeout;

use sidecast_core::broker::{Broker, History, HistoryEntry, HistorySubscription, Offset, Replay};

use super::MakeBroker;
use super::support::{DEADLINE, within_deadline};
use crate::unique_channel;

/// `broker`'s history, or a panic saying that the broker declared none.
pub fn history_of<B: Broker + ?Sized>(broker: &B) -> &dyn History {
    broker.history().unwrap_or_else(|| {
        panic!("the broker is checked with history, but Broker::history() returned None")
    })
}

/// Appends or panics with the error; returns the offset.
pub async fn append(history: &dyn History, channel: &str, payload: impl Into<Bytes>) -> Offset {
    match within_deadline("append", history.append(channel, payload.into())).await {
        Ok(offset) => offset,
        Err(e) => panic!("append on {channel:?} failed: {e}"),
    }
}

/// Reads after `after` or panics with the error.
pub async fn read_after(
    history: &dyn History,
    channel: &str,
    after: &Offset,
    limit: usize,
) -> Replay {
    match within_deadline("read_after", history.read_after(channel, after, limit)).await {
        Ok(replay) => replay,
        Err(e) => panic!("read_after({channel:?}, {after:?}) failed: {e}"),
    }
}

/// The entries of a read that must find entries; panics on `Trimmed` or `Unknown`.
pub async fn entries_after(
    history: &dyn History,
    channel: &str,
    after: &Offset,
    limit: usize,
) -> Vec<HistoryEntry> {
    match read_after(history, channel, after, limit).await {
        Replay::Entries(entries) => entries,
        other => panic!("read_after({channel:?}, {after:?}) must find entries, got {other:?}"),
    }
}

/// Subscribes after `after` or panics with the error.
pub async fn subscribe_from(
    history: &dyn History,
    channel: &str,
    after: &Offset,
) -> HistorySubscription {
    match within_deadline("subscribe_from", history.subscribe_from(channel, after)).await {
        Ok(subscription) => subscription,
        Err(e) => panic!("subscribe_from({channel:?}, {after:?}) failed: {e}"),
    }
}

/// The next entry of a history subscription, within [`DEADLINE`]; panics if none arrives or the
/// stream ends.
pub async fn next_entry(subscription: &mut HistorySubscription) -> HistoryEntry {
    match timeout(DEADLINE, subscription.recv()).await {
        Ok(Some(entry)) => entry,
        Ok(None) => panic!("the history subscription ended while an entry was expected"),
        Err(_) => panic!("no history entry arrived within {DEADLINE:?}"),
    }
}

/// Asserts that the next entries of `subscription` are exactly `expected` (offset and payload),
/// in order.
pub async fn expect_entries(subscription: &mut HistorySubscription, expected: &[HistoryEntry]) {
    for (i, want) in expected.iter().enumerate() {
        let got = next_entry(subscription).await;
        assert_eq!(
            &got,
            want,
            "history entry {i} of {} wrong (lost, duplicated or out of order)",
            expected.len()
        );
    }
}

/// Two brokers (nodes) from `make_broker` and a new channel labelled `label`.
pub(super) async fn two_nodes<M: MakeBroker>(
    make_broker: &M,
    label: &str,
) -> (M::Broker, M::Broker, String) {
    let first = make_broker.make().await;
    let second = make_broker.make().await;
    (first, second, unique_channel(label))
}

/// Appends `count` entries `"{label} {i}"` and returns them with their offsets.
pub(super) async fn append_numbered(
    history: &dyn History,
    channel: &str,
    label: &str,
    count: usize,
) -> Vec<HistoryEntry> {
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let payload = Bytes::from(format!("{label} {i}"));
        let offset = append(history, channel, payload.clone()).await;
        entries.push(HistoryEntry { offset, payload });
    }
    entries
}

/// [`Broker::capabilities`] and [`Broker::history`] agree with what the broker is checked with:
/// a broker declared without history reports none (a documented absence), one with history
/// reports it.
pub async fn history_declared<M: MakeBroker>(make_broker: &M, declared: bool) {
    let broker = make_broker.make().await;
    assert_eq!(
        broker.capabilities().history,
        declared,
        "Broker::capabilities().history disagrees with the capabilities checked"
    );
    assert_eq!(
        broker.history().is_some(),
        declared,
        "Broker::history() disagrees with the capabilities checked"
    );
}

/// Offsets are assigned by the shared backend: increasing in append order (as strings), the
/// same on every node, whichever node appended; [`History::last_offset`] is the newest one (or a
/// later position with nothing after it).
pub async fn history_offsets<M: MakeBroker>(make_broker: &M) {
    let (first, second, channel) = two_nodes(make_broker, "history-offsets").await;
    let (a, b) = (history_of(&first), history_of(&second));
    assert_eq!(
        a.last_offset(&channel).await.ok().flatten(),
        None,
        "a channel nothing was appended to has no last offset"
    );

    // Both nodes append, one after the other.
    let mut appended = Vec::new();
    for i in 0..10 {
        let (node, history) = if i % 2 == 0 { ("a", a) } else { ("b", b) };
        let payload = Bytes::from(format!("{node} {i}"));
        let offset = append(history, &channel, payload.clone()).await;
        appended.push(HistoryEntry { offset, payload });
    }
    for pair in appended.windows(2) {
        assert!(
            pair[0].offset < pair[1].offset,
            "offsets must increase (as strings) in append order: {:?} then {:?}",
            pair[0].offset,
            pair[1].offset
        );
    }
    assert!(
        Offset::START < appended[0].offset,
        "START is before every offset"
    );
    let newest = appended.last().map(|e| e.offset.clone());
    for (node, history) in [("a", a), ("b", b)] {
        // The newest offset, or a later position (History::last_offset) after which there is
        // nothing yet.
        let last = match history.last_offset(&channel).await {
            Ok(Some(last)) => last,
            other => panic!("last_offset on node {node} after 10 appends: {other:?}"),
        };
        assert!(
            newest.as_ref().is_some_and(|newest| &last >= newest),
            "last_offset on node {node} is {last:?}, before the newest entry {newest:?}"
        );
        assert_eq!(
            read_after(history, &channel, &last, 10).await,
            Replay::Entries(Vec::new()),
            "nothing after last_offset on node {node}"
        );
        // Every node reads every entry with the offset the appending node got.
        let read = entries_after(history, &channel, &Offset::START, 100).await;
        assert_eq!(read, appended, "node {node} read other offsets or payloads");
    }
}

/// [`History::read_after`] gives the entries after an offset, oldest first, bounded by `limit`;
/// after the newest offset it gives nothing (not `Trimmed`, not `Unknown`).
pub async fn history_read_after<M: MakeBroker>(make_broker: &M) {
    let (writer, reader, channel) = two_nodes(make_broker, "history-read").await;
    let appended = append_numbered(history_of(&writer), &channel, "read", 20).await;
    let history = history_of(&reader);

    let read = entries_after(history, &channel, &appended[4].offset, 5).await;
    assert_eq!(read, appended[5..10], "read_after(offset 4, limit 5)");

    // Paging with a limit collects everything, once, in order.
    let mut collected = Vec::new();
    let mut after = Offset::START;
    loop {
        let page = entries_after(history, &channel, &after, 7).await;
        assert!(page.len() <= 7, "read_after returned more than its limit");
        let Some(last) = page.last() else { break };
        after = last.offset.clone();
        collected.extend(page);
    }
    assert_eq!(collected, appended, "paging through the history");

    let newest = &appended[19].offset;
    assert_eq!(
        read_after(history, &channel, newest, 10).await,
        Replay::Entries(Vec::new()),
        "after the newest offset there is nothing newer"
    );
}

/// Offsets the history never assigned are [`Replay::Unknown`]: a malformed string, and an offset
/// of another channel on a channel that has no history. [`Offset::START`] on such a channel finds
/// nothing, without error.
pub async fn history_unknown_offsets<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    let history = history_of(&broker);
    let channel = unique_channel("history-unknown");
    let fresh = unique_channel("history-fresh");
    let appended = append_numbered(history, &channel, "known", 3).await;

    for bad in [
        "not an offset",
        "-1",
        "\u{0}",
        "99999999999999999999999999999999999999999999999",
    ] {
        assert_eq!(
            read_after(history, &channel, &Offset::new(bad), 10).await,
            Replay::Unknown,
            "read_after({bad:?}) on a channel with entries"
        );
    }
    assert_eq!(
        read_after(history, &fresh, &appended[1].offset, 10).await,
        Replay::Unknown,
        "an offset of another channel, on a channel without history"
    );
    assert_eq!(
        read_after(history, &fresh, &Offset::START, 10).await,
        Replay::Entries(Vec::new()),
        "START on a channel without history"
    );
}

/// A history subscription delivers every entry after its offset exactly once, in order, with its
/// offset: first the entries already held, then new ones. A node that restarts its subscription
/// from the last offset it got loses nothing and sees nothing twice, whichever node appended.
pub async fn history_resume<M: MakeBroker>(make_broker: &M) {
    let (writer, node, channel) = two_nodes(make_broker, "history-resume").await;
    let (w, history) = (history_of(&writer), history_of(&node));

    let mut appended = append_numbered(w, &channel, "before", 10).await;
    let mut sub = subscribe_from(history, &channel, &appended[2].offset).await;
    expect_entries(&mut sub, &appended[3..]).await;
    // Live: appended while subscribed.
    let live = append_numbered(w, &channel, "live", 5).await;
    expect_entries(&mut sub, &live).await;
    appended.extend(live);
    let last_seen = appended[appended.len() - 1].offset.clone();
    drop(sub);

    // Appended while the node was away.
    let missed = append_numbered(w, &channel, "missed", 7).await;
    let mut sub = subscribe_from(history, &channel, &last_seen).await;
    expect_entries(&mut sub, &missed).await;
    // Nothing else is queued: the next entry is the one appended next.
    let next = append_numbered(w, &channel, "next", 1).await;
    expect_entries(&mut sub, &next).await;
    appended.extend(missed);
    appended.extend(next);

    // From the start: everything, in order.
    let mut all = subscribe_from(history, &channel, &Offset::START).await;
    expect_entries(&mut all, &appended).await;
}

/// Entries [`history_waits_for_a_slow_consumer`] appends: fewer than a history bounded at 100
/// entries keeps (the Redis transport's test options), so that trimming, which a reader lagging
/// that far behind cannot escape, plays no part.
const SLOW_CONSUMER_ENTRIES: usize = 80;

/// A history subscription whose consumer reads nothing for a while loses nothing: with
/// `broker`'s subscriptions configured to buffer `capacity` entries (a few, fewer than 80), every
/// entry appended meanwhile arrives once and in order when the consumer reads at last. The
/// transport waits while the queue is full (the entries wait in the backend), unlike pub/sub,
/// which drops. Not part of [`run_all`](super::run_all): it needs a broker configured for it.
pub async fn history_waits_for_a_slow_consumer<B: Broker + ?Sized>(broker: &B, capacity: usize) {
    assert!(
        capacity < SLOW_CONSUMER_ENTRIES,
        "history_waits_for_a_slow_consumer needs subscriptions that buffer fewer than \
         {SLOW_CONSUMER_ENTRIES} entries, not {capacity}"
    );
    let history = history_of(broker);
    let channel = unique_channel("history-slow");
    let mut sub = subscribe_from(history, &channel, &Offset::START).await;
    let mut appended = Vec::new();
    for i in 0..SLOW_CONSUMER_ENTRIES {
        let payload = format!("slow {i}");
        let offset = within_deadline("append", history.append(&channel, payload.clone().into()))
            .await
            .expect("append");
        appended.push((offset, payload));
    }
    for (i, (offset, payload)) in appended.iter().enumerate() {
        let entry = next_entry(&mut sub).await;
        assert_eq!(
            (&entry.offset, entry.payload.as_ref()),
            (offset, payload.as_bytes()),
            "entry {i} of {SLOW_CONSUMER_ENTRIES} after a queue of {capacity} filled up"
        );
    }
}
