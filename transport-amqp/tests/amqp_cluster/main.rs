//! AmqpBroker against a three-node RabbitMQ cluster ([`sidecast_testkit::RabbitMqCluster`]),
//! given every node's URL: the conformance suite, and a broker that keeps publishing and
//! receiving when the node it is connected to is SIGKILLed.
//!
//! One cluster per test binary (starting one takes seconds), shared by the conformance checks;
//! the kill test starts its own.

#[path = "../amqp/common.rs"]
#[allow(dead_code)]
mod common;
mod conformance;
mod failover;

use sidecast_testkit::RabbitMqCluster;
use tokio::sync::OnceCell;
use tokio::time::Instant;

static SHARED: OnceCell<RabbitMqCluster> = OnceCell::const_new();

/// The cluster the conformance checks share, started by the first that asks.
pub(crate) async fn shared_cluster() -> &'static RabbitMqCluster {
    SHARED.get_or_init(start_cluster).await
}

/// Starts a cluster and prints how long that took.
pub(crate) async fn start_cluster() -> RabbitMqCluster {
    let started = Instant::now();
    let cluster = RabbitMqCluster::start().await;
    eprintln!(
        "three-node RabbitMQ cluster started in {:?}",
        started.elapsed()
    );
    cluster
}
