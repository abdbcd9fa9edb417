//! A node on a Redis Sentinel set (`redis+sentinel://` in `broker.url`, sessions in Redis too)
//! follows a failover: `/readyz` says the broker is reconnecting during the switch, `POST /api/`
//! answers 503 (never 500) meanwhile and 200 after, a connected Socket.IO client receives again,
//! the session store works on the new master, and `/metrics` and the log tell of the failover
//! once.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use common::failover::{self, FOLLOW};
use common::{TestServer, await_ready};
use serde_json::json;
use sidecast_testkit::RedisSentinelSet;
use sidecast_testkit::log::CapturedLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_follows_a_sentinel_failover() {
    let captured = CapturedLog::global("info");
    let mut set = RedisSentinelSet::start().await;
    let config = failover::config(&set.url());
    let (server, cookie, mut client) = TestServer::start_signed_in(config).await;
    server.round_trip(&cookie, &mut client, "before").await;
    await_ready(&server.base, 200, FOLLOW).await;

    let old = set.kill_master().await;
    let killed = Instant::now();
    // The node notices (its connections to the master break) and says so.
    let body: serde_json::Value = {
        await_ready(&server.base, 503, FOLLOW).await;
        server.get("/readyz").await.json().await.unwrap()
    };
    let new = set.wait_for_promotion(&old).await;
    let promoted = Instant::now();
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(
        body["broker"].as_str().unwrap().starts_with("reconnecting"),
        "{body}"
    );

    // POST /api/: 503 with Retry-After until the new master is reached, then 200; never a 500.
    let accepted = failover::post_until_accepted(&server, promoted).await;
    // Once every connection is on the new master, the client receives again.
    await_ready(&server.base, 200, FOLLOW).await;
    let marker = "after-failover";
    server
        .publish(&cookie, json!({"channel": "message", "body": marker}))
        .await;
    let mut got = client.next_event().await;
    while got.1 != vec![serde_json::Value::from(marker)] {
        assert_eq!(got.0, "message", "{got:?}");
        got = client.next_event().await;
    }
    let delivered = Instant::now();

    // Sessions are written to and read from the new master.
    let fresh = server.login().await;
    let mut second = server.client(&fresh).await;
    server.round_trip(&fresh, &mut second, "new-session").await;

    let metrics = server.get_text("/metrics").await;
    assert!(
        metrics.contains("sidecast_broker_failovers_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("sidecast_broker_master{{address=\"{new}\"}} 1\n")),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&format!("address=\"{old}\"")),
        "{metrics}"
    );
    let line =
        format!("redis master changed from {old} to {new} (failover); moving every connection");
    assert_eq!(captured.count(&line), 1, "{}", captured.text());
    eprintln!(
        "kill -> promotion {:?}; promotion -> first POST /api/ 200 {:?}; promotion -> first \
         delivery {:?}",
        promoted - killed,
        accepted.saturating_duration_since(promoted),
        delivered - promoted
    );
    server.stop().await;
}
