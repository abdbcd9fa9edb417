//! RedisBroker against the broker conformance suite, one test per check, each on its own
//! redis-server (or on `SIDECAST_TEST_REDIS_URL`; the checks use unique channel names).

mod common;

use common::Redis;
use sidecast_core::testing::RedisServer;
use sidecast_core::testing::conformance;

#[tokio::test]
async fn health_connected() {
    let server = RedisServer::start().await;
    conformance::health_connected(&Redis::on(&server)).await;
}

#[tokio::test]
async fn round_trip() {
    let server = RedisServer::start().await;
    conformance::round_trip(&Redis::on(&server)).await;
}

#[tokio::test]
async fn several_channels() {
    let server = RedisServer::start().await;
    conformance::several_channels(&Redis::on(&server)).await;
}

#[tokio::test]
async fn fan_out() {
    let server = RedisServer::start().await;
    conformance::fan_out(&Redis::on(&server)).await;
}

#[tokio::test]
async fn order_per_publisher() {
    let server = RedisServer::start().await;
    conformance::order_per_publisher(&Redis::on(&server)).await;
}

#[tokio::test]
async fn large_payload() {
    let server = RedisServer::start().await;
    conformance::large_payload(&Redis::on(&server)).await;
}

#[tokio::test]
async fn binary_payload() {
    let server = RedisServer::start().await;
    conformance::binary_payload(&Redis::on(&server)).await;
}

#[tokio::test]
async fn patterns() {
    let server = RedisServer::start().await;
    conformance::patterns(&Redis::on(&server), true).await;
}

#[tokio::test]
async fn dropped_subscription() {
    let server = RedisServer::start().await;
    conformance::dropped_subscription(&Redis::on(&server)).await;
}

#[tokio::test]
async fn close() {
    let server = RedisServer::start().await;
    conformance::close(&Redis::on(&server)).await;
}

/// The whole suite through `run_all`, as a third-party transport would call it.
#[tokio::test]
async fn run_all() {
    let server = RedisServer::start().await;
    conformance::run_all(&Redis::on(&server), conformance::Capabilities::ALL).await;
}
