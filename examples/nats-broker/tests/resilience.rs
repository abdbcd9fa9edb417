//! Outages: nats-server is killed and started again on the same port. These tests need a private
//! server (`NatsServer::start_local`), even when `SIDECAST_TEST_NATS_URL` is set.

mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sidecast_core::{Broker, BrokerError, BrokerHealth, ChannelSpec};
use sidecast_example_nats::NatsBroker;
use sidecast_testkit::conformance::{
    DEADLINE, MakeBroker, assert_ends, await_subscribed, next_message, subscribed,
};
use sidecast_testkit::unique_channel;
use support::{NatsServer, nats_on};
use tokio::time::{Instant, sleep};

/// How often health is polled: it is a state, not an event.
const POLL: Duration = Duration::from_millis(5);

/// During an outage a publish must fail well before the publish time-out (2 s): fail fast.
const FAIL_FAST: Duration = Duration::from_millis(1_500);

/// Polls `broker.health()` until `done` says so, returning that health; panics after
/// [`DEADLINE`] naming `what`.
async fn wait_for_health(
    broker: &NatsBroker,
    what: &str,
    done: impl Fn(&BrokerHealth) -> bool,
) -> BrokerHealth {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let health = broker.health();
        if done(&health) {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "health did not become {what} within {DEADLINE:?}; it is {health:?}"
        );
        sleep(POLL).await;
    }
}

fn reconnecting(health: &BrokerHealth) -> Option<(u32, SystemTime)> {
    match health {
        BrokerHealth::Reconnecting { attempt, since } => Some((*attempt, *since)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_a_server_restart() {
    let mut server = NatsServer::start_local().await;
    let nodes = nats_on(&server);
    let subscriber = nodes.make().await;
    let publisher = nodes.make().await;
    let channel = unique_channel("restart");
    let mut sub = subscriber
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .unwrap();
    await_subscribed(&publisher, &mut sub, &channel).await;
    assert_eq!(subscriber.health(), BrokerHealth::Connected);

    let stopped_at = SystemTime::now();
    server.stop().await;

    // Both connections see the server go: health says so, with the attempts counted and the
    // start of the outage kept.
    let first = wait_for_health(&subscriber, "Reconnecting", |h| reconnecting(h).is_some()).await;
    let (_, since) = reconnecting(&first).unwrap();
    assert!(
        since >= stopped_at - Duration::from_secs(1),
        "since {since:?}"
    );
    let later = wait_for_health(&subscriber, "Reconnecting with attempt >= 3", |h| {
        reconnecting(h).is_some_and(|(attempt, _)| attempt >= 3)
    })
    .await;
    // A reader may see the state change a moment before the outage is recorded (it then gets
    // its own "now", and the recorded start can be a few milliseconds later); once recorded,
    // the start stays put.
    let (_, recorded) = reconnecting(&later).unwrap();
    assert!(
        recorded <= since + Duration::from_secs(1),
        "the outage start moved forward"
    );
    let since = recorded;
    let again = reconnecting(&subscriber.health()).map(|(_, s)| s);
    assert_eq!(
        again,
        Some(since),
        "the outage start moved during the outage"
    );
    wait_for_health(&publisher, "Reconnecting", |h| reconnecting(h).is_some()).await;

    // Publishing and subscribing fail fast, with transient errors.
    let started = Instant::now();
    match publisher
        .publish(&channel, Bytes::from_static(b"lost"))
        .await
    {
        Err(e @ BrokerError::Unavailable { .. }) => assert!(e.is_transient()),
        other => panic!("publish during the outage: {other:?}"),
    }
    match publisher.subscribe(&[ChannelSpec::exact(&channel)]).await {
        Err(e @ BrokerError::Unavailable { .. }) => assert!(e.is_transient()),
        Err(e) => panic!("subscribe during the outage: {e}"),
        Ok(_) => panic!("subscribe during the outage succeeded"),
    }
    assert!(
        started.elapsed() < FAIL_FAST,
        "failing took {:?}",
        started.elapsed()
    );

    server.restart().await;
    wait_for_health(&subscriber, "Connected", BrokerHealth::is_connected).await;
    wait_for_health(&publisher, "Connected", BrokerHealth::is_connected).await;

    // The stream the caller held all along receives again (async-nats re-subscribed), within
    // a bounded wait.
    await_subscribed(&publisher, &mut sub, &channel).await;
    publisher
        .publish(&channel, Bytes::from_static(b"after restart"))
        .await
        .unwrap();
    let message = next_message(&mut sub).await;
    assert_eq!(message.payload, &b"after restart"[..]);
    assert_eq!(message.channel, channel);

    // A second outage is a new one: its attempts and start are its own.
    server.stop().await;
    let second = wait_for_health(&subscriber, "Reconnecting again", |h| {
        reconnecting(h).is_some()
    })
    .await;
    let (_, second_since) = reconnecting(&second).unwrap();
    assert!(
        second_since > since,
        "the second outage kept the first one's start"
    );
    server.restart().await;
    wait_for_health(&subscriber, "Connected", BrokerHealth::is_connected).await;
    wait_for_health(&publisher, "Connected", BrokerHealth::is_connected).await;
    await_subscribed(&publisher, &mut sub, &channel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_an_outage_is_prompt() {
    let mut server = NatsServer::start_local().await;
    let broker = nats_on(&server).make().await;
    let channel = unique_channel("close-outage");
    let mut sub = subscribed(&broker, &channel).await;

    server.stop().await;
    wait_for_health(&broker, "Reconnecting", |h| reconnecting(h).is_some()).await;
    let started = Instant::now();
    broker.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "close() during an outage took {:?}",
        started.elapsed()
    );
    assert_eq!(broker.health(), BrokerHealth::Closed);
    assert_ends(&mut sub).await;
    assert!(matches!(
        broker.publish(&channel, Bytes::new()).await,
        Err(BrokerError::Closed)
    ));
    // The server coming back does not revive anything.
    server.restart().await;
    sleep(Duration::from_millis(200)).await;
    assert_eq!(broker.health(), BrokerHealth::Closed);
}
