//! What an acknowledged append is worth: `min_replicas` (an append acknowledged only once a
//! replica has it) and the loss of history entries found rather than passed over (a Redis
//! without persistence restarted: every offset from before is `Replay::Unknown`, and history
//! subscriptions start over on the new stream).
//!
//! These tests stop, pause and restart servers, so they always start private ones.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{connect, options};
use sidecast_core::{Broker, BrokerError, History, HistoryEntry, Offset, Replay};
use sidecast_testkit::{RedisServer, eventually, unique_channel};
use sidecast_transport_redis::{DEFAULT_HISTORY_KEY_PREFIX, RedisBroker, RedisOptions};
use tokio::time::{Instant, sleep, timeout};

/// How long the tests let an append wait for replicas.
const REPLICA_TIMEOUT: Duration = Duration::from_millis(300);

fn history(broker: &RedisBroker) -> &dyn History {
    broker.history().expect("the Redis broker has a history")
}

async fn append(broker: &RedisBroker, channel: &str, payload: &str) -> Offset {
    history(broker)
        .append(channel, Bytes::from(payload.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("append {payload:?}: {e}"))
}

async fn append_error(broker: &RedisBroker, channel: &str, payload: &str) -> BrokerError {
    match history(broker)
        .append(channel, Bytes::from(payload.to_owned()))
        .await
    {
        Ok(offset) => panic!("append {payload:?} was acknowledged at {offset} without a replica"),
        Err(e) => e,
    }
}

/// Appends `payload` until an append succeeds (the broker may still be reconnecting after a
/// restart), within the conformance deadline.
async fn append_eventually(broker: &RedisBroker, channel: &str, payload: &str) -> Offset {
    let deadline = Instant::now() + sidecast_testkit::conformance::DEADLINE;
    loop {
        match history(broker)
            .append(channel, Bytes::from(payload.to_owned()))
            .await
        {
            Ok(offset) => return offset,
            Err(e) => assert!(
                Instant::now() < deadline,
                "append {payload:?} still fails: {e}"
            ),
        }
        sleep(Duration::from_millis(20)).await;
    }
}

fn replicated(url: &str) -> RedisOptions {
    RedisOptions {
        min_replicas: 1,
        replica_timeout: REPLICA_TIMEOUT,
        ..options(url)
    }
}

#[tokio::test]
async fn appends_wait_for_a_replica_and_fail_without_one() {
    let master = RedisServer::start_local().await;
    let mut replica = master.start_replica().await;
    let broker = connect(replicated(master.url())).await;
    let channel = unique_channel("replicated");

    let first = append(&broker, &channel, "with a replica").await;
    // Concurrent appends share WAITs (one per batch): all are acknowledged, in offset order of
    // their arrival at Redis.
    let appends: Vec<_> = (0..200)
        .map(|i| {
            let broker = broker.clone();
            let channel = channel.clone();
            tokio::spawn(async move { append(&broker, &channel, &format!("batch {i}")).await })
        })
        .collect();
    for task in appends {
        assert!(task.await.unwrap() > first);
    }

    // A replica that stops acknowledging (frozen): the append fails after about the replica
    // time-out, transiently, naming the setting.
    replica.pause();
    let started = Instant::now();
    let error = append_error(&broker, &channel, "replica frozen").await;
    let took = started.elapsed();
    assert!(
        matches!(
            error,
            BrokerError::Unreplicated {
                acknowledged: 0,
                asked: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.is_transient(), "{error}");
    assert!(error.to_string().contains("min_replicas"), "{error}");
    assert!(
        took >= REPLICA_TIMEOUT && took < REPLICA_TIMEOUT + Duration::from_millis(700),
        "failed after {took:?}, the replica time-out is {REPLICA_TIMEOUT:?}"
    );
    // WAIT runs on a connection of its own: publishes do not queue behind it.
    let waiting = {
        let broker = broker.clone();
        let channel = channel.clone();
        tokio::spawn(async move { history(&broker).append(&channel, Bytes::new()).await })
    };
    let started = Instant::now();
    broker
        .publish(&channel, Bytes::from_static(b"pub/sub"))
        .await
        .unwrap();
    assert!(
        started.elapsed() < REPLICA_TIMEOUT / 2,
        "a publish waited {:?} behind a WAIT",
        started.elapsed()
    );
    assert!(waiting.await.unwrap().is_err());

    replica.resume();
    master.await_replicas(1).await;
    append(&broker, &channel, "replica back").await;

    // A replica that is gone.
    replica.stop().await;
    let started = Instant::now();
    let error = append_error(&broker, &channel, "replica stopped").await;
    assert!(error.is_transient(), "{error}");
    assert!(
        started.elapsed() < REPLICA_TIMEOUT + Duration::from_millis(700),
        "failed after {:?}",
        started.elapsed()
    );
    broker.close().await;
}

#[tokio::test]
async fn min_replicas_is_checked_against_the_publish_timeout() {
    let master = RedisServer::start_local().await;
    let options = RedisOptions {
        replica_timeout: Duration::from_secs(5),
        ..replicated(master.url())
    };
    let error = RedisBroker::connect(options).await.unwrap_err();
    assert!(matches!(error, BrokerError::Config { .. }), "{error}");
    assert!(error.to_string().contains("publish_timeout"), "{error}");
}

/// `before-0`, `missed-1`, `missed-2`, a restart without persistence, `after-0..2`: the offset of
/// `before-0` is not in the new history, and a read after it must not pass `after-0..2` off as
/// everything that followed it.
#[tokio::test]
async fn an_offset_from_before_a_wipe_is_unknown() {
    let mut server = RedisServer::start_local().await;
    let broker = connect(options(server.url())).await;
    let channel = unique_channel("wiped");
    let before = append(&broker, &channel, "before-0").await;
    append(&broker, &channel, "missed-1").await;
    append(&broker, &channel, "missed-2").await;

    server.restart().await;
    // No stream at all.
    let replay = loop {
        match history(&broker).read_after(&channel, &before, 10).await {
            Ok(replay) => break replay,
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(replay, Replay::Unknown, "the stream is gone");
    assert_eq!(history(&broker).losses_detected(), 1);

    for i in 0..3 {
        append_eventually(&broker, &channel, &format!("after-{i}")).await;
    }
    let replay = history(&broker)
        .read_after(&channel, &before, 10)
        .await
        .unwrap();
    assert_eq!(
        replay,
        Replay::Unknown,
        "the entries after it are not all there"
    );
    let counted = history(&broker).losses_detected();
    assert_eq!(counted, 2, "the new stream's epoch is a new finding");
    history(&broker)
        .read_after(&channel, &before, 10)
        .await
        .unwrap();
    assert_eq!(
        history(&broker).losses_detected(),
        counted,
        "the same loss is counted once"
    );

    // Trimming after the wipe does not make the old offset look trimmed: the epoch tells.
    let key = format!("{DEFAULT_HISTORY_KEY_PREFIX}{channel}");
    assert_eq!(
        server
            .command(&["XTRIM", &key, "MAXLEN", "0"])
            .await
            .unwrap(),
        ":3"
    );
    append(&broker, &channel, "after-3").await;
    assert_eq!(
        history(&broker)
            .read_after(&channel, &before, 10)
            .await
            .unwrap(),
        Replay::Unknown
    );
    // The zero id is before every entry of every life of the stream: the whole history, as
    // after the start "0" (here trimmed, by the XTRIM above), never taken for an offset of an
    // earlier life.
    let zero = history(&broker)
        .read_after(&channel, &Offset::from_pair(0, 0), 10)
        .await
        .unwrap();
    let start = history(&broker)
        .read_after(&channel, &Offset::START, 10)
        .await
        .unwrap();
    assert_eq!(zero, Replay::Trimmed);
    assert_eq!(zero, start);
    broker.close().await;
}

#[tokio::test]
async fn an_entry_missing_without_trimming_is_unknown_and_present_ones_still_replay() {
    let server = RedisServer::start_local().await;
    let broker = connect(options(server.url())).await;
    let channel = unique_channel("gap");
    let first = append(&broker, &channel, "0").await;
    let second = append(&broker, &channel, "1").await;
    let third = append(&broker, &channel, "2").await;
    let replay = history(&broker)
        .read_after(&channel, &first, 10)
        .await
        .unwrap();
    let Replay::Entries(entries) = replay else {
        panic!("{replay:?}")
    };
    assert_eq!(
        entries.iter().map(|e| e.offset.clone()).collect::<Vec<_>>(),
        [second.clone(), third]
    );
    // An entry removed with XDEL is accounted for (max-deleted-entry-id): trimmed, not lost.
    let key = format!("{DEFAULT_HISTORY_KEY_PREFIX}{channel}");
    let (ms, seq) = second.to_pair().unwrap();
    let id = format!("{ms}-{seq}");
    assert_eq!(server.command(&["XDEL", &key, &id]).await.unwrap(), ":1");
    let replay = history(&broker)
        .read_after(&channel, &second, 10)
        .await
        .unwrap();
    assert_eq!(replay, Replay::Trimmed, "deleted with XDEL: trimmed");
    assert_eq!(history(&broker).losses_detected(), 0);
    // An offset that lies between entries and never was one (forged) is not taken either.
    let forged = Offset::from_pair(ms, seq + 1_000_000);
    assert_eq!(
        history(&broker)
            .read_after(&channel, &forged, 10)
            .await
            .unwrap(),
        Replay::Unknown
    );
    broker.close().await;
}

async fn next(subscription: &mut sidecast_core::HistorySubscription) -> HistoryEntry {
    timeout(sidecast_testkit::conformance::DEADLINE, subscription.recv())
        .await
        .expect("an entry within the deadline")
        .expect("the subscription is open")
}

#[tokio::test]
async fn a_history_subscription_starts_over_on_a_wiped_stream() {
    let mut server = RedisServer::start_local().await;
    let broker = connect(options(server.url())).await;
    let channel = unique_channel("reader");
    let before = append(&broker, &channel, "before").await;
    let mut subscription = history(&broker)
        .subscribe_from(&channel, &Offset::START)
        .await
        .unwrap();
    let entry = next(&mut subscription).await;
    assert_eq!(entry.offset, before);

    server.restart().await;
    // An entry with an id far below the one delivered (a server whose clock is behind): it must
    // be delivered, not skipped for being "already seen".
    let key = format!("{DEFAULT_HISTORY_KEY_PREFIX}{channel}");
    assert_eq!(
        server
            .command(&["XADD", &key, "1-1", "p", "low"])
            .await
            .unwrap(),
        "$3"
    );
    let entry = next(&mut subscription).await;
    assert_eq!(entry.payload, Bytes::from_static(b"low"));
    assert_eq!(entry.offset, Offset::from_pair(1, 1));
    let after = append_eventually(&broker, &channel, "after").await;
    let entry = next(&mut subscription).await;
    assert_eq!(entry.offset, after);
    eventually("the loss counted", || {
        history(&broker).losses_detected() >= 1
    })
    .await;
    broker.close().await;
}

/// A stream that lives on but lost its last entries, as after a failover to a replica that
/// lagged: the node's subscription finds it when it reconnects, and a client whose offset is
/// still in the stream but who missed the lost entries is told `Unknown` too.
#[tokio::test]
async fn entries_lost_after_a_client_offset_are_found() {
    let server = RedisServer::start_local().await;
    let broker = connect(options(server.url())).await;
    let channel = unique_channel("shortened");
    let first = append(&broker, &channel, "e1").await;
    let mut subscription = history(&broker)
        .subscribe_from(&channel, &Offset::START)
        .await
        .unwrap();
    assert_eq!(next(&mut subscription).await.offset, first);
    append(&broker, &channel, "e2").await;
    let third = append(&broker, &channel, "e3").await;
    next(&mut subscription).await;
    assert_eq!(next(&mut subscription).await.offset, third);

    // The stream now ends at e1, in the same epoch: what a replica that had only e1 would hold.
    let key = format!("{DEFAULT_HISTORY_KEY_PREFIX}{channel}");
    let (ms, seq) = first.to_pair().unwrap();
    assert_eq!(server.command(&["DEL", &key]).await.unwrap(), ":1");
    server
        .command(&["XADD", &key, &format!("{ms}-{seq}"), "p", "e1"])
        .await
        .unwrap();
    // Every connection drops, as in a failover.
    let killed = server
        .command(&["CLIENT", "KILL", "TYPE", "normal"])
        .await
        .unwrap();
    assert!(killed.starts_with(':'), "{killed}");
    eventually("the subscription finds the loss", || {
        history(&broker).losses_detected() == 1
    })
    .await;

    let replay = loop {
        match history(&broker).read_after(&channel, &first, 10).await {
            Ok(replay) => break replay,
            Err(e) => {
                assert!(e.is_transient(), "{e}");
                sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(replay, Replay::Unknown, "e2 and e3 are gone");
    assert_eq!(
        history(&broker)
            .read_after(&channel, &Offset::START, 10)
            .await
            .unwrap(),
        Replay::Unknown
    );
    assert_eq!(
        history(&broker).losses_detected(),
        1,
        "the clients found the loss the node had found"
    );
    // The subscription reads on from where the stream ends.
    let fourth = append_eventually(&broker, &channel, "e4").await;
    assert_eq!(next(&mut subscription).await.offset, fourth);
    broker.close().await;
}
