//! Shared by the integration tests: a broker factory over a test RabbitMQ server.

use std::time::Duration;

use sidecast_core::HistoryRetention;
use sidecast_testkit::RabbitMqServer;
use sidecast_testkit::conformance::{Connect, MakeBroker};
use sidecast_transport_amqp::{AmqpBroker, AmqpOptions};

/// Options for a test server, with a short backoff so that reconnect tests do not wait long,
/// and a history of 64 KiB per channel in segments of 8 KiB (the conformance check of
/// retention appends three times that).
pub(crate) fn options(url: &str) -> AmqpOptions {
    AmqpOptions {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        history: HistoryRetention {
            max_bytes: 64 << 10,
            ..HistoryRetention::default()
        },
        history_segment_bytes: 8 << 10,
        ..AmqpOptions::new(url)
    }
}

/// Makes a new `AmqpBroker` (a new "node", with its own connection) with `options` at each call.
pub(crate) fn amqp(options: AmqpOptions) -> impl MakeBroker<Broker = AmqpBroker> {
    Connect::new(options, AmqpBroker::connect)
}

/// A factory of brokers on `server`, with [`options`].
pub(crate) fn amqp_on(server: &RabbitMqServer) -> impl MakeBroker<Broker = AmqpBroker> + use<> {
    amqp(options(server.url()))
}

/// Connects or panics with the error.
pub(crate) async fn connect(options: AmqpOptions) -> AmqpBroker {
    amqp(options).make().await
}

/// After `kill` stops the RabbitMQ node `broker` is connected to: how long `broker` took to be
/// connected again (to another node), and how long until a message published by `other`
/// reached `subscription`, both from the kill.
pub(crate) async fn after_a_kill(
    broker: &AmqpBroker,
    other: &AmqpBroker,
    subscription: &mut sidecast_core::Subscription,
    channel: &str,
    kill: impl std::future::Future<Output = ()>,
) -> (Duration, Duration) {
    use sidecast_core::{Broker, BrokerHealth};
    kill.await;
    let killed = tokio::time::Instant::now();
    sidecast_testkit::eventually("the broker notices the kill", || {
        broker.health() != BrokerHealth::Connected
    })
    .await;
    sidecast_testkit::eventually("the broker is connected again", || {
        broker.health() == BrokerHealth::Connected
    })
    .await;
    let reconnected = killed.elapsed();
    let delivered =
        sidecast_testkit::conformance::first_delivery(other, subscription, channel).await - killed;
    (reconnected, delivered)
}
