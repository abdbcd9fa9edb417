//! History stream queues with fewer replicas than the cluster has nodes (RabbitMQ refuses a
//! stream consumer on a node without a replica): a broker whose first URL is a node without
//! one moves to a node with one and reads, appends and follows the history there; and a
//! replica deleted under a history subscription's consumer (RabbitMQ cancels it with
//! `basic.cancel`) resumes at the next offset on another node, nothing lost or doubled.

use std::time::Duration;

use bytes::Bytes;
use sidecast_core::broker::{History, HistorySubscription, Offset, Replay};
use sidecast_core::{Broker, BrokerHealth};
use sidecast_testkit::conformance::DEADLINE;
use sidecast_testkit::{RabbitMqCluster, eventually, unique_channel};
use sidecast_transport_amqp::{AmqpBroker, AmqpOptions, DEFAULT_HISTORY_QUEUE_PREFIX};
use tokio::time::{Instant, sleep, timeout};

use crate::common::{connect, options};
use crate::shared_cluster;

/// `options` for the cluster's URLs starting at node `first` (then the next ones, in order),
/// with `replicas` replicas per new stream.
fn from_node(cluster: &RabbitMqCluster, first: usize, replicas: u16) -> AmqpOptions {
    let urls = cluster.urls();
    let list: Vec<String> = (0..urls.len())
        .map(|i| urls[(first + i) % urls.len()].clone())
        .collect();
    AmqpOptions {
        stream_replicas: replicas,
        ..options(&list.join(","))
    }
}

/// The nodes holding a replica of `queue`, once there are `count` of them.
async fn members(cluster: &RabbitMqCluster, queue: &str, count: usize) -> Vec<usize> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let members = cluster.members(queue).await;
        if members.len() == count {
            return members;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} has replicas on {members:?}, not {count} nodes"
        );
        sleep(Duration::from_millis(200)).await;
    }
}

fn history(broker: &AmqpBroker) -> &dyn History {
    broker.history().expect("the AMQP broker has a history")
}

/// Appends `body` through `broker`, which must succeed.
async fn append(broker: &AmqpBroker, channel: &str, body: String) -> Offset {
    history(broker)
        .append(channel, Bytes::from(body))
        .await
        .expect("append")
}

/// The next `count` entries of `sub`, as text.
async fn next_entries(sub: &mut HistorySubscription, count: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let entry = timeout(DEADLINE, sub.recv())
            .await
            .unwrap_or_else(|_| panic!("no entry within {DEADLINE:?} after {got:?}"))
            .expect("the history subscription ended");
        got.push(String::from_utf8(entry.payload.to_vec()).expect("text"));
    }
    got
}

/// Nothing more arrives on `sub` for a moment (no entry delivered twice).
async fn nothing_more(sub: &mut HistorySubscription) {
    if let Ok(Some(entry)) = timeout(Duration::from_millis(500), sub.recv()).await {
        panic!("an extra entry arrived: {:?}", entry.payload);
    }
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("event {n}")).collect()
}

#[tokio::test]
async fn a_broker_whose_first_node_has_no_replica_reads_through_one_that_has() {
    let cluster = shared_cluster().await;
    let channel = unique_channel("replicas");
    let queue = format!("{DEFAULT_HISTORY_QUEUE_PREFIX}{channel}");
    // Declared through node 0 with two replicas: one node holds none.
    let writer = connect(from_node(cluster, 0, 2)).await;
    append(&writer, &channel, "event 0".to_owned()).await;
    let holders = members(cluster, &queue, 2).await;
    let without = (0..3)
        .find(|i| !holders.contains(i))
        .expect("a node without a replica");
    eprintln!("{queue}: replicas on nodes {holders:?}; a broker starts at node {without}");

    let reader = connect(from_node(cluster, without, 2)).await;
    let mut sub = history(&reader)
        .subscribe_from(&channel, &Offset::START)
        .await
        .expect("a history subscription through a node that holds a replica");
    assert_eq!(next_entries(&mut sub, 1).await, numbered(0..1));
    for n in 1..10 {
        append(&writer, &channel, format!("event {n}")).await;
    }
    // Its own appends and reads work too (they read the stream as well).
    for n in 10..20 {
        append(&reader, &channel, format!("event {n}")).await;
    }
    assert_eq!(next_entries(&mut sub, 19).await, numbered(1..20));
    nothing_more(&mut sub).await;
    let Replay::Entries(entries) = history(&reader)
        .read_after(&channel, &Offset::START, 100)
        .await
        .expect("read")
    else {
        panic!("the whole history is known");
    };
    assert_eq!(entries.len(), 20);
    assert!(
        history(&reader)
            .last_offset(&channel)
            .await
            .expect("last offset")
            .is_some()
    );
    assert_eq!(reader.health(), BrokerHealth::Connected);
    reader.close().await;
    writer.close().await;
}

#[tokio::test]
async fn a_replica_deleted_under_a_consumer_resumes_at_the_next_offset_on_another_node() {
    let cluster = shared_cluster().await;
    let channel = unique_channel("replica-cancel");
    let queue = format!("{DEFAULT_HISTORY_QUEUE_PREFIX}{channel}");
    // A replica on every node; the reader connects to node 1, the writer to node 0.
    let writer = connect(from_node(cluster, 0, 3)).await;
    append(&writer, &channel, "event 0".to_owned()).await;
    members(cluster, &queue, 3).await;
    let reader = connect(from_node(cluster, 1, 3)).await;
    let mut sub = history(&reader)
        .subscribe_from(&channel, &Offset::START)
        .await
        .expect("subscribed");
    for n in 1..10 {
        append(&writer, &channel, format!("event {n}")).await;
    }
    assert_eq!(next_entries(&mut sub, 10).await, numbered(0..10));

    // RabbitMQ cancels the consumer on node 1 (basic.cancel); node 1 then refuses a new one.
    let node = cluster.node_name(1).to_owned();
    cluster
        .streams(0, &["delete_replica", &queue, &node])
        .await
        .expect("rabbitmq-streams delete_replica");
    let deleted = Instant::now();
    members(cluster, &queue, 2).await;
    for n in 10..20 {
        append(&writer, &channel, format!("event {n}")).await;
    }
    // No basic.cancel comes (RabbitMQ 3.10.8): the subscription finds out by itself.
    assert_eq!(next_entries(&mut sub, 10).await, numbered(10..20));
    eprintln!(
        "replica of node 1 deleted: the subscription had the ten entries appended after it \
         {:?} later",
        deleted.elapsed()
    );
    nothing_more(&mut sub).await;
    eventually("the reader is connected", || {
        reader.health() == BrokerHealth::Connected
    })
    .await;
    reader.close().await;
    writer.close().await;
}
