//! AmqpBroker against real RabbitMQ servers.
//!
//! One test binary (with a module per topic) rather than one per file: RabbitMQ takes seconds to
//! start, and every test process starts its own shared server
//! ([`sidecast_testkit::RabbitMqServer::shared`]). Tests that stop RabbitMQ start private
//! ones.
//!
//! * [`conformance`]: the broker conformance suite, one test per check.
//! * [`connect`]: credentials and virtual hosts, unreachable and silent servers, bad URLs, TLS.
//! * [`exchanges`]: sharing exchanges with kombu, durability, deleted queues, slow consumers.
//! * [`history`]: the history's stream queues through a RabbitMQ crash, a slow consumer, and
//!   a node configured with another retention.
//! * [`nodes`]: several URLs (a cluster's nodes): a dead one skipped, a killed one replaced.
//! * [`availability`]: RabbitMQ restarts, crashes and freezes under subscribed nodes, and what
//!   is logged. (Named so that it sorts first: libtest starts tests in name order, and these are
//!   the slow ones, so starting them first shortens the run.)

mod availability;
mod common;
mod conformance;
mod connect;
mod exchanges;
mod history;
mod nodes;
