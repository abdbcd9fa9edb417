//! The Sidecast test kit: what tests of Sidecast and of custom transports share. Test code only:
//! use it as a dev-dependency; production code never links it.
//!
//! * [`conformance`]: the one broker conformance suite every [`sidecast_core::Broker`]
//!   implementation runs against a real server, and [`conformance_tests!`], which makes it one
//!   `#[tokio::test]` per check.
//! * [`RedisServer`]: starts a private `redis-server` on a free loopback port (or uses the one
//!   named by `SIDECAST_TEST_REDIS_URL`) and stops it on drop.
//! * [`RedisCluster`]: a private Redis Cluster (three primaries with a replica each), with helpers
//!   to kill the primary of a key's slot and wait for its replica's promotion.
//! * [`RedisSentinelSet`]: a Redis Sentinel topology (a master, two replicas, three sentinels
//!   with fast failover settings) on free loopback ports, with helpers to kill the master and
//!   wait for the promotion.
//! * [`RabbitMqServer`] (Unix): starts a private `rabbitmq-server` on free loopback ports, once
//!   per test process or per test (or uses the one named by `SIDECAST_TEST_AMQP_URL`).
//! * [`process`]: what those two are built on (free ports, waiting until a server answers, the
//!   end of its log, [`process::ServerProcess`]), for the server helper of another backend.
//! * [`unique_channel`], [`eventually`] and [`log::CapturedLog`]: channel names no other test
//!   uses, a bounded poll, and a log to assert on.
//!
//! Its helpers panic with a descriptive message instead of returning errors, so that a failing
//! check points at the cause.

pub mod conformance;
pub mod log;
pub mod process;
#[cfg(unix)]
pub mod rabbitmq_cluster;
#[cfg(unix)]
pub mod rabbitmq_server;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
mod resp;

use std::time::Duration;

use sidecast_core::{Broker, BrokerHealth};
use tokio::time::{Instant, sleep};

pub use conformance::Capabilities;
#[cfg(unix)]
pub use rabbitmq_cluster::RabbitMqCluster;
#[cfg(unix)]
pub use rabbitmq_server::RabbitMqServer;
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::RedisSentinelSet;
pub use redis_server::RedisServer;

/// A channel name no other test uses: `sidecast-test.<label>.<random>`.
///
/// Checks running in parallel against one server must not see each other's messages, so every
/// check names its channels with this.
pub fn unique_channel(label: &str) -> String {
    format!("sidecast-test.{label}.{}", uuid::Uuid::new_v4().simple())
}

/// How often [`eventually`] checks its condition.
const EVENTUALLY_POLL: Duration = Duration::from_millis(5);

/// Polls `condition` until it holds, panicking with `what` after [`conformance::DEADLINE`].
///
/// For state without change notifications, such as a broker's health (a snapshot) or what a
/// log has captured so far: polling is the only way to observe it.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + conformance::DEADLINE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {:?} waiting for: {what}",
            conformance::DEADLINE
        );
        sleep(EVENTUALLY_POLL).await;
    }
}

/// Polls `broker.health()` until it is [`BrokerHealth::Reconnecting`] with an attempt number
/// that `attempt_done` accepts (`|_| true` for any), and returns that number; panics naming
/// `what` after [`conformance::DEADLINE`].
pub async fn await_reconnecting<B: Broker + ?Sized>(
    broker: &B,
    what: &str,
    attempt_done: impl Fn(u32) -> bool,
) -> u32 {
    let mut seen = 0;
    eventually(what, || match broker.health() {
        BrokerHealth::Reconnecting { attempt, .. } if attempt_done(attempt) => {
            seen = attempt;
            true
        }
        _ => false,
    })
    .await;
    seen
}
