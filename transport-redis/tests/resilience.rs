//! RedisBroker through Redis outages: restarts, publishing while Redis is down, slow consumers.
//!
//! These tests stop and restart Redis, so they always start a private redis-server
//! (`RedisServer::start_local`), even when `SIDECAST_TEST_REDIS_URL` is set.

mod common;

use std::time::Duration;

use common::{connect, options};
use sidecast_core::{Broker, BrokerHealth, ChannelSpec};
use sidecast_testkit::conformance::{
    self, assert_ends, await_subscribed, first_delivery, history_across_an_outage,
    history_waits_for_a_slow_consumer, next_message, publish_all, stop_and_restart, subscribed,
    within_deadline,
};
use sidecast_testkit::{RedisServer, await_reconnecting, eventually, unique_channel};
use sidecast_transport_redis::RedisOptions;
use tokio::time::{Instant, sleep};

#[tokio::test]
async fn subscription_survives_a_redis_restart() {
    let mut server = RedisServer::start_local().await;
    // Production defaults (backoff 100 ms doubling to 5 s), so that the reconnect time printed
    // below is the one users get.
    let broker = connect(RedisOptions::new(server.url())).await;
    let channel = unique_channel("restart");
    let mut sub = subscribed(&broker, &channel).await;
    assert_eq!(broker.health(), BrokerHealth::Connected);

    server.stop().await;
    let seen_attempt =
        await_reconnecting(&broker, "health Reconnecting after Redis stopped", |_| true).await;
    assert!(seen_attempt >= 1, "attempts count from 1");

    // While Redis is down, publishing fails (fast, with a transient error) instead of hanging.
    let error = conformance::publish_error(&broker, &channel, "publish during the outage").await;
    assert!(
        error.is_transient(),
        "expected a transient error, got: {error}"
    );

    server.restart().await;
    let back_up = Instant::now();
    eventually("health Connected after Redis came back", || {
        broker.health() == BrokerHealth::Connected
    })
    .await;
    let healthy_after = back_up.elapsed();

    // Publish numbered messages until one arrives: the first delivery after the restart.
    let delivered_after = first_delivery(&broker, &mut sub, &channel).await - back_up;
    eprintln!(
        "redis restart: health Connected {healthy_after:?} and first message delivered \
         {delivered_after:?} after the server answered PING again"
    );

    // And traffic flows normally again, in order.
    publish_all(&broker, &channel, (0..20).map(|i| format!("steady {i}"))).await;
    for i in 0..20 {
        let message = next_message(&mut sub).await;
        // Late copies of the numbered probes may still be queued: skip them.
        if message.payload.starts_with(b"after restart") {
            continue;
        }
        assert_eq!(message.payload, format!("steady {i}").as_bytes());
    }
}

#[tokio::test]
async fn pattern_subscription_survives_a_redis_restart() {
    let mut server = RedisServer::start_local().await;
    let broker = connect(options(server.url())).await;
    let prefix = unique_channel("restart-pattern");
    let pattern = format!("{prefix}.*");
    let mut sub = broker
        .subscribe(&[ChannelSpec::pattern(&pattern)])
        .await
        .expect("subscribe");
    await_subscribed(&broker, &mut sub, &format!("{prefix}.probe")).await;

    server.restart().await;
    // The subscription notices the restart at once (its connection breaks) and has the publish
    // connection checked too; wait until both are back.
    eventually("health Connected after the restart", || {
        broker.health().is_connected()
    })
    .await;
    // Receiving fresh probes proves the PSUBSCRIBE was renewed on the new server.
    await_subscribed(&broker, &mut sub, &format!("{prefix}.probe")).await;
    conformance::publish(&broker, &format!("{prefix}.x"), "hello again").await;
    let message = next_message(&mut sub).await;
    assert_eq!(message.payload, &b"hello again"[..]);
    assert_eq!(message.pattern.as_deref(), Some(pattern.as_str()));
}

#[tokio::test]
async fn publish_during_an_outage_fails_fast_and_recovers() {
    let mut server = RedisServer::start_local().await;
    // No subscription: nothing but the publishes themselves notices the outage.
    let broker = connect(options(server.url())).await;
    let channel = unique_channel("outage");
    conformance::publish(&broker, &channel, "before").await;

    server.stop().await;
    for i in 0..5 {
        let error = conformance::publish_error(
            &broker,
            &channel,
            &format!("publish {i} during the outage"),
        )
        .await;
        assert!(
            error.is_transient(),
            "publish {i}: expected a transient error, got: {error}"
        );
    }
    assert!(
        matches!(broker.health(), BrokerHealth::Reconnecting { .. }),
        "a failed publish marks the broker reconnecting, got {}",
        broker.health()
    );

    server.restart().await;
    eventually("health Connected after Redis came back", || {
        broker.health() == BrokerHealth::Connected
    })
    .await;
    conformance::publish(&broker, &channel, "after").await;
}

#[tokio::test]
async fn slow_consumer_loses_the_overflow_but_keeps_receiving() {
    let server = RedisServer::start().await;
    let options = RedisOptions {
        subscription_capacity: 8,
        ..options(server.url())
    };
    let broker = connect(options).await;
    let channel = unique_channel("slow");
    // Returns once the latest probe arrived, so no probe is left to take queue space.
    let mut sub = subscribed(&broker, &channel).await;

    publish_all(&broker, &channel, (0..100).map(|i| format!("burst {i}"))).await;
    // The first 8 fill the queue; the other 92 are dropped and counted, not waited for.
    eventually("92 messages counted as dropped", || sub.dropped() == 92).await;
    assert_eq!(broker.health(), BrokerHealth::Connected);
    for i in 0..8 {
        let message = next_message(&mut sub).await;
        assert_eq!(message.payload, format!("burst {i}").as_bytes());
    }

    // Drained: the subscription works as before.
    publish_all(&broker, &channel, (0..5).map(|i| format!("later {i}"))).await;
    for i in 0..5 {
        let message = next_message(&mut sub).await;
        assert_eq!(message.payload, format!("later {i}").as_bytes());
    }
    assert_eq!(sub.dropped(), 92);
}

#[tokio::test]
async fn dropping_the_broker_ends_its_subscriptions() {
    let server = RedisServer::start().await;
    let broker = connect(options(server.url())).await;
    let channel = unique_channel("drop-broker");
    let mut sub = subscribed(&broker, &channel).await;
    drop(broker);
    assert_ends(&mut sub).await;
}

#[tokio::test]
async fn subscribe_during_an_outage_fails_with_a_transient_error() {
    let mut server = RedisServer::start_local().await;
    let broker = connect(options(server.url())).await;
    server.stop().await;
    let result = within_deadline(
        "subscribe during the outage",
        broker.subscribe(&[ChannelSpec::exact(unique_channel("down"))]),
    )
    .await;
    let error = result.expect_err("nothing to subscribe to while Redis is down");
    assert!(error.is_transient(), "{error}");

    // Once Redis is back, subscribing works again.
    server.restart().await;
    let channel = unique_channel("back");
    let mut sub = broker
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .expect("subscribe after recovery");
    eventually("publish connection back", || broker.health().is_connected()).await;
    await_subscribed(&broker, &mut sub, &channel).await;
}

/// A server that stops answering without closing connections (here `CLIENT PAUSE`, in real life
/// a network partition): publishes time out instead of hanging, the keep-alive `PING` notices,
/// and everything recovers when the server answers again.
#[tokio::test]
async fn unresponsive_server_times_out_and_recovers() {
    let server = RedisServer::start_local().await;
    let options = RedisOptions {
        publish_timeout: Duration::from_millis(200),
        keepalive_interval: Duration::from_millis(100),
        ..options(server.url())
    };
    let broker = connect(options).await;
    let channel = unique_channel("paused");
    let mut sub = subscribed(&broker, &channel).await;
    // Several keep-alive rounds on a healthy connection change nothing.
    sleep(Duration::from_millis(350)).await;
    assert_eq!(broker.health(), BrokerHealth::Connected);

    let reply = server
        .command(&["CLIENT", "PAUSE", "1500", "ALL"])
        .await
        .expect("CLIENT PAUSE");
    assert_eq!(reply, "+OK");
    let error = conformance::publish_error(&broker, &channel, "publish to a paused server").await;
    assert!(
        matches!(error, sidecast_core::BrokerError::Timeout { .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    eventually("Reconnecting while the server does not answer", || {
        matches!(broker.health(), BrokerHealth::Reconnecting { .. })
    })
    .await;
    eventually("Connected once the pause is over", || {
        broker.health().is_connected()
    })
    .await;
    await_subscribed(&broker, &mut sub, &channel).await;
    conformance::publish(&broker, &channel, "awake").await;
    let message = next_message(&mut sub).await;
    // The "stuck" publish may have been executed when the pause ended (a time-out does not
    // mean the message was lost); skip it if so.
    let message = if message.payload == b"stuck"[..] {
        next_message(&mut sub).await
    } else {
        message
    };
    assert_eq!(message.payload, &b"awake"[..]);
}

/// A history reader on one node while another node appends, and Redis is killed and restarted in
/// the middle: every acknowledged append reaches the reader once, in order
/// (`conformance::history_across_an_outage`).
#[tokio::test]
async fn history_reader_gets_every_acknowledged_entry_across_a_redis_restart() {
    // Every acknowledged append is on disk before Redis answers, so that it survives the kill.
    let mut server =
        RedisServer::start_local_with_args(["--appendonly", "yes", "--appendfsync", "always"])
            .await;
    let writer = connect(options(server.url())).await;
    let reader = connect(options(server.url())).await;
    history_across_an_outage(&writer, &reader, stop_and_restart(&mut server)).await;
}

/// A history subscription whose consumer reads nothing for a while loses nothing: the reader
/// waits while the queue is full (the entries wait in Redis), unlike pub/sub, which drops
/// (`conformance::history_waits_for_a_slow_consumer`).
#[tokio::test]
async fn history_subscription_waits_for_a_slow_consumer() {
    let server = RedisServer::start_local().await;
    let broker = connect(RedisOptions {
        subscription_capacity: 8,
        ..options(server.url())
    })
    .await;
    history_waits_for_a_slow_consumer(&broker, 8).await;
}
