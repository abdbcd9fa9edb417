//! AmqpBroker against the broker conformance suite, one test per check, all on the test
//! process' shared RabbitMQ (or on `SIDECAST_TEST_AMQP_URL`; the checks use unique channel
//! names, hence unique exchanges and history queues).
//!
//! No patterns; a history whose retention is by age and bytes (stream queues cannot bound the
//! number of messages), so the retention check is the one by bytes.

use crate::common::amqp_on;
use sidecast_testkit::RabbitMqServer;
use sidecast_testkit::conformance::{Capabilities, HistoryBounds};

sidecast_testkit::conformance_tests!(
    amqp_on(RabbitMqServer::shared().await),
    Capabilities::WITHOUT_PATTERNS
        .with_history(true)
        .with_history_bounds(HistoryBounds::BYTES)
);
