//! The pattern check: a transport matches Redis-style globs, or refuses them cleanly.

use sidecast_core::broker::{Broker, BrokerError, ChannelSpec};

use super::MakeBroker;
use super::support::{await_subscribed, expect_message, next_message, publish, subscribe};
use crate::unique_channel;

/// Pattern subscriptions: with `supported`, a message on a matching channel arrives with
/// `pattern: Some(..)` and one on a non-matching channel does not arrive; without, subscribing to
/// a pattern fails with [`BrokerError::Unsupported`].
pub async fn patterns<M: MakeBroker>(make_broker: &M, supported: bool) {
    let subscriber = make_broker.make().await;
    let prefix = unique_channel("pattern");
    let star = format!("{prefix}.*");

    if !supported {
        match subscriber.subscribe(&[ChannelSpec::pattern(&star)]).await {
            Err(BrokerError::Unsupported { .. }) => return,
            Err(e) => panic!("a pattern subscription must be refused as Unsupported, got: {e}"),
            Ok(_) => {
                panic!("the transport is declared without pattern support but accepted a pattern")
            }
        }
    }

    let publisher = make_broker.make().await;
    // Redis glob classes: `[xy]` matches one of x, y; `?` matches exactly one character.
    let class = format!("{prefix}-[xy]?");
    let exact = format!("{prefix}-exact");
    let mut sub = subscribe(
        &subscriber,
        &[
            ChannelSpec::pattern(&star),
            ChannelSpec::pattern(&class),
            ChannelSpec::exact(&exact),
        ],
    )
    .await;
    await_subscribed(&publisher, &mut sub, &format!("{prefix}.probe")).await;
    await_subscribed(&publisher, &mut sub, &format!("{prefix}-x0")).await;
    await_subscribed(&publisher, &mut sub, &exact).await;

    // Non-matching channels first: per-publisher order means that if they had been delivered,
    // they would arrive before the matching message that follows.
    publish(&publisher, &format!("{prefix}-z1"), "no: z not in [xy]").await;
    publish(
        &publisher,
        &format!("{prefix}-x"),
        "no: ? needs one character",
    )
    .await;
    publish(&publisher, &format!("{prefix}_a"), "no: _ is not .").await;
    publish(&publisher, &format!("other.{prefix}.a"), "no: other prefix").await;
    publish(&publisher, &format!("{prefix}.a"), "star").await;
    publish(&publisher, &format!("{prefix}-y7"), "class").await;
    publish(&publisher, &exact, "exact").await;

    // Only the matching channels' messages arrive, in order, each naming the pattern it matched.
    for (payload, channel, pattern) in [
        ("star", format!("{prefix}.a"), &star),
        ("class", format!("{prefix}-y7"), &class),
    ] {
        let message = next_message(&mut sub).await;
        assert_eq!(
            message.payload,
            payload.as_bytes(),
            "a message on a non-matching channel was delivered, or out of order: {message:?}"
        );
        assert_eq!(message.channel, channel);
        assert_eq!(message.pattern.as_deref(), Some(pattern.as_str()));
    }

    expect_message(&mut sub, &exact, b"exact").await;
}
