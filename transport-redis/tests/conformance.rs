//! RedisBroker against the broker conformance suite, one test per check, each on its own
//! redis-server (or on `SIDECAST_TEST_REDIS_URL`; the checks use unique channel names).

mod common;

use common::redis_on;
use sidecast_testkit::RedisServer;
use sidecast_testkit::conformance::{Capabilities, WithServer};

sidecast_testkit::conformance_tests!(
    WithServer::new(RedisServer::start().await, redis_on),
    Capabilities::ALL
);
