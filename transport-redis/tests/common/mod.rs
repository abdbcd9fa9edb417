//! Shared by the integration tests: a broker factory over a test Redis server.
// Each test file uses a different part of this module.
#![allow(dead_code)]

pub(crate) mod failover;

use std::time::Duration;

use sidecast_core::HistoryRetention;
use sidecast_testkit::RedisServer;
use sidecast_testkit::conformance::{Connect, MakeBroker};
use sidecast_transport_redis::{RedisBroker, RedisOptions};

/// Options for a test server, with a short backoff so that reconnect tests do not wait long,
/// and a history of 100 entries per channel (the conformance check of retention appends more).
pub(crate) fn options(url: &str) -> RedisOptions {
    RedisOptions {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        history: HistoryRetention {
            max_entries: 100,
            ..HistoryRetention::default()
        },
        ..RedisOptions::new(url)
    }
}

/// Makes a new `RedisBroker` (a new "node") with `options` at each call.
pub(crate) fn redis(options: RedisOptions) -> impl MakeBroker<Broker = RedisBroker> {
    Connect::new(options, RedisBroker::connect)
}

/// A factory of brokers on `server`, with [`options`].
pub(crate) fn redis_on(server: &RedisServer) -> impl MakeBroker<Broker = RedisBroker> + use<> {
    redis(options(server.url()))
}

/// Connects or panics with the error.
pub(crate) async fn connect(options: RedisOptions) -> RedisBroker {
    redis(options).make().await
}
