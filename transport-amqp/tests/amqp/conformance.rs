//! AmqpBroker against the broker conformance suite, one test per check, all on the test
//! process' shared RabbitMQ (or on `SIDECAST_TEST_AMQP_URL`; the checks use unique channel
//! names, hence unique exchanges).

use crate::common::amqp_on;
use sidecast_testkit::RabbitMqServer;
use sidecast_testkit::conformance::Capabilities;

sidecast_testkit::conformance_tests!(
    amqp_on(RabbitMqServer::shared().await),
    Capabilities::WITHOUT_PATTERNS
);
