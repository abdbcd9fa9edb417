//! Connecting, configuration and refusals: what fails, how, and how fast.

mod support;

use std::time::Duration;

use bytes::Bytes;
use sidecast_core::{Broker, BrokerError, ChannelSpec};
use sidecast_example_nats::{NatsBroker, NatsOptions};
use sidecast_testkit::conformance::{MakeBroker, await_subscribed, next_message, publish_all};
use sidecast_testkit::process::free_port;
use sidecast_testkit::unique_channel;
use support::{NatsServer, nats_on};
use tokio::time::Instant;

#[tokio::test]
async fn nobody_listening_is_unavailable_and_transient() {
    // A port that was free a moment ago: nobody listens there.
    let port = free_port();
    let started = Instant::now();
    match NatsBroker::connect(NatsOptions::new(format!("nats://127.0.0.1:{port}"))).await {
        Err(e @ BrokerError::Unavailable { .. }) => {
            assert!(e.is_transient());
            assert!(e.to_string().contains(&port.to_string()), "{e}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn invalid_options_are_config_errors() {
    let zero = NatsOptions {
        publish_timeout: Duration::ZERO,
        ..NatsOptions::new("nats://127.0.0.1:4222")
    };
    match NatsBroker::connect(zero).await {
        Err(BrokerError::Config { reason, .. }) => assert!(reason.contains("publish_timeout")),
        other => panic!("{other:?}"),
    }
    match NatsBroker::connect(NatsOptions::new("nats://exa mple:x")).await {
        Err(BrokerError::Config { .. }) => {}
        other => panic!("expected Config for an unparsable URL, got {other:?}"),
    }
}

#[tokio::test]
async fn passwords_are_redacted() {
    let server = NatsServer::start().await;
    let url = server.url().replace("nats://", "nats://user:hunter2@");
    // nats-server without authorization accepts any credentials.
    let broker = NatsBroker::connect(support::options(&url)).await.unwrap();
    assert!(!broker.url().contains("hunter2"), "{}", broker.url());
    assert!(!format!("{broker:?}").contains("hunter2"));
}

#[tokio::test]
async fn channels_that_are_not_literal_subjects_are_refused() {
    let server = NatsServer::start().await;
    let broker = nats_on(&server).make().await;
    for channel in ["with space", "a..b", "wild.*", "tail.>", ""] {
        match broker.publish(channel, Bytes::from_static(b"x")).await {
            Err(BrokerError::Unsupported { .. }) => {}
            other => panic!("publish on {channel:?}: {other:?}"),
        }
        match broker.subscribe(&[ChannelSpec::exact(channel)]).await {
            Err(BrokerError::Unsupported { .. }) => {}
            Err(e) => panic!("subscribe to {channel:?}: {e}"),
            Ok(_) => panic!("subscribe to {channel:?} succeeded"),
        }
    }
    assert!(matches!(
        broker.subscribe(&[]).await,
        Err(BrokerError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn a_payload_over_max_payload_is_rejected_not_transient() {
    let server = NatsServer::start().await;
    let broker = nats_on(&server).make().await;
    let max = broker.client().max_payload();
    match broker
        .publish(&unique_channel("too-big"), Bytes::from(vec![0u8; max + 1]))
        .await
    {
        Err(e @ BrokerError::Rejected { .. }) => {
            assert!(!e.is_transient());
            assert!(e.to_string().contains("max_payload"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// A channel named twice in one subscription is delivered once, as with Redis.
#[tokio::test]
async fn a_channel_named_twice_is_delivered_once() {
    let server = NatsServer::start().await;
    let broker = nats_on(&server).make().await;
    let channel = unique_channel("twice");
    let mut sub = broker
        .subscribe(&[ChannelSpec::exact(&channel), ChannelSpec::exact(&channel)])
        .await
        .unwrap();
    await_subscribed(&broker, &mut sub, &channel).await;
    publish_all(&broker, &channel, ["one", "two"]).await;
    assert_eq!(next_message(&mut sub).await.payload, &b"one"[..]);
    assert_eq!(next_message(&mut sub).await.payload, &b"two"[..]);
}
