//! A three-node RabbitMQ cluster ([`sidecast_testkit::RabbitMqCluster`]) losing a node: a
//! broker given every node's URL keeps publishing and receiving when the node it is connected
//! to is SIGKILLed (it reconnects to another node, and logs which), and a node that stayed on
//! another RabbitMQ node reaches it again through the cluster; the killed node comes back into
//! the cluster, and the kit tells which node leads a stream queue.
//!
//! A test binary of its own: it kills nodes, so it cannot share the conformance checks'
//! cluster, and one cluster per binary keeps the run short.

#[path = "amqp/common.rs"]
#[allow(dead_code)]
mod common;

use common::{after_a_kill, connect, options};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use sidecast_testkit::RabbitMqCluster;
use sidecast_testkit::conformance::{await_subscribed, next_message, publish_all, subscribed};
use sidecast_testkit::log::CapturedLog;
use sidecast_testkit::{eventually, unique_channel};
use tokio::time::Instant;

#[tokio::test]
async fn a_broker_moves_to_another_node_when_its_node_is_killed() {
    let log = CapturedLog::global("info");
    let started = Instant::now();
    let mut cluster = RabbitMqCluster::start().await;
    eprintln!(
        "three-node RabbitMQ cluster started in {:?}",
        started.elapsed()
    );
    // In order: the broker connects to node 0.
    let broker = connect(options(&cluster.url_list())).await;
    let channel = unique_channel("cluster-kill");
    let mut sub = subscribed(&broker, &channel).await;
    // Another node of the deployment, connected to node 2 only.
    let other = connect(options(&cluster.urls()[2])).await;
    await_subscribed(&other, &mut sub, &channel).await;

    let (reconnected, delivered) =
        after_a_kill(&broker, &other, &mut sub, &channel, cluster.kill(0)).await;
    eprintln!(
        "node 0 SIGKILLed: the broker connected to another node after {reconnected:?}; first \
         message from a node on node 2 delivered after {delivered:?}"
    );
    let port = cluster.port(1);
    eventually(
        "the reconnect names the node it reached (node 1, the next)",
        || {
            log.text().lines().any(|line| {
                line.contains("amqp reconnected to a node of the cluster")
                    && line.contains(&format!("127.0.0.1:{port}"))
            })
        },
    )
    .await;
    assert!(
        !log.text().contains("guest:guest@"),
        "a password was logged"
    );

    // Publishing through the new node reaches both subscribers, in order.
    let mut other_sub = subscribed(&other, &channel).await;
    await_subscribed(&broker, &mut other_sub, &channel).await;
    await_subscribed(&broker, &mut sub, &channel).await;
    publish_all(&broker, &channel, (0..10).map(|i| format!("after {i}"))).await;
    for i in 0..10 {
        let want = format!("after {i}");
        assert_eq!(next_message(&mut sub).await.payload, want.as_bytes());
        assert_eq!(next_message(&mut other_sub).await.payload, want.as_bytes());
    }

    // The killed node comes back into the cluster (restart awaits three running nodes).
    let started = Instant::now();
    cluster.restart(0).await;
    eprintln!("node 0 back in the cluster after {:?}", started.elapsed());
    assert_eq!(cluster.running_nodes().await, 3);

    // A stream queue declared through node 2 has a leader among the three.
    let queue = format!("{channel}.stream");
    declare_stream(&cluster.urls()[2], &queue).await;
    let mut leader = None;
    let deadline = Instant::now() + sidecast_testkit::conformance::DEADLINE;
    while leader.is_none() && Instant::now() < deadline {
        leader = cluster.leader(&queue).await;
    }
    let leader = leader.expect("the stream queue has a leader");
    assert!(leader < 3, "{leader}");
    eprintln!("stream queue {queue} led by node {leader}");
}

/// Declares stream queue `queue` through the node at `url`.
async fn declare_stream(url: &str, queue: &str) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .expect("declare the stream queue");
    let _ = connection.close(200, "done".into()).await;
}
