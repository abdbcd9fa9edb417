//! RedisBroker on a Redis Cluster (`redis+cluster://`, three primaries with a replica each): the
//! conformance suite, the key names (a channel's hash tag), and a SIGKILLed primary that serves
//! the channel's slot, after which publishes, the subscription and the history reader (from its
//! last offset) resume.

mod common;

use std::time::Duration;

use bytes::Bytes;
use sidecast_core::broker::{HistoryEntry, HistorySubscription, Offset};
use sidecast_core::{Broker, BrokerHealth, ChannelSpec, Subscription};
use sidecast_testkit::conformance::{Capabilities, run_all};
use sidecast_testkit::{RedisCluster, unique_channel};
use sidecast_transport_redis::{DEFAULT_HISTORY_KEY_PREFIX, RedisBroker};
use tokio::time::{Instant, sleep, timeout};

/// How long a failover may take to be followed: promotion, then the broker's move.
const FOLLOW: Duration = Duration::from_secs(30);

/// Between two tries of an operation that failed during the switch (no event tells when the
/// new primary serves the slot: the broker is polled).
const RETRY: Duration = Duration::from_millis(20);

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

/// Retries `operation` until it succeeds, asserting that every failure meanwhile is transient.
async fn until_ok<T, F, Fut>(what: &str, operation: F) -> (T, Instant)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, sidecast_core::BrokerError>>,
{
    let deadline = Instant::now() + FOLLOW;
    loop {
        match operation().await {
            Ok(value) => return (value, Instant::now()),
            Err(e) => {
                assert!(
                    e.is_transient(),
                    "{what}: a failover error must be transient: {e}"
                );
                assert!(
                    Instant::now() < deadline,
                    "{what}: nothing succeeded within {FOLLOW:?}: {e}"
                );
                sleep(RETRY).await;
            }
        }
    }
}

/// Publishes `prefix-n` (n = 0, 1, ...) until the subscription receives one of them; returns the
/// message received.
async fn publish_until_received(
    broker: &RedisBroker,
    subscription: &mut Subscription,
    channel: &str,
    prefix: &str,
) -> String {
    let deadline = Instant::now() + FOLLOW;
    for n in 0.. {
        let payload = format!("{prefix}-{n}");
        until_ok("publish", || {
            broker.publish(channel, Bytes::from(payload.clone()))
        })
        .await;
        if let Ok(Some(message)) = timeout(Duration::from_millis(200), subscription.recv()).await {
            return String::from_utf8(message.payload.to_vec()).expect("a UTF-8 payload");
        }
        assert!(
            Instant::now() < deadline,
            "the subscription received nothing within {FOLLOW:?}"
        );
    }
    unreachable!()
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
