//! The `sidecast` binary on a Redis Sentinel set (`redis+sentinel://` in `SIDECAST_BROKER__URL`):
//! `sidecast emit` and `sidecast rooms` reach a node through the sentinels, before and after a
//! failover that the node (`sidecast serve`) follows.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../web/tests/common/mod.rs"]
mod sio;

use std::time::{Duration, Instant};

use common::{run_ok, serve, sidecast};
use serde_json::json;
use sidecast_testkit::RedisSentinelSet;
use sio::{SioClient, await_ready, client_at, login_at};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

/// How long the switch may take: the sentinels' detection and promotion, then the node's move.
const FOLLOW: Duration = Duration::from_secs(30);

/// Receives events until `("message", [body])`.
async fn until_message(client: &mut SioClient, body: &str) {
    loop {
        let event = client.next_event().await;
        if event == ("message".to_owned(), vec![json!(body)]) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_and_rooms_reach_a_node_across_a_failover() {
    let mut set = RedisSentinelSet::start().await;
    let url = set.url();
    let on_sentinel = [
        ("SIDECAST_BROKER__KIND", "redis"),
        ("SIDECAST_BROKER__URL", url.as_str()),
        ("SIDECAST_SESSION__SECRET", SECRET),
    ];
    let node = serve(&["--bind", "127.0.0.1:0"], &on_sentinel);
    let cookie = login_at(&node.base).await;
    let mut client = client_at(&node.socket_url(), &cookie).await;

    run_ok(&["emit", "message", "before"], &on_sentinel);
    until_message(&mut client, "before").await;
    run_ok(
        &["rooms", "join", "game:1", "--to", "user:Gonzalo"],
        &on_sentinel,
    );
    run_ok(&["emit", "move", "m1", "--to", "game:1"], &on_sentinel);
    assert_eq!(
        client.next_event().await,
        ("move".to_owned(), vec![json!("m1")])
    );

    let old = set.kill_master().await;
    let new = set.wait_for_promotion(&old).await;
    await_ready(&node.base, 200, FOLLOW).await;
    // A new `sidecast emit` asks the sentinels and finds the new master; until the node's own
    // connections have moved an emit may fail (exit 1, nothing acknowledged): it is retried.
    let deadline = Instant::now() + FOLLOW;
    loop {
        let output = sidecast()
            .args(["emit", "message", "after"])
            .envs(on_sentinel)
            .output()
            .unwrap();
        if output.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sidecast emit kept failing: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_message(&mut client, "after").await;
    // The user's membership, stored in Redis before the failover, is read from the new master:
    // a socket the user connects now is in game:1 too.
    let mut later = client_at(&node.socket_url(), &cookie).await;
    run_ok(&["emit", "move", "m2", "--to", "game:1"], &on_sentinel);
    for client in [&mut client, &mut later] {
        assert_eq!(
            client.next_event().await,
            ("move".to_owned(), vec![json!("m2")])
        );
    }

    let moved = format!("redis master changed from {old} to {new} (failover)");
    assert_eq!(
        node.log()
            .iter()
            .filter(|line| line.contains(&moved))
            .count(),
        1,
        "{:#?}",
        node.log()
    );
}
