//! A node on a Redis Cluster (`redis+cluster://` in `broker.url`, sessions and memberships in
//! the cluster too) serves, and keeps serving after the primary that holds its channel is
//! SIGKILLed: with recovery on (the history stream `sidecast:history:{sidecast}`) and with
//! recovery off (Sidecast's channel as sharded pub/sub on its slot's primary).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::failover::{self, FOLLOW};
use common::{TestServer, await_ready};
use serde_json::json;
use sidecast_testkit::RedisCluster;

/// Starts a node on `cluster`, checks a round trip, kills the primary that serves `key`, and
/// checks that `POST /api/` answers 503 with `Retry-After` or 200 (never anything else) until it
/// answers 200, that the client receives again and that a new session works.
async fn node_survives_a_killed_primary(recovery: bool, key: &str) {
    let mut cluster = RedisCluster::start().await;
    let mut config = failover::config(&cluster.url());
    config.recovery.enabled = recovery;
    let (server, cookie, mut client) = TestServer::start_signed_in(config).await;
    server.round_trip(&cookie, &mut client, "before").await;
    await_ready(&server.base, 200, FOLLOW).await;
    if !recovery {
        // The node's channel is sharded: the slot's primary counts its shard subscriber.
        let owner = cluster.primary_of("sidecast").await;
        let subscribers = cluster
            .cli(&owner, &["PUBSUB", "SHARDNUMSUB", "sidecast"])
            .await
            .unwrap();
        assert_eq!(
            subscribers.lines().last().map(str::trim),
            Some("1"),
            "{subscribers}"
        );
    }

    let old = cluster.kill_primary_of(key).await;
    let killed = Instant::now();
    cluster.wait_for_promotion(key, &old).await;
    let promoted = Instant::now();

    let accepted = failover::post_until_accepted(&server, promoted).await;
    // The client receives again: a marker published after the switch arrives (events published
    // during the switch may come first; with recovery off some may be lost).
    let marker = "after-failover";
    let deadline = Instant::now() + FOLLOW;
    'received: loop {
        server
            .publish(&cookie, json!({"channel": "message", "body": marker}))
            .await;
        while let Ok(got) =
            tokio::time::timeout(Duration::from_millis(500), client.next_event()).await
        {
            assert_eq!(got.0, "message", "{got:?}");
            if got.1 == vec![serde_json::Value::from(marker)] {
                break 'received;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the client received nothing after the switch"
        );
    }
    let delivered = Instant::now();

    // Sessions are written to and read from the cluster.
    let fresh = server.login().await;
    let mut second = server.client(&fresh).await;
    server.round_trip(&fresh, &mut second, "new-session").await;
    eprintln!(
        "recovery {recovery}: kill -> promotion {:?}; promotion -> first POST /api/ 200 {:?}; \
         promotion -> first delivery {:?}",
        promoted - killed,
        accepted.saturating_duration_since(promoted),
        delivered - promoted
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_recovery_survives_a_killed_primary() {
    node_survives_a_killed_primary(true, "sidecast:history:{sidecast}").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_sharded_pubsub_survives_a_killed_primary() {
    node_survives_a_killed_primary(false, "sidecast").await;
}
