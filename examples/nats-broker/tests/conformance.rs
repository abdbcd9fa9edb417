//! NatsBroker against sidecast-core's public broker conformance suite, one test per check, each
//! on its own nats-server (or on `SIDECAST_TEST_NATS_URL`; the checks use unique channel names).

mod support;

use sidecast_core::testing::conformance::{self, Capabilities};
use support::{Nats, NatsServer};

#[tokio::test]
async fn health_connected() {
    let server = NatsServer::start().await;
    conformance::health_connected(&Nats::on(&server)).await;
}

#[tokio::test]
async fn round_trip() {
    let server = NatsServer::start().await;
    conformance::round_trip(&Nats::on(&server)).await;
}

#[tokio::test]
async fn several_channels() {
    let server = NatsServer::start().await;
    conformance::several_channels(&Nats::on(&server)).await;
}

#[tokio::test]
async fn fan_out() {
    let server = NatsServer::start().await;
    conformance::fan_out(&Nats::on(&server)).await;
}

#[tokio::test]
async fn order_per_publisher() {
    let server = NatsServer::start().await;
    conformance::order_per_publisher(&Nats::on(&server)).await;
}

#[tokio::test]
async fn large_payload() {
    let server = NatsServer::start().await;
    conformance::large_payload(&Nats::on(&server)).await;
}

#[tokio::test]
async fn binary_payload() {
    let server = NatsServer::start().await;
    conformance::binary_payload(&Nats::on(&server)).await;
}

/// NATS wildcards are not Redis globs: patterns are refused as `Unsupported`.
#[tokio::test]
async fn patterns() {
    let server = NatsServer::start().await;
    conformance::patterns(&Nats::on(&server), false).await;
}

#[tokio::test]
async fn dropped_subscription() {
    let server = NatsServer::start().await;
    conformance::dropped_subscription(&Nats::on(&server)).await;
}

#[tokio::test]
async fn close() {
    let server = NatsServer::start().await;
    conformance::close(&Nats::on(&server)).await;
}

/// The whole suite through `run_all`, as docs/extending.md shows it, with a plain closure as the
/// broker factory.
#[tokio::test(flavor = "multi_thread")]
async fn run_all() {
    let server = NatsServer::start().await;
    let url = server.url().to_owned();
    let make = || async {
        sidecast_example_nats::NatsBroker::connect(support::options(&url))
            .await
            .unwrap()
    };
    conformance::run_all(&make, Capabilities::WITHOUT_PATTERNS).await;
}
