//! Shared by the integration tests: a broker factory over a test RabbitMQ server.

use std::time::Duration;

use sidecast_testkit::RabbitMqServer;
use sidecast_testkit::conformance::MakeBroker;
use sidecast_transport_amqp::{AmqpBroker, AmqpOptions};

/// Options for a test server, with a short backoff so that reconnect tests do not wait long.
pub(crate) fn options(url: &str) -> AmqpOptions {
    AmqpOptions {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..AmqpOptions::new(url)
    }
}

/// Makes a new `AmqpBroker` (a new "node", with its own connection) on the server at each call.
pub(crate) struct Amqp(pub(crate) AmqpOptions);

impl Amqp {
    pub(crate) fn on(server: &RabbitMqServer) -> Self {
        Self(options(server.url()))
    }
}

impl MakeBroker for Amqp {
    type Broker = AmqpBroker;

    async fn make(&self) -> AmqpBroker {
        connect(self.0.clone()).await
    }
}

/// Connects or panics with the error.
pub(crate) async fn connect(options: AmqpOptions) -> AmqpBroker {
    AmqpBroker::connect(options)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test RabbitMQ server: {e}"))
}
