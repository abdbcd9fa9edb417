//! Several nodes on one real redis-server: every path reaches every node, sessions are shared,
//! and a node survives a Redis restart.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../web/tests/common/mod.rs"]
mod sio;

use std::time::{Duration, Instant};

use common::{Served, run_ok, serve};
use serde_json::json;
use sidecast_core::config::{BrokerKind, SessionStoreKind};
use sidecast_testkit::RedisServer;
use sio::{SioClient, TestServer, await_ready, connect, login_at as login, post_json as post};

/// How long a broker restart may take to be noticed and recovered from.
const RESTART_WAIT: Duration = common::DEADLINE;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn node(redis: &RedisServer, extra: &[(&str, &str)]) -> Served {
    let mut envs = vec![
        ("SIDECAST_BROKER__KIND", "redis"),
        ("SIDECAST_BROKER__URL", redis.url()),
        ("SIDECAST_SESSION__SECRET", SECRET),
    ];
    envs.extend_from_slice(extra);
    serve(&["--bind", "127.0.0.1:0"], &envs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_events_and_cookie_sessions() {
    let redis = RedisServer::start().await;
    let nodes = [node(&redis, &[]), node(&redis, &[]), node(&redis, &[])];
    // Logged in on A; the signed cookie is accepted by B and C (same session.secret).
    let cookie = login(&nodes[0].base).await;
    let mut clients: Vec<SioClient> = Vec::new();
    for n in &nodes {
        clients.push(sio::client_at(&n.socket_url(), &cookie).await);
    }

    for i in 0..10 {
        let r = post(
            &nodes[0].base,
            &cookie,
            json!({"channel": "count", "body": i.to_string()}),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    // Emitting from outside the web server, as the original's external script does.
    let on_redis = [
        ("SIDECAST_BROKER__KIND", "redis"),
        ("SIDECAST_BROKER__URL", redis.url()),
    ];
    run_ok(&["emit", "message", "Hi"], &on_redis);
    run_ok(
        &[
            "emit",
            "news",
            r#"{"n": 1}"#,
            "--json",
            "--to",
            "user:Gonzalo",
        ],
        &on_redis,
    );
    // Any Redis client can publish the native format (docs/protocol.md).
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "PUBLISH", "sidecast"])
        .arg(r#"{"v":1,"event":"message","data":"from redis-cli"}"#)
        .output()
        .unwrap();
    // PUBLISH answers how many subscribers received it: one per node.
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");
    let r = post(
        &nodes[1].base,
        &cookie,
        json!({"channel": "done", "body": "end"}),
    )
    .await;
    assert_eq!(r.status(), 200);

    let mut expected: Vec<sio::Event> = (0..10)
        .map(|i| ("count".to_owned(), vec![json!(i.to_string())]))
        .collect();
    expected.push(("message".to_owned(), vec![json!("Hi")]));
    expected.push(("news".to_owned(), vec![json!({"n": 1})]));
    // The PUBLISH travels over pub/sub, the others through the history: the two paths are not
    // ordered with each other, so it is looked for on its own.
    let plain = ("message".to_owned(), vec![json!("from redis-cli")]);
    for (i, client) in clients.iter_mut().enumerate() {
        let mut events = client.events_until("done").await;
        match events.iter().position(|e| *e == plain) {
            Some(at) => {
                events.remove(at);
            }
            None => assert_eq!(client.next_event().await, plain, "node {i}"),
        }
        assert_eq!(events, expected, "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_delivery_and_logout_reach_every_node() {
    let redis = RedisServer::start().await;
    let tokens = [
        ("SIDECAST_AUTH__POLICY", r#"["session", "token"]"#),
        ("SIDECAST_AUTH__TOKENS__ALICE", "token-alice"),
    ];
    let a = node(&redis, &tokens);
    let b = node(&redis, &tokens);
    let cookie = login(&a.base).await;
    let alice = sio::with_token("token-alice");
    let mut alice_a = connect(&a.socket_url(), alice.clone()).await.accepted();
    let mut alice_b = connect(&b.socket_url(), alice).await.accepted();
    let mut gonzalo_a = sio::client_at(&a.socket_url(), &cookie).await;
    let mut gonzalo_b = sio::client_at(&b.socket_url(), &cookie).await;

    let r = post(
        &a.base,
        &cookie,
        json!({"channel": "message", "body": "for alice", "to": "user:alice"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    run_ok(
        &["emit", "message", "alice again", "--to", "user:alice"],
        &[
            ("SIDECAST_BROKER__KIND", "redis"),
            ("SIDECAST_BROKER__URL", redis.url()),
        ],
    );
    let r = post(&b.base, &cookie, json!({"channel": "done", "body": ""})).await;
    assert_eq!(r.status(), 200);
    let for_alice = vec![
        ("message".to_owned(), vec![json!("for alice")]),
        ("message".to_owned(), vec![json!("alice again")]),
    ];
    assert_eq!(alice_a.events_until("done").await, for_alice);
    assert_eq!(alice_b.events_until("done").await, for_alice);
    assert_eq!(gonzalo_a.events_until("done").await, vec![]);
    assert_eq!(gonzalo_b.events_until("done").await, vec![]);

    // Logging out on A disconnects Gonzalo's sockets on A and on B; alice stays connected.
    sio::logout_at(&a.base, &cookie).await;
    assert_eq!(gonzalo_a.next_event().await.0, sio::CLOSED);
    assert_eq!(gonzalo_b.next_event().await.0, sio::CLOSED);
    let r = sio::post_api_with(
        &b.base,
        &[("authorization", "Bearer token-alice")],
        json!({"channel": "still", "body": "here"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(alice_b.next_event().await.0, "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_session_store_is_shared_and_revocable() {
    let redis = RedisServer::start().await;
    let store = [("SIDECAST_SESSION__STORE", "redis")];
    let a = node(&redis, &store);
    let b = node(&redis, &store);
    let cookie = login(&a.base).await;
    sio::client_at(&b.socket_url(), &cookie).await;
    // Logging out on B ends the session for every node: the same cookie is refused on A.
    sio::logout_at(&b.base, &cookie).await;
    let reason = sio::refused_at(&a.socket_url(), &cookie).await;
    assert!(reason.contains("unauthorized"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_survives_a_redis_restart() {
    let mut redis = RedisServer::start_local().await;
    let mut config = sio::broker_config(BrokerKind::Redis, redis.url());
    config.session.store = SessionStoreKind::Cookie;
    let (server, cookie, mut client) = TestServer::start_signed_in(config).await;
    await_ready(&server.base, 200, RESTART_WAIT).await;

    redis.stop().await;
    await_ready(&server.base, 503, RESTART_WAIT).await;
    // Publishing during the outage fails fast with 503 and Retry-After, never hangs or 500s.
    let body = server.publish_in_outage(&cookie).await;
    assert!(body["error"].as_str().unwrap().contains("redis"), "{body}");

    redis.restart().await;
    let back = Instant::now();
    let ready = await_ready(&server.base, 200, RESTART_WAIT).await;
    server
        .round_trip(&cookie, &mut client, "after restart")
        .await;
    eprintln!(
        "redis restart: node ready {:?} and first event delivered {:?} after redis was back",
        ready - back,
        back.elapsed()
    );
    server.stop().await;
}
