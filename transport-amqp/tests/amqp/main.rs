//! AmqpBroker against real RabbitMQ servers.
//!
//! One test binary (with a module per topic) rather than one per file: RabbitMQ takes seconds to
//! start, and every test process starts its own shared server
//! ([`sidecast_core::testing::RabbitMqServer::shared`]). Tests that stop RabbitMQ start private
//! ones.
//!
//! * [`conformance`]: the broker conformance suite, one test per check.
//! * [`connect`]: credentials and virtual hosts, unreachable and silent servers, bad URLs, TLS.
//! * [`exchanges`]: sharing exchanges with kombu, durability, deleted queues, slow consumers.
//! * [`resilience`]: RabbitMQ restarts and crashes under subscribed nodes, and what is logged.

mod common;
mod conformance;
mod connect;
mod exchanges;
mod resilience;
