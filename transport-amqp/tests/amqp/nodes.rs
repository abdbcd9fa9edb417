//! Several AMQP URLs (the nodes of a cluster, `broker.url = [...]`): a node that does not
//! answer is skipped, and when the node a broker is connected to dies, the broker reconnects to
//! the next URL and keeps publishing and receiving.
//!
//! Two independent RabbitMQ servers stand in for two nodes here: what is checked is the
//! transport's choice of address, which does not depend on the nodes being clustered.

use std::time::Duration;

use crate::common::{after_a_kill, connect, options};
use sidecast_core::{Broker, BrokerHealth};
use sidecast_testkit::conformance::{await_subscribed, next_message, publish_all, subscribed};
use sidecast_testkit::log::CapturedLog;
use sidecast_testkit::process::free_port;
use sidecast_testkit::{RabbitMqServer, eventually, unique_channel};
use tokio::time::Instant;

/// The password of the URLs below, which must show nowhere.
const PASSWORD: &str = "guest";

#[tokio::test]
async fn a_dead_first_address_is_skipped() {
    let server = RabbitMqServer::shared_local().await;
    let dead = format!("amqp://guest:{PASSWORD}@127.0.0.1:{}/%2f", free_port());
    let started = Instant::now();
    let broker = connect(options(&format!("{dead},{}", server.url()))).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a refused address costs no backoff: {:?}",
        started.elapsed()
    );
    assert_eq!(broker.health(), BrokerHealth::Connected);
    let channel = unique_channel("nodes-skip");
    let mut sub = subscribed(&broker, &channel).await;
    publish_all(&broker, &channel, ["through the second address"]).await;
    assert_eq!(
        next_message(&mut sub).await.payload,
        "through the second address".as_bytes()
    );
    let shown = broker.url().to_owned();
    assert!(shown.contains(",amqp://guest:***@"), "{shown}");
}

#[tokio::test]
async fn a_killed_node_is_replaced_by_the_next_address() {
    let log = CapturedLog::global("info");
    let mut first = RabbitMqServer::start_local().await;
    let second = RabbitMqServer::shared_local().await;
    let broker = connect(options(&format!("{},{}", first.url(), second.url()))).await;
    let channel = unique_channel("nodes-kill");
    let mut sub = subscribed(&broker, &channel).await;
    // A node that only ever talks to the second server: what it publishes reaches the broker
    // only once that one moved there.
    let other = connect(options(second.url())).await;

    let (reconnected, delivered) =
        after_a_kill(&broker, &other, &mut sub, &channel, first.kill()).await;
    eprintln!(
        "killed the connected node: connected to the next address after {reconnected:?}, first \
         delivery from it after {delivered:?}"
    );
    let port = second.port();
    eventually("the reconnect names the node it reached", || {
        log.text().lines().any(|line| {
            line.contains("amqp reconnected to a node of the cluster")
                && line.contains(&format!("127.0.0.1:{port}"))
        })
    })
    .await;
    assert!(
        !log.text().contains(&format!(":{PASSWORD}@")),
        "a password was logged"
    );

    // Publishing and receiving through the new node, in order.
    await_subscribed(&broker, &mut sub, &channel).await;
    publish_all(&broker, &channel, (0..10).map(|i| format!("after {i}"))).await;
    for i in 0..10 {
        assert_eq!(
            next_message(&mut sub).await.payload,
            format!("after {i}").as_bytes()
        );
    }
}
