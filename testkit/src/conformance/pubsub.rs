//! The pub/sub checks: health, round trips between nodes, several channels, fan-out, order per
//! publisher, large and binary payloads, a dropped subscription.

use sidecast_core::broker::{Broker, BrokerHealth, ChannelSpec};

use super::MakeBroker;
use super::support::{
    await_subscribed, expect_message, next_message, publish, subscribe, subscribed_pair,
};
use crate::unique_channel;

/// Messages published by the ordering check.
pub const ORDER_MESSAGES: usize = 500;

/// A new broker reports [`BrokerHealth::Connected`], and still does after a round trip.
pub async fn health_connected<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    assert_eq!(
        broker.health(),
        BrokerHealth::Connected,
        "health right after connecting"
    );
    let channel = unique_channel("health");
    let mut sub = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&broker, &mut sub, &channel).await;
    publish(&broker, &channel, "ping").await;
    expect_message(&mut sub, &channel, b"ping").await;
    assert_eq!(
        broker.health(),
        BrokerHealth::Connected,
        "health after a round trip"
    );
}

/// A message published by one broker reaches a subscription on another broker, and a broker's
/// own subscription receives what it publishes itself (the one-delivery-path rule).
pub async fn round_trip<M: MakeBroker>(make_broker: &M) {
    let (subscriber, publisher, channel, mut sub) =
        subscribed_pair(make_broker, "round-trip").await;

    publish(
        &publisher,
        &channel,
        r#"{"v":1,"event":"message","data":"Hi"}"#,
    )
    .await;
    expect_message(
        &mut sub,
        &channel,
        br#"{"v":1,"event":"message","data":"Hi"}"#,
    )
    .await;

    // Echo: the subscriber's own publish comes back through its own subscription.
    publish(&subscriber, &channel, "echo").await;
    expect_message(&mut sub, &channel, b"echo").await;
}

/// One subscription to several channels receives each channel's messages, labelled with the
/// channel they were published on.
pub async fn several_channels<M: MakeBroker>(make_broker: &M) {
    let subscriber = make_broker.make().await;
    let publisher = make_broker.make().await;
    let first = unique_channel("several-a");
    let second = unique_channel("several-b");
    let mut sub = subscribe(
        &subscriber,
        &[ChannelSpec::exact(&first), ChannelSpec::exact(&second)],
    )
    .await;
    await_subscribed(&publisher, &mut sub, &first).await;
    await_subscribed(&publisher, &mut sub, &second).await;

    publish(&publisher, &first, "one").await;
    publish(&publisher, &second, "two").await;
    publish(
        &publisher,
        &unique_channel("several-other"),
        "not subscribed",
    )
    .await;
    publish(&publisher, &first, "three").await;
    expect_message(&mut sub, &first, b"one").await;
    expect_message(&mut sub, &second, b"two").await;
    expect_message(&mut sub, &first, b"three").await;
}

/// Subscribers on separate brokers (separate nodes) each receive every message, in order.
pub async fn fan_out<M: MakeBroker>(make_broker: &M) {
    const SUBSCRIBERS: usize = 3;
    const MESSAGES: usize = 20;
    let publisher = make_broker.make().await;
    let channel = unique_channel("fan-out");
    let mut nodes = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let broker = make_broker.make().await;
        let mut sub = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
        // Earlier subscribers see these probes too; next_message skips them.
        await_subscribed(&publisher, &mut sub, &channel).await;
        nodes.push((broker, sub));
    }
    for i in 0..MESSAGES {
        publish(&publisher, &channel, format!("fan-out {i}")).await;
    }
    for (node, (_broker, sub)) in nodes.iter_mut().enumerate() {
        for i in 0..MESSAGES {
            let message = next_message(sub).await;
            assert_eq!(
                message.payload,
                format!("fan-out {i}").as_bytes(),
                "subscriber {node} got messages out of order or lost one"
            );
        }
    }
}

/// [`ORDER_MESSAGES`] messages from one publisher arrive complete and in publish order, while
/// the subscriber reads concurrently.
pub async fn order_per_publisher<M: MakeBroker>(make_broker: &M) {
    // The subscriber is kept alive (dropping a broker may end its subscriptions).
    let (_subscriber, publisher, channel, mut sub) = subscribed_pair(make_broker, "order").await;

    let send = async {
        for i in 0..ORDER_MESSAGES {
            publish(&publisher, &channel, i.to_string()).await;
        }
    };
    let receive = async {
        for i in 0..ORDER_MESSAGES {
            let message = next_message(&mut sub).await;
            assert_eq!(
                String::from_utf8_lossy(&message.payload),
                i.to_string(),
                "message {i} of {ORDER_MESSAGES} out of order (or earlier ones lost)"
            );
        }
    };
    tokio::join!(send, receive);
    assert_eq!(sub.dropped(), 0, "no message may be dropped in this check");
}

/// A 1 MiB payload arrives intact.
pub async fn large_payload<M: MakeBroker>(make_broker: &M) {
    // The subscriber is kept alive (dropping a broker may end its subscriptions).
    let (_subscriber, publisher, channel, mut sub) = subscribed_pair(make_broker, "large").await;

    // Not a constant byte, so that truncation or reordering inside the payload shows.
    let payload: Vec<u8> = (0..1usize << 20)
        .map(|i| u8::try_from(i % 251).unwrap_or_default())
        .collect();
    publish(&publisher, &channel, payload.clone()).await;
    let message = next_message(&mut sub).await;
    assert_eq!(
        message.payload.len(),
        payload.len(),
        "1 MiB payload truncated"
    );
    assert!(
        message.payload == payload,
        "1 MiB payload arrived with the right length but different bytes"
    );
}

/// Payloads are bytes, not text: invalid UTF-8, NUL bytes and the empty payload arrive as sent.
pub async fn binary_payload<M: MakeBroker>(make_broker: &M) {
    // The subscriber is kept alive (dropping a broker may end its subscriptions).
    let (_subscriber, publisher, channel, mut sub) = subscribed_pair(make_broker, "binary").await;

    let every_byte: Vec<u8> = (0..=255u8).rev().collect();
    let invalid_utf8 = vec![0xc3, 0x28, 0xff, 0xfe, 0x00, 0x80];
    for payload in [every_byte, invalid_utf8, Vec::new()] {
        publish(&publisher, &channel, payload.clone()).await;
        let message = next_message(&mut sub).await;
        assert_eq!(
            message.payload, payload,
            "binary payload altered in transit"
        );
    }
}

/// Dropping a subscription affects nothing else: another subscription to the same channel on the
/// same broker keeps receiving, and a new subscription made afterwards works.
pub async fn dropped_subscription<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    let publisher = make_broker.make().await;
    let channel = unique_channel("dropped");

    let mut kept = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&publisher, &mut kept, &channel).await;
    let mut doomed = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&publisher, &mut doomed, &channel).await;
    drop(doomed);

    // Traffic after the drop gives the transport the chance to notice it and clean up.
    for i in 0..10 {
        publish(&publisher, &channel, format!("after drop {i}")).await;
    }
    for i in 0..10 {
        expect_message(&mut kept, &channel, format!("after drop {i}").as_bytes()).await;
    }

    let mut fresh = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&publisher, &mut fresh, &channel).await;
    publish(&publisher, &channel, "to both").await;
    expect_message(&mut fresh, &channel, b"to both").await;
    expect_message(&mut kept, &channel, b"to both").await;
    assert_eq!(broker.health(), BrokerHealth::Connected);
}
