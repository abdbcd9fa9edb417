//! A node on a real RabbitMQ whose exchange exists with other settings: the start error names the
//! configuration key that fixes it (the transport's own error names only its Rust option).
#![cfg(feature = "amqp")]
#![allow(clippy::unwrap_used)]

mod common;

use common::memory_config;
use sidecast_core::Broker;
use sidecast_core::config::BrokerKind;
use sidecast_testkit::{RabbitMqServer, unique_channel};
use sidecast_transport_amqp::{AmqpBroker, AmqpOptions};
use sidecast_web::{Sidecast, StartError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_exchange_is_refused_with_the_configuration_key_that_fixes_it() {
    let rabbit = RabbitMqServer::shared().await;
    let channel = unique_channel("durable-node");
    // Another application declared the channel's exchange durable (publishing declares it).
    let other_app = AmqpBroker::connect(AmqpOptions {
        durable_exchanges: true,
        ..AmqpOptions::new(rabbit.url())
    })
    .await
    .unwrap();
    sidecast_testkit::conformance::publish(&other_app, &channel, "{}").await;

    let mut config = memory_config();
    config.broker.kind = BrokerKind::Amqp;
    config.broker.url = Some(rabbit.url().to_owned());
    config.broker.channel = channel.clone();
    let error = match Sidecast::builder().config(config.clone()).build().await {
        Ok(_) => panic!("a non-durable declaration of a durable exchange must be refused"),
        Err(error) => error,
    };
    let text = error.to_string();
    assert!(
        matches!(error, StartError::BrokerSetting { .. }),
        "a typed start error: {text}"
    );
    assert!(text.contains(&channel), "names the exchange: {text}");
    assert!(
        text.contains("broker.durable_exchanges = true")
            && text.contains("SIDECAST_BROKER__DURABLE_EXCHANGES=true"),
        "names the key and its environment variable: {text}"
    );

    // The fix it names works.
    config.broker.durable_exchanges = true;
    let node = Sidecast::builder()
        .config(config)
        .build()
        .await
        .unwrap_or_else(|e| panic!("durable exchanges match: {e}"));
    node.broker().close().await;
    other_app.close().await;
}
