//! MemoryBroker against the broker conformance suite.
//!
//! The memory broker's backend is the broker value itself, so the factory hands out clones of one
//! `MemoryBroker` per test: "two nodes" are two handles on the same in-process bus.

use std::future::{Ready, ready};

use sidecast_core::MemoryBroker;
use sidecast_core::testing::conformance::{self, Capabilities};

/// A factory of handles on one fresh in-memory backend.
fn backend() -> impl Fn() -> Ready<MemoryBroker> {
    let broker = MemoryBroker::default();
    move || ready(broker.clone())
}

#[tokio::test]
async fn health_connected() {
    conformance::health_connected(&backend()).await;
}

#[tokio::test]
async fn round_trip() {
    conformance::round_trip(&backend()).await;
}

#[tokio::test]
async fn several_channels() {
    conformance::several_channels(&backend()).await;
}

#[tokio::test]
async fn fan_out() {
    conformance::fan_out(&backend()).await;
}

#[tokio::test]
async fn order_per_publisher() {
    conformance::order_per_publisher(&backend()).await;
}

#[tokio::test]
async fn large_payload() {
    conformance::large_payload(&backend()).await;
}

#[tokio::test]
async fn binary_payload() {
    conformance::binary_payload(&backend()).await;
}

#[tokio::test]
async fn patterns() {
    conformance::patterns(&backend(), true).await;
}

#[tokio::test]
async fn dropped_subscription() {
    conformance::dropped_subscription(&backend()).await;
}

#[tokio::test]
async fn close() {
    conformance::close(&backend()).await;
}

/// The whole suite in one go, as `run_all` runs it for a transport without per-check tests.
#[tokio::test]
async fn run_all() {
    conformance::run_all(&backend(), Capabilities::ALL).await;
}
