//! A broker given every node's URL keeps publishing and receiving when the node it is
//! connected to is SIGKILLed: it reconnects to another node (and logs which), and a node that
//! stayed on another RabbitMQ node reaches it again through the cluster.

use crate::common::{connect, options};
use crate::start_cluster;
use sidecast_core::{Broker, BrokerHealth};
use sidecast_testkit::conformance::{
    await_subscribed, first_delivery, next_message, publish_all, subscribed,
};
use sidecast_testkit::log::CapturedLog;
use sidecast_testkit::{eventually, unique_channel};
use tokio::time::Instant;

#[tokio::test]
async fn a_broker_moves_to_another_node_when_its_node_is_killed() {
    let log = CapturedLog::global("info");
    let mut cluster = start_cluster().await;
    // In order: the broker connects to node 0.
    let broker = connect(options(&cluster.url_list())).await;
    let channel = unique_channel("cluster-kill");
    let mut sub = subscribed(&broker, &channel).await;
    // Another node of the deployment, connected to node 2 only.
    let other = connect(options(&cluster.urls()[2])).await;
    await_subscribed(&other, &mut sub, &channel).await;

    cluster.kill(0).await;
    let killed = Instant::now();
    eventually("the broker notices the kill", || {
        broker.health() != BrokerHealth::Connected
    })
    .await;
    eventually("the broker is connected again", || {
        broker.health() == BrokerHealth::Connected
    })
    .await;
    let reconnected = killed.elapsed();
    let delivered = first_delivery(&other, &mut sub, &channel).await - killed;
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
}
