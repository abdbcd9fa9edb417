//! RedisBroker on a Redis Sentinel set (`redis+sentinel://`): the conformance suite, and
//! failovers (a SIGKILL of the master; a demotion that keeps the old master running) that every
//! connection follows.

#![allow(clippy::unwrap_used)]

mod common;

use common::failover::{FOLLOW, publish_until_ok, publish_until_received, until_ok};

use std::time::Duration;

use bytes::Bytes;
use sidecast_core::broker::{HistoryEntry, Offset};
use sidecast_core::{Broker, BrokerHealth, ChannelSpec};
use sidecast_testkit::conformance::{Capabilities, run_all};
use sidecast_testkit::{RedisSentinelSet, unique_channel};
use tokio::time::{Instant, sleep, timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_sentinel_set() {
    let set = RedisSentinelSet::start().await;
    run_all(
        &common::redis(common::options(&set.url())),
        Capabilities::ALL,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_kit_stops_and_starts_a_replica() {
    let mut set = RedisSentinelSet::start().await;
    let master = set.master_addr().await;
    let replica = set
        .node_addrs()
        .into_iter()
        .find(|addr| *addr != master)
        .unwrap();
    set.stop_node(&replica).await;
    assert!(
        set.node(&replica).command(&["PING"]).await.is_err(),
        "a stopped replica refuses connections"
    );
    set.start_node(&replica).await;
    set.wait_until_settled().await;
    assert_eq!(
        set.master_addr().await,
        master,
        "a replica's restart moves no master"
    );
}

async fn next_entry(history: &mut sidecast_core::broker::HistorySubscription) -> HistoryEntry {
    timeout(FOLLOW, history.recv())
        .await
        .expect("the history subscription delivered nothing")
        .expect("the history subscription ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_follows_a_killed_master() {
    let mut set = RedisSentinelSet::start().await;
    let broker = common::connect(common::options(&set.url())).await;
    let first = set.master_addr().await;
    assert_eq!(broker.master().as_deref(), Some(first.as_str()));
    assert_eq!(broker.failovers(), 0);

    let channel = unique_channel("sentinel-kill");
    let stream = unique_channel("sentinel-kill-history");
    let mut subscription = broker
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .unwrap();
    let history = broker.history().unwrap();
    let mut reader = history
        .subscribe_from(&stream, &Offset::START)
        .await
        .unwrap();

    // Before: live messages and history entries flow.
    let before = publish_until_received(&broker, &mut subscription, &channel, "before").await;
    assert!(before.starts_with("before-"), "{before}");
    let mut last = Offset::START;
    for n in 0..3 {
        let offset = history
            .append(&stream, Bytes::from(format!("before-{n}")))
            .await
            .unwrap();
        let entry = next_entry(&mut reader).await;
        assert_eq!(entry.offset, offset);
        assert_eq!(entry.payload, format!("before-{n}").as_bytes());
        last = offset;
    }
    // The replicas have the entries before the kill (asynchronous replication is fast, but
    // `WAIT` makes the test's premise certain).
    assert_eq!(
        set.node(&first)
            .command(&["WAIT", "2", "5000"])
            .await
            .unwrap(),
        ":2"
    );

    let old = set.kill_master().await;
    assert_eq!(old, first);
    let killed = Instant::now();
    let new = set.wait_for_promotion(&old).await;
    let promoted = Instant::now();

    // Publishes succeed again (on the new master), the subscription receives again.
    let published = publish_until_ok(&broker, &channel, "after-first").await;
    let after = publish_until_received(&broker, &mut subscription, &channel, "after").await;
    let delivered = Instant::now();
    assert!(after.starts_with("after"), "{after}");

    // The history reader continues from its last offset on the new master.
    let mut appended = Vec::new();
    for n in 0..3 {
        let (offset, _) = until_ok("append", || {
            history.append(&stream, Bytes::from(format!("after-{n}")))
        })
        .await;
        assert!(offset.as_str() > last.as_str(), "{offset:?} after {last:?}");
        appended.push(offset);
    }
    for (n, offset) in appended.iter().enumerate() {
        let entry = next_entry(&mut reader).await;
        assert_eq!(
            (&entry.offset, &entry.payload[..]),
            (offset, format!("after-{n}").as_bytes()),
            "the reader resumed after {last:?}"
        );
    }

    // Counted once, and the broker names the new master; it reports itself connected again.
    assert_eq!(broker.failovers(), 1);
    assert_eq!(broker.master().as_deref(), Some(new.as_str()));
    sidecast_testkit::eventually("the broker reports itself connected", || {
        broker.health() == BrokerHealth::Connected
    })
    .await;
    eprintln!(
        "kill -> promotion {:?}; promotion -> first successful publish {:?}; \
         promotion -> first delivery {:?}",
        promoted - killed,
        published.saturating_duration_since(promoted),
        delivered - promoted
    );
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_master_is_left_although_it_still_answers() {
    let set = RedisSentinelSet::start().await;
    let broker = common::connect(common::options(&set.url())).await;
    let channel = unique_channel("sentinel-demote");
    let mut subscription = broker
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .unwrap();
    publish_until_received(&broker, &mut subscription, &channel, "before").await;
    let first = set.master_addr().await;
    assert!(
        !application_clients(&set, &first).await.is_empty(),
        "the broker's connections are told apart from Redis' own"
    );

    let old = set.failover().await;
    assert_eq!(old, first);
    let new = set.wait_for_promotion(&old).await;
    publish_until_received(&broker, &mut subscription, &channel, "after").await;
    sidecast_testkit::eventually("the broker follows the new master", || {
        broker.master().as_deref() == Some(new.as_str())
    })
    .await;
    assert_eq!(broker.failovers(), 1);
    // Every connection of the broker left the old master, which is still up (a replica now).
    let deadline = Instant::now() + FOLLOW;
    loop {
        let ours = application_clients(&set, &old).await;
        if ours.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker still has connections to the demoted master: {ours:#?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    broker.close().await;
}

/// The connections to `addr` that are not Redis' own: not the sentinels' (they name theirs),
/// not the replication link (flag `M`), not the `CLIENT LIST` asking.
async fn application_clients(set: &RedisSentinelSet, addr: &str) -> Vec<String> {
    set.client_list(addr)
        .await
        .into_iter()
        .filter(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
                    .unwrap_or_default()
            };
            field("name").is_empty()
                && !field("flags").contains('M')
                && field("cmd") != "client|list"
        })
        .collect()
}
