//! Shared by the integration tests: a broker factory over a test Redis server.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::time::Duration;

use sidecast_testkit::RedisServer;
use sidecast_testkit::conformance::MakeBroker;
use sidecast_transport_redis::{RedisBroker, RedisOptions};

/// Options for a test server, with a short backoff so that reconnect tests do not wait long.
pub(crate) fn options(url: &str) -> RedisOptions {
    RedisOptions {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..RedisOptions::new(url)
    }
}

/// Makes a new `RedisBroker` (a new "node") on the server at each call.
pub(crate) struct Redis(pub(crate) RedisOptions);

impl Redis {
    pub(crate) fn on(server: &RedisServer) -> Self {
        Self(options(server.url()))
    }
}

impl MakeBroker for Redis {
    type Broker = RedisBroker;

    async fn make(&self) -> RedisBroker {
        connect(self.0.clone()).await
    }
}

/// Connects or panics with the error.
pub(crate) async fn connect(options: RedisOptions) -> RedisBroker {
    RedisBroker::connect(options)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Redis server: {e}"))
}
