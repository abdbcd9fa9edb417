//! AmqpBroker through RabbitMQ outages: an orderly restart and a crash while nodes are
//! subscribed, and publishing while RabbitMQ is down.
//!
//! The known failure of other implementations, a node that can publish after a RabbitMQ restart
//! but never receives again, is what these tests rule out. They stop RabbitMQ, so they start a
//! private server (`RabbitMqServer::start_local`), even when `SIDECAST_TEST_AMQP_URL` is set.
//!
//! What the transport logs is captured by a global subscriber and checked per server (each has
//! its own port in the logged URL), so that tests running in parallel do not disturb the counts.

use std::time::Duration;

use crate::common::connect;
use bytes::Bytes;
use sidecast_core::{Broker, BrokerError, BrokerHealth, ChannelSpec, Subscription};
use sidecast_testkit::conformance::{
    DEADLINE, await_subscribed, first_delivery, next_message, publish_all, subscribed,
    within_deadline,
};
use sidecast_testkit::log::CapturedLog;
use sidecast_testkit::{RabbitMqServer, await_reconnecting, eventually, unique_channel};
use sidecast_transport_amqp::{AmqpBroker, AmqpOptions};
use tokio::time::{Instant, sleep, timeout};

/// Everything logged at `info` and above by this test binary, from every thread. Call it
/// before creating brokers.
fn captured_log() -> &'static CapturedLog {
    // A global subscriber: the brokers' tasks run on runtime threads, and lapin logs from its
    // own I/O threads.
    CapturedLog::global("info")
}

/// How RabbitMQ goes away.
#[derive(Debug, Clone, Copy)]
enum Outage {
    /// `SIGTERM`: RabbitMQ closes every connection with `CONNECTION_FORCED`, as in
    /// `systemctl restart rabbitmq-server` or a rolling upgrade.
    OrderlyRestart,
    /// `SIGKILL`: connections just break, as in a crash, an OOM kill or a lost VM.
    Crash,
}

/// A node: a broker with a subscription to `channel`.
struct Node {
    broker: AmqpBroker,
    sub: Subscription,
}

async fn subscribed_node(options: AmqpOptions, channel: &str) -> Node {
    let broker = connect(options).await;
    let sub = subscribed(&broker, channel).await;
    Node { broker, sub }
}

/// Publishing while RabbitMQ is down returns quickly with a transient error, instead of hanging
/// or waiting for the reconnection.
async fn publish_fails_fast(broker: &AmqpBroker, channel: &str, outage: impl std::fmt::Debug) {
    let started = Instant::now();
    let error = sidecast_testkit::conformance::publish_error(
        broker,
        channel,
        &format!("{outage:?}: publish during the outage"),
    )
    .await;
    let took = started.elapsed();
    assert!(
        error.is_transient(),
        "{outage:?}: expected a transient error, got: {error}"
    );
    // Fast: no connection attempt is made, nothing waits for RabbitMQ.
    assert!(
        took < Duration::from_millis(500),
        "{outage:?}: publish during the outage took {took:?}"
    );
}

/// Takes RabbitMQ down and up again under two subscribed nodes and a publish-only node, and
/// checks that everybody recovers: health goes Reconnecting then Connected, publishing fails
/// fast meanwhile, and both nodes receive what is published afterwards, in order.
async fn outage_and_recovery(
    server: &mut RabbitMqServer,
    nodes: &mut [Node],
    publisher: &AmqpBroker,
    channel: &str,
    outage: Outage,
) {
    for node in nodes.iter() {
        assert_eq!(node.broker.health(), BrokerHealth::Connected);
    }
    match outage {
        Outage::OrderlyRestart => server.stop().await,
        Outage::Crash => server.kill().await,
    }
    for (i, node) in nodes.iter().enumerate() {
        let seen_attempt = await_reconnecting(
            &node.broker,
            &format!("{outage:?}: node {i} reports Reconnecting"),
            |_| true,
        )
        .await;
        assert!(seen_attempt >= 1, "attempts count from 1");
    }
    eventually(&format!("{outage:?}: the publisher notices"), || {
        !publisher.health().is_connected()
    })
    .await;
    publish_fails_fast(publisher, channel, outage).await;
    publish_fails_fast(&nodes[0].broker, channel, outage).await;

    server.restart().await;
    let back_up = Instant::now();
    for (i, node) in nodes.iter().enumerate() {
        eventually(&format!("{outage:?}: node {i} Connected again"), || {
            node.broker.health() == BrokerHealth::Connected
        })
        .await;
    }
    let healthy_after = back_up.elapsed();

    // The first message through the new queue of the first node, published by the other
    // node: the recovery time a user sees.
    let (first, rest) = nodes.split_at_mut(1);
    let delivered = first_delivery(&rest[0].broker, &mut first[0].sub, channel).await;
    eprintln!(
        "{outage:?}: health Connected {healthy_after:?} and first message delivered {:?} after \
         RabbitMQ accepted connections again",
        delivered - back_up
    );
    eventually(&format!("{outage:?}: the publisher reconnects"), || {
        publisher.health().is_connected()
    })
    .await;

    // And traffic flows normally again, to every node, in order, from every publisher.
    for node in nodes.iter_mut() {
        await_subscribed(publisher, &mut node.sub, channel).await;
    }
    publish_all(publisher, channel, (0..20).map(|i| format!("steady {i}"))).await;
    for (n, node) in nodes.iter_mut().enumerate() {
        for i in 0..20 {
            let message = next_message(&mut node.sub).await;
            assert_eq!(
                message.payload,
                format!("steady {i}").as_bytes(),
                "{outage:?}: node {n} lost or reordered messages after recovery"
            );
        }
        assert_eq!(node.broker.health(), BrokerHealth::Connected);
    }
}

#[tokio::test]
async fn a_rabbitmq_restart_or_crash_never_leaves_a_node_deaf() {
    captured_log();
    let mut server = RabbitMqServer::start_local().await;
    let channel = unique_channel("restart");
    // Production defaults (backoff 100 ms doubling to 5 s), so that the recovery times printed
    // are the ones users get.
    let defaults = AmqpOptions::new(server.url());
    let mut nodes = vec![
        subscribed_node(defaults.clone(), &channel).await,
        subscribed_node(defaults.clone(), &channel).await,
    ];
    let publisher = connect(defaults).await;

    outage_and_recovery(
        &mut server,
        &mut nodes,
        &publisher,
        &channel,
        Outage::OrderlyRestart,
    )
    .await;
    // A second outage on the same brokers: recovery is not a one-off.
    outage_and_recovery(&mut server, &mut nodes, &publisher, &channel, Outage::Crash).await;

    for node in &nodes {
        node.broker.close().await;
    }
    publisher.close().await;
}

/// RabbitMQ stops answering without closing anything (`SIGSTOP`: a hung VM, a partition that
/// drops packets): publishing times out instead of hanging, heartbeats notice the silence, and
/// the node reconnects and receives again once RabbitMQ answers.
#[tokio::test]
async fn an_unresponsive_rabbitmq_is_noticed_through_heartbeats() {
    let mut server = RabbitMqServer::start_local().await;
    let options = AmqpOptions {
        heartbeat: Duration::from_secs(1),
        publish_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
        ..crate::common::options(server.url())
    };
    let broker = connect(options).await;
    let channel = unique_channel("paused");
    let mut sub = subscribed(&broker, &channel).await;

    server.pause();
    let paused_at = Instant::now();
    // SIGSTOP lands asynchronously: a publish racing it may still be confirmed. Once RabbitMQ is
    // frozen, a publish must fail with the publish time-out rather than hang.
    let error = timeout(DEADLINE, async {
        loop {
            match broker
                .publish(&channel, Bytes::from_static(b"unanswered"))
                .await
            {
                Ok(()) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(error) => return error,
            }
        }
    })
    .await
    .expect("publish to a frozen RabbitMQ must not hang");
    assert!(
        matches!(error, BrokerError::Timeout { .. }),
        "expected the publish time-out, got: {error}"
    );
    eventually("Reconnecting after missed heartbeats", || {
        !broker.health().is_connected()
    })
    .await;
    eprintln!(
        "frozen RabbitMQ noticed {:?} after it stopped answering (heartbeat 1 s)",
        paused_at.elapsed()
    );
    publish_fails_fast(&broker, &channel, "frozen RabbitMQ").await;
    await_reconnecting(
        &broker,
        "a few reconnect attempts against the frozen server",
        |attempt| attempt >= 3,
    )
    .await;

    server.resume();
    eventually("Connected once RabbitMQ answers again", || {
        broker.health().is_connected()
    })
    .await;
    await_subscribed(&broker, &mut sub, &channel).await;

    // Reconnect attempts that timed out while RabbitMQ was frozen must not come back to life
    // as connections nobody uses once it answers again.
    sleep(Duration::from_secs(2)).await;
    let open = open_connections(&server).await;
    assert_eq!(open.len(), 1, "one connection for one broker: {open:?}");

    // Dropping the broker without close() closes its connection too.
    drop(sub);
    drop(broker);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let open = open_connections(&server).await;
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections left after the broker was dropped: {open:?}"
        );
        sleep(Duration::from_millis(200)).await;
    }
}

/// The client connections RabbitMQ has open, as `rabbitmqctl list_connections` shows them.
async fn open_connections(server: &RabbitMqServer) -> Vec<String> {
    server
        .ctl(&["list_connections", "--quiet", "--no-table-headers", "name"])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Also checks what is logged: an outage with several failed reconnect attempts is one
/// warning and one notice, with the password redacted.
#[tokio::test]
async fn subscribing_during_an_outage_fails_fast_and_recovers_afterwards() {
    let log = captured_log();
    // A user with a password, to check that it never reaches the log.
    let mut server = RabbitMqServer::start_local_with_config(&[
        "default_user = logger",
        "default_pass = log-s3cret",
    ])
    .await;
    let url = server.url_with("logger", "log-s3cret", "/");
    let broker = connect(crate::common::options(&url)).await;
    let channel = unique_channel("outage-subscribe");
    let mut existing = subscribed(&broker, &channel).await;

    server.kill().await;
    await_reconnecting(&broker, "several failed reconnect attempts", |attempt| {
        attempt >= 3
    })
    .await;
    let started = Instant::now();
    let error = within_deadline(
        "subscribe during the outage",
        broker.subscribe(&[ChannelSpec::exact(&channel)]),
    )
    .await
    .expect_err("subscribe during the outage must fail");
    assert!(error.is_transient(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));

    server.restart().await;
    eventually("Connected again", || broker.health().is_connected()).await;
    let mut sub = broker
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .expect("subscribe after recovery");
    await_subscribed(&broker, &mut sub, &channel).await;
    await_subscribed(&broker, &mut existing, &channel).await;

    let text = log.text();
    let port = format!("127.0.0.1:{}", server.port());
    let ours: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("sidecast_transport_amqp") && line.contains(&port))
        .collect();
    eprintln!("logged for this server:\n{}", ours.join("\n"));
    let count = |what: &str| ours.iter().filter(|line| line.contains(what)).count();
    assert_eq!(
        count("amqp connection lost, reconnecting"),
        1,
        "one warning per outage:\n{}",
        ours.join("\n")
    );
    assert!(
        ours.iter()
            .any(|line| line.contains("WARN") && line.contains("connection lost")),
        "{}",
        ours.join("\n")
    );
    assert_eq!(
        count("amqp connection restored"),
        1,
        "one notice per recovery:\n{}",
        ours.join("\n")
    );
    assert!(
        !text.contains("log-s3cret"),
        "the password leaked into the log:\n{text}"
    );
}
