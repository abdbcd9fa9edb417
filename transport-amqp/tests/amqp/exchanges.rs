//! Exchanges and queues as other AMQP clients and operators see them: sharing an exchange with
//! python-socketio / kombu, durability mismatches, a queue deleted by an operator, and a slow
//! consumer.

use std::time::Duration;

use crate::common::{connect, options};
use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use sidecast_core::{Broker, BrokerError, BrokerHealth, ChannelSpec};
use sidecast_testkit::conformance::{self, DEADLINE, await_subscribed, next_message, subscribed};
use sidecast_testkit::{RabbitMqServer, eventually, unique_channel};
use sidecast_transport_amqp::{AmqpOptions, ExchangeMismatch};
use tokio::time::timeout;

/// A plain lapin connection, standing in for another AMQP client (kombu) or an operator.
async fn raw_connection(server: &RabbitMqServer) -> Connection {
    Connection::connect(server.url(), ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("raw lapin connection: {e}"))
}

/// On the shared server, another client's connection and a new exchange (named from `label`)
/// that it declared as kombu does, `durable` or not.
async fn exchange_from_kombu(
    label: &str,
    durable: bool,
) -> (&'static RabbitMqServer, Connection, String) {
    let server = RabbitMqServer::shared().await;
    let raw = raw_connection(server).await;
    let name = unique_channel(label);
    declare_like_kombu(&raw, &name, durable).await;
    (server, raw, name)
}

/// Declares `name` as python-socketio's `KombuManager` does:
/// `kombu.Exchange(name, type="fanout", durable=False)` (not auto-deleted, no arguments).
async fn declare_like_kombu(connection: &Connection, name: &str, durable: bool) {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable,
                auto_delete: false,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("kombu-style exchange declaration");
}

#[tokio::test]
async fn shares_an_exchange_declared_by_kombu() {
    let (server, raw, name) = exchange_from_kombu("flask-socketio", false).await;

    // Sidecast declares the same exchange again: accepted (no PRECONDITION_FAILED), both when
    // subscribing and when publishing.
    let broker = connect(options(server.url())).await;
    let mut sub = broker
        .subscribe(&[ChannelSpec::exact(&name)])
        .await
        .expect("subscribing to a kombu-declared exchange");
    await_subscribed(&broker, &mut sub, &name).await;

    // A python-socketio publisher (kombu: the JSON text to the exchange, routing key "")
    // reaches the Sidecast subscription...
    let kombu = raw.create_channel().await.expect("channel");
    let emitted = br#"{"method": "emit", "event": "message", "data": ["Hi"], "namespace": "/"}"#;
    kombu
        .basic_publish(
            name.as_str().into(),
            "".into(),
            BasicPublishOptions::default(),
            emitted,
            BasicProperties::default().with_content_type("application/json".into()),
        )
        .await
        .expect("kombu-style publish");
    let message = next_message(&mut sub).await;
    assert_eq!(message.channel, name);
    assert_eq!(message.payload, &emitted[..]);

    // ...and a python-socketio listener (its own queue bound to the exchange) receives what
    // Sidecast publishes.
    let queue = kombu
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("listener queue");
    kombu
        .queue_bind(
            queue.name().clone(),
            name.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let mut listener = kombu
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    conformance::publish(&broker, &name, "from sidecast").await;
    let delivery = timeout(DEADLINE, listener.next())
        .await
        .expect("the kombu-style listener receives within the deadline")
        .expect("a delivery")
        .expect("no error");
    assert_eq!(delivery.data, b"from sidecast");
    assert_eq!(broker.health(), BrokerHealth::Connected);
}

#[tokio::test]
async fn a_durability_mismatch_is_refused_with_the_fix() {
    let (server, _raw, name) = exchange_from_kombu("durable", true).await;

    // Default options (non-durable) meet a durable exchange: RabbitMQ refuses, the error says
    // what to change, and the connection carries on (the refusal closes one channel only).
    let broker = connect(options(server.url())).await;
    let error = broker
        .subscribe(&[ChannelSpec::exact(&name)])
        .await
        .expect_err("a non-durable declaration of a durable exchange must be refused");
    let text = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(matches!(error, BrokerError::Rejected { .. }), "{text}");
    assert!(
        text.contains("AmqpOptions::durable_exchanges = true"),
        "names the fix: {text}"
    );
    let mismatch = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<ExchangeMismatch>())
        .unwrap_or_else(|| panic!("typed, for a server layer to word in its config keys: {text}"));
    assert_eq!(mismatch.exchange(), name);
    let error = broker
        .publish(&name, Bytes::from_static(b"x"))
        .await
        .expect_err("publishing declares the exchange too");
    assert!(matches!(error, BrokerError::Rejected { .. }), "{error}");
    assert_eq!(broker.health(), BrokerHealth::Connected);
    let other = unique_channel("after-mismatch");
    let mut sub = broker
        .subscribe(&[ChannelSpec::exact(&other)])
        .await
        .expect("other channels still work");
    await_subscribed(&broker, &mut sub, &other).await;

    // With durable exchanges configured, the same exchange works.
    let durable = connect(AmqpOptions {
        durable_exchanges: true,
        ..options(server.url())
    })
    .await;
    let mut sub = durable
        .subscribe(&[ChannelSpec::exact(&name)])
        .await
        .expect("durable_exchanges matches a durable exchange");
    await_subscribed(&durable, &mut sub, &name).await;
}

/// An operator deletes a subscription's queue (`rabbitmqctl delete_queue`): RabbitMQ cancels
/// the consumer, and the transport builds a new queue on the same connection.
#[tokio::test]
async fn a_deleted_queue_is_replaced() {
    let server = RabbitMqServer::shared_local().await;
    let broker = connect(options(server.url())).await;
    let name = unique_channel("deleted-queue");
    let mut sub = subscribed(&broker, &name).await;

    let bindings = server
        .ctl(&[
            "list_bindings",
            "source_name",
            "destination_name",
            "--quiet",
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let queue = bindings
        .lines()
        .find_map(|line| {
            let (source, destination) = line.split_once('\t')?;
            (source == name).then(|| destination.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no binding from {name} in:\n{bindings}"));
    assert!(
        queue.starts_with("amq.gen-"),
        "a server-named queue: {queue}"
    );
    server
        .ctl(&["delete_queue", &queue])
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Probes until the new queue receives: the subscription is back without the caller
    // doing anything.
    await_subscribed(&broker, &mut sub, &name).await;
    eventually("Connected once the new queue consumes", || {
        broker.health() == BrokerHealth::Connected
    })
    .await;
}

#[tokio::test]
async fn a_slow_consumer_loses_the_overflow_but_not_later_messages() {
    const CAPACITY: usize = 4;
    const BURST: usize = 50;
    let server = RabbitMqServer::shared().await;
    let broker = connect(AmqpOptions {
        subscription_capacity: CAPACITY,
        ..options(server.url())
    })
    .await;
    let name = unique_channel("slow");
    let mut sub = subscribed(&broker, &name).await;

    // The consumer reads nothing while the burst arrives: the first CAPACITY messages are kept,
    // the rest dropped and counted, and publishing never stalls.
    for i in 0..BURST {
        timeout(DEADLINE, broker.publish(&name, format!("burst {i}").into()))
            .await
            .expect("publish never waits for a slow consumer")
            .expect("publish");
    }
    let expected_drops = u64::try_from(BURST - CAPACITY).unwrap_or(u64::MAX);
    eventually("the overflow is counted", || {
        sub.dropped() >= expected_drops
    })
    .await;
    assert_eq!(sub.dropped(), expected_drops);
    for i in 0..CAPACITY {
        let message = next_message(&mut sub).await;
        assert_eq!(message.payload, format!("burst {i}").as_bytes());
    }

    // Once the consumer catches up, later messages arrive again.
    conformance::publish(&broker, &name, "later").await;
    let message = next_message(&mut sub).await;
    assert_eq!(message.payload, &b"later"[..]);
    assert_eq!(broker.health(), BrokerHealth::Connected);
    // Nothing else was pending.
    assert!(
        timeout(Duration::from_millis(100), sub.recv())
            .await
            .is_err(),
        "no stray message"
    );
}
