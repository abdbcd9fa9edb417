//! The broker conformance suite against a three-node RabbitMQ cluster
//! ([`sidecast_testkit::RabbitMqCluster`]), the broker given every node's URL.
//!
//! One cluster per test binary (starting one takes tens of seconds), shared by the checks;
//! the node kills are in `amqp_cluster_kill`, with a cluster of their own.
//!
//! * [`conformance`]: the suite, the broker given all three URLs.
//! * [`replicas`]: streams with fewer replicas than nodes, and a replica deleted under a
//!   consumer (each test on its own stream queue, so they share the cluster).

#[path = "../amqp/common.rs"]
#[allow(dead_code)]
mod common;
mod conformance;
mod replicas;

use sidecast_testkit::RabbitMqCluster;
use tokio::sync::OnceCell;
use tokio::time::Instant;

static SHARED: OnceCell<RabbitMqCluster> = OnceCell::const_new();

/// The cluster the conformance checks share, started by the first that asks.
pub(crate) async fn shared_cluster() -> &'static RabbitMqCluster {
    SHARED.get_or_init(start_cluster).await
}

/// Starts a cluster and prints how long that took.
async fn start_cluster() -> RabbitMqCluster {
    let started = Instant::now();
    let cluster = RabbitMqCluster::start().await;
    eprintln!(
        "three-node RabbitMQ cluster started in {:?}",
        started.elapsed()
    );
    cluster
}
