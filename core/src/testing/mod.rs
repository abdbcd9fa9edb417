//! Test support for Sidecast and for custom transports (feature `testing`).
//!
//! * [`conformance`]: the one broker conformance suite every [`crate::Broker`] implementation
//!   runs against a real server.
//! * [`redis_server`]: starts a private `redis-server` on a free loopback port (or uses the one
//!   named by `SIDECAST_TEST_REDIS_URL`) and stops it on drop.
//! * [`rabbitmq_server`] (Unix): starts a private `rabbitmq-server` on free loopback ports, once
//!   per test process or per test (or uses the one named by `SIDECAST_TEST_AMQP_URL`).
//!
//! This module is test code: its helpers panic with a descriptive message instead of returning
//! errors, so that a failing check points at the cause.

pub mod conformance;
#[cfg(unix)]
pub mod rabbitmq_server;
pub mod redis_server;

pub use conformance::Capabilities;
#[cfg(unix)]
pub use rabbitmq_server::RabbitMqServer;
pub use redis_server::RedisServer;

/// A channel name no other test uses: `sidecast-test.<label>.<random>`.
///
/// Checks running in parallel against one server must not see each other's messages, so every
/// check names its channels with this.
pub fn unique_channel(label: &str) -> String {
    format!("sidecast-test.{label}.{}", uuid::Uuid::new_v4().simple())
}
