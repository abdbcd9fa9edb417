//! AmqpBroker against the broker conformance suite, one test per check, all on the test
//! process' shared RabbitMQ (or on `SIDECAST_TEST_AMQP_URL`; the checks use unique channel
//! names, hence unique exchanges).

use crate::common::Amqp;
use sidecast_core::testing::RabbitMqServer;
use sidecast_core::testing::conformance::{self, Capabilities};

#[tokio::test]
async fn health_connected() {
    let server = RabbitMqServer::shared().await;
    conformance::health_connected(&Amqp::on(server)).await;
}

#[tokio::test]
async fn round_trip() {
    let server = RabbitMqServer::shared().await;
    conformance::round_trip(&Amqp::on(server)).await;
}

#[tokio::test]
async fn several_channels() {
    let server = RabbitMqServer::shared().await;
    conformance::several_channels(&Amqp::on(server)).await;
}

#[tokio::test]
async fn fan_out() {
    let server = RabbitMqServer::shared().await;
    conformance::fan_out(&Amqp::on(server)).await;
}

#[tokio::test]
async fn order_per_publisher() {
    let server = RabbitMqServer::shared().await;
    conformance::order_per_publisher(&Amqp::on(server)).await;
}

#[tokio::test]
async fn large_payload() {
    let server = RabbitMqServer::shared().await;
    conformance::large_payload(&Amqp::on(server)).await;
}

#[tokio::test]
async fn binary_payload() {
    let server = RabbitMqServer::shared().await;
    conformance::binary_payload(&Amqp::on(server)).await;
}

#[tokio::test]
async fn patterns_are_refused() {
    let server = RabbitMqServer::shared().await;
    conformance::patterns(&Amqp::on(server), Capabilities::WITHOUT_PATTERNS.patterns).await;
}

#[tokio::test]
async fn dropped_subscription() {
    let server = RabbitMqServer::shared().await;
    conformance::dropped_subscription(&Amqp::on(server)).await;
}

#[tokio::test]
async fn close() {
    let server = RabbitMqServer::shared().await;
    conformance::close(&Amqp::on(server)).await;
}

/// The whole suite through `run_all`, as a third-party transport would call it.
#[tokio::test]
async fn run_all() {
    let server = RabbitMqServer::shared().await;
    conformance::run_all(&Amqp::on(server), Capabilities::WITHOUT_PATTERNS).await;
}
