//! RedisBroker on a Redis Cluster (`redis+cluster://`, three primaries with a replica each): the
//! conformance suite, the key names (a channel's hash tag), and a SIGKILLed primary that serves
//! the channel's slot, after which publishes, the subscription and the history reader (from its
//! last offset) resume; sharded subscriptions (`SSUBSCRIBE`) across slots that follow a killed
//! and a demoted primary.

#![allow(clippy::unwrap_used)]

mod common;

use common::failover::{FOLLOW, publish_until_received, until_ok};

use std::time::Duration;

use bytes::Bytes;
use sidecast_core::broker::{HistoryEntry, HistorySubscription, Offset};
use sidecast_core::{Broker, BrokerHealth, ChannelSpec, Subscription};
use sidecast_testkit::conformance::{Capabilities, run_all};
use sidecast_testkit::{RedisCluster, unique_channel};
use sidecast_transport_redis::{DEFAULT_HISTORY_KEY_PREFIX, RedisBroker, RedisOptions};
use tokio::time::{Instant, sleep, timeout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_cluster() {
    let cluster = RedisCluster::start().await;
    run_all(
        &common::redis(common::options(&cluster.url())),
        Capabilities::ALL,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channels_history_is_one_hash_tagged_key() {
    let cluster = RedisCluster::start().await;
    let broker = common::connect(common::options(&cluster.url())).await;
    let channel = unique_channel("cluster-key");
    let history = broker.history().unwrap();
    history
        .append(&channel, Bytes::from_static(b"one"))
        .await
        .unwrap();
    let key = format!("{DEFAULT_HISTORY_KEY_PREFIX}{{{channel}}}");
    let primary = cluster.primary_of(&key).await;
    assert_eq!(
        cluster.cli(&primary, &["TYPE", &key]).await.unwrap().trim(),
        "stream",
        "the history of {channel} is the stream {key} on {primary}"
    );
    let untagged = format!("{DEFAULT_HISTORY_KEY_PREFIX}{channel}");
    let owner = cluster.primary_of(&untagged).await;
    assert_eq!(
        cluster
            .cli(&owner, &["EXISTS", &untagged])
            .await
            .unwrap()
            .trim(),
        "0",
        "no key without the hash tag"
    );
    broker.close().await;
}

async fn next_entry(history: &mut HistorySubscription) -> HistoryEntry {
    timeout(FOLLOW, history.recv())
        .await
        .expect("the history subscription delivered nothing")
        .expect("the history subscription ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_subscriptions_and_history_survive_a_killed_primary() {
    let mut cluster = RedisCluster::start().await;
    let broker = common::connect(common::options(&cluster.url())).await;
    let channel = unique_channel("cluster-kill");
    let key = format!("{DEFAULT_HISTORY_KEY_PREFIX}{{{channel}}}");
    let mut subscription = broker
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .unwrap();
    let history = broker.history().unwrap();
    let mut reader = history
        .subscribe_from(&channel, &Offset::START)
        .await
        .unwrap();

    let before = publish_until_received(&broker, &mut subscription, &channel, "before").await;
    assert!(before.starts_with("before-"), "{before}");
    let mut last = Offset::START;
    for n in 0..3 {
        let offset = history
            .append(&channel, Bytes::from(format!("before-{n}")))
            .await
            .unwrap();
        let entry = next_entry(&mut reader).await;
        assert_eq!(
            (&entry.offset, &entry.payload[..]),
            (&offset, format!("before-{n}").as_bytes())
        );
        last = offset;
    }
    // The replica has the entries before the kill (`WAIT` makes the test's premise certain).
    let first = cluster.primary_of(&key).await;
    assert_eq!(
        cluster
            .cli(&first, &["WAIT", "1", "5000"])
            .await
            .unwrap()
            .trim(),
        "1"
    );

    // Both the history key's slot and the channel's own (PUBLISH routes by the channel) are
    // served by the killed node in this test only if they share it; the history's is what counts.
    let old = cluster.kill_primary_of(&key).await;
    assert_eq!(old, first);
    let killed = Instant::now();
    let new = cluster.wait_for_promotion(&key, &old).await;
    let promoted = Instant::now();
    assert_ne!(new, old);

    let ((), published) = until_ok("publish", || {
        broker.publish(&channel, Bytes::from_static(b"after-first"))
    })
    .await;
    let after = publish_until_received(&broker, &mut subscription, &channel, "after").await;
    let delivered = Instant::now();
    assert!(after.starts_with("after"), "{after}");

    // The history reader continues from its last offset on the new primary.
    let mut appended = Vec::new();
    for n in 0..3 {
        let (offset, _) = until_ok("append", || {
            history.append(&channel, Bytes::from(format!("after-{n}")))
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

/// How many shard subscribers of `channel` the node at `addr` has (`PUBSUB SHARDNUMSUB`).
async fn shard_subscribers(cluster: &RedisCluster, addr: &str, channel: &str) -> u64 {
    let output = cluster
        .cli(addr, &["PUBSUB", "SHARDNUMSUB", channel])
        .await
        .unwrap_or_default();
    output
        .lines()
        .last()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the node at `addr` has `count` shard subscribers of `channel`.
async fn until_shard_subscribers(cluster: &RedisCluster, addr: &str, channel: &str, count: u64) {
    let deadline = Instant::now() + FOLLOW;
    loop {
        let now = shard_subscribers(cluster, addr, channel).await;
        if now == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} has {now} shard subscribers of {channel}, not {count}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// A broker with sharded `a` and `b` (on different primaries) and a subscription to both.
async fn sharded_pair(
    cluster: &RedisCluster,
    label: &str,
) -> (RedisBroker, Subscription, String, String) {
    let a = unique_channel(&format!("{label}-a"));
    let owner_a = cluster.primary_of(&a).await;
    let b = loop {
        let b = unique_channel(&format!("{label}-b"));
        if cluster.primary_of(&b).await != owner_a {
            break b;
        }
    };
    assert_ne!(RedisCluster::slot_of(&a), RedisCluster::slot_of(&b));
    let options = RedisOptions {
        sharded_channels: vec![a.clone(), b.clone()],
        ..common::options(&cluster.url())
    };
    let broker = common::connect(options).await;
    let mut subscription = broker
        .subscribe(&[ChannelSpec::exact(&a), ChannelSpec::exact(&b)])
        .await
        .unwrap();
    // Sharded indeed: each channel's slot owner counts one shard subscriber, and it arrives.
    for channel in [&a, &b] {
        let owner = cluster.primary_of(channel).await;
        assert_eq!(
            shard_subscribers(cluster, &owner, channel).await,
            1,
            "{channel} on {owner}"
        );
        let got = publish_until_received(&broker, &mut subscription, channel, "before").await;
        assert!(got.starts_with("before-"), "{got}");
    }
    (broker, subscription, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_subscriptions_across_slots_survive_a_killed_primary() {
    let mut cluster = RedisCluster::start().await;
    let (broker, mut subscription, a, b) = sharded_pair(&cluster, "sharded-kill").await;

    let old = cluster.kill_primary_of(&a).await;
    let new = cluster.wait_for_promotion(&a, &old).await;
    for channel in [&a, &b] {
        let got = publish_until_received(&broker, &mut subscription, channel, "after").await;
        assert!(got.starts_with("after-"), "{channel}: {got}");
    }
    until_shard_subscribers(&cluster, &new, &a, 1).await;
    let owner_b = cluster.primary_of(&b).await;
    assert_eq!(shard_subscribers(&cluster, &owner_b, &b).await, 1);
    sidecast_testkit::eventually("the broker reports itself connected", || {
        broker.health() == BrokerHealth::Connected
    })
    .await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_subscriptions_leave_a_demoted_primary() {
    let cluster = RedisCluster::start().await;
    let (broker, mut subscription, a, b) = sharded_pair(&cluster, "sharded-demote").await;

    // A planned failover: the replica of a's primary takes over; the old primary stays up as a
    // replica, with its connections open.
    let old = cluster.primary_of(&a).await;
    let nodes = cluster.nodes().await.unwrap();
    let old_id = nodes.iter().find(|n| n.addr == old).unwrap().id.clone();
    let replica = nodes
        .iter()
        .find(|n| n.primary_id.as_deref() == Some(old_id.as_str()))
        .unwrap()
        .addr
        .clone();
    let answer = cluster
        .cli(&replica, &["CLUSTER", "FAILOVER"])
        .await
        .unwrap();
    assert!(answer.contains("OK"), "{answer}");
    let new = cluster.wait_for_promotion(&a, &old).await;
    assert_eq!(new, replica);

    for channel in [&a, &b] {
        let got = publish_until_received(&broker, &mut subscription, channel, "after").await;
        assert!(got.starts_with("after-"), "{channel}: {got}");
    }
    until_shard_subscribers(&cluster, &new, &a, 1).await;
    until_shard_subscribers(&cluster, &old, &a, 0).await;
    broker.close().await;
}

/// `CLUSTER SETSLOT slot state id` on the node at `addr`, which must answer OK.
async fn setslot(cluster: &RedisCluster, addr: &str, slot: &str, state: &str, id: &str) {
    let answer = cluster
        .cli(addr, &["CLUSTER", "SETSLOT", slot, state, id])
        .await
        .unwrap();
    assert!(answer.contains("OK"), "{addr}: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_subscriptions_follow_a_migrated_slot() {
    let cluster = RedisCluster::start().await;
    let (broker, mut subscription, a, b) = sharded_pair(&cluster, "sharded-migrate").await;

    // Resharding: a's slot moves from its primary to another one (the slot holds no key, so
    // there is nothing to MIGRATE), as `redis-cli --cluster reshard` does it.
    let slot = RedisCluster::slot_of(&a).to_string();
    let nodes = cluster.nodes().await.unwrap();
    let old = cluster.primary_of(&a).await;
    let source = nodes.iter().find(|n| n.addr == old).unwrap();
    let target = nodes.iter().find(|n| n.primary && n.addr != old).unwrap();
    setslot(&cluster, &target.addr, &slot, "IMPORTING", &source.id).await;
    setslot(&cluster, &source.addr, &slot, "MIGRATING", &target.id).await;
    setslot(&cluster, &target.addr, &slot, "NODE", &target.id).await;
    setslot(&cluster, &source.addr, &slot, "NODE", &target.id).await;
    for other in nodes
        .iter()
        .filter(|n| n.primary && n.addr != source.addr && n.addr != target.addr)
    {
        setslot(&cluster, &other.addr, &slot, "NODE", &target.id).await;
    }
    let deadline = Instant::now() + FOLLOW;
    while cluster.primary_of(&a).await != target.addr {
        assert!(Instant::now() < deadline, "the slot of {a} did not move");
        sleep(Duration::from_millis(50)).await;
    }

    for channel in [&a, &b] {
        let got = publish_until_received(&broker, &mut subscription, channel, "after").await;
        assert!(got.starts_with("after-"), "{channel}: {got}");
    }
    until_shard_subscribers(&cluster, &target.addr, &a, 1).await;
    until_shard_subscribers(&cluster, &old, &a, 0).await;
    broker.close().await;
}

#[tokio::test]
async fn a_malformed_cluster_address_is_refused_without_its_password() {
    let error = RedisBroker::connect(RedisOptions::new("redis+cluster://u:hunter2@h1:7000/3"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, sidecast_core::BrokerError::Config { .. }),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(shown.contains("database 0 only"), "{shown}");
    assert!(shown.contains("redis+cluster://u:***@h1:7000/3"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");

    let link = sidecast_transport_redis::RedisLink::new(
        "redis+cluster://u:hunter2@h1:x",
        Duration::from_secs(1),
    )
    .unwrap_err()
    .to_string();
    assert!(link.contains("seed node address"), "{link}");
    assert!(!link.contains("hunter2"), "{link}");
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_transient_error() {
    // A port nothing listens on (the test kit's free port, unused).
    let port = sidecast_testkit::process::free_port();
    let error = RedisBroker::connect(common::options(&format!(
        "redis+cluster://:hunter2@127.0.0.1:{port}"
    )))
    .await
    .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_probes_come_back_and_are_not_delivered() {
    let cluster = RedisCluster::start().await;
    let channel = unique_channel("sharded-probe");
    let probe_interval = Duration::from_millis(200);
    let options = RedisOptions {
        sharded_channels: vec![channel.clone()],
        probe_interval,
        ..common::options(&cluster.url())
    };
    let broker = common::connect(options).await;
    let mut subscription = broker
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .unwrap();
    // The probe is a shard channel of the same slot, beside the channel, on its owner.
    let owner = cluster.primary_of(&channel).await;
    let shard_channels = cluster
        .cli(&owner, &["PUBSUB", "SHARDCHANNELS"])
        .await
        .unwrap();
    assert!(
        shard_channels.contains(&format!("{{{channel}}}sidecast:probe:")),
        "{shard_channels}"
    );
    // Several probe rounds: each probe comes back, so the subscription is never found silent.
    sleep(probe_interval * 6).await;
    let report = broker.connection_report().unwrap();
    assert_eq!(report.silent_subscriptions, 0, "{report:?}");
    // The probes never reach the consumer: the first message is the one published.
    broker
        .publish(&channel, Bytes::from_static(b"only"))
        .await
        .unwrap();
    let message = timeout(FOLLOW, subscription.recv()).await.unwrap().unwrap();
    assert_eq!(
        (message.channel.as_str(), &message.payload[..]),
        (channel.as_str(), &b"only"[..])
    );
    broker.close().await;
}
