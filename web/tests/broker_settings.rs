//! Broker refusals at start, on real servers: the start error names the configuration key that
//! fixes it (the transports' own errors name only their Rust options, or "the URL").
#![allow(clippy::unwrap_used)]

mod common;

use sidecast_core::Config;
use sidecast_core::config::BrokerKind;
use sidecast_web::{Sidecast, StartError};

/// Builds a node from `config`, which must fail (`why`) with a broker refusal that a configuration
/// key fixes; returns the error's text.
async fn refused_setting(config: Config, why: &str) -> String {
    match Sidecast::builder().config(config).build().await {
        Ok(_) => panic!("{why}"),
        Err(error @ StartError::BrokerSetting { .. }) => error.to_string(),
        Err(other) => panic!("{why}, as a StartError::BrokerSetting: {other}"),
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_names_broker_url() {
    let redis =
        sidecast_testkit::RedisServer::start_local_with_args(["--requirepass", "right-pw"]).await;
    let config = common::broker_config(
        BrokerKind::Redis,
        &redis.url_with_credentials(None, "wrong-pw"),
    );
    let text = refused_setting(config, "a wrong password must be refused").await;
    assert!(
        text.contains("broker.url (SIDECAST_BROKER__URL)"),
        "names the key and its environment variable: {text}"
    );
    assert!(!text.contains("wrong-pw"), "the password leaked: {text}");
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_exchange_is_refused_with_the_configuration_key_that_fixes_it() {
    use sidecast_core::Broker;
    use sidecast_testkit::{RabbitMqServer, unique_channel};
    use sidecast_transport_amqp::{AmqpBroker, AmqpOptions};

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

    let mut config = common::memory_config();
    config.broker.kind = BrokerKind::Amqp;
    config.broker.url = Some(rabbit.url().to_owned());
    config.broker.channel = channel.clone();
    let text = refused_setting(
        config.clone(),
        "a non-durable declaration of a durable exchange must be refused",
    )
    .await;
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
