//! Cluster-wide presence across three `sidecast serve` processes on a real Redis and on a real
//! RabbitMQ alone: joins and leaves reach every node's view and the room's sockets, a second tab
//! is no join, `sidecast presence` reads the view from the bus, and a node killed with SIGKILL
//! disappears, with leaves, after its missed heartbeats.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../web/tests/common/mod.rs"]
mod sio;

use std::time::{Duration, Instant};

use common::{Served, run_ok, serve};
use serde_json::{Value, json};
use sidecast_testkit::{RabbitMqServer, RedisServer};
use sio::{ClientOptions, SioClient, connect};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
const HEARTBEAT_MS: u64 = 300;
const MISSED: u64 = 3;

fn on_broker(kind: &'static str, url: &str, channel: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SIDECAST_BROKER__KIND", kind.to_owned()),
        ("SIDECAST_BROKER__URL", url.to_owned()),
        ("SIDECAST_BROKER__CHANNEL", channel.to_owned()),
        ("SIDECAST_PRESENCE__ROOMS", r#"["chat:*"]"#.to_owned()),
        ("SIDECAST_PRESENCE__HEARTBEAT_MS", HEARTBEAT_MS.to_string()),
        ("SIDECAST_PRESENCE__MISSED_HEARTBEATS", MISSED.to_string()),
        ("SIDECAST_PRESENCE__DIFF_INTERVAL_MS", "50".to_owned()),
    ]
}

fn node(broker: &[(&'static str, String)]) -> Served {
    let mut envs: Vec<(&str, &str)> = broker.iter().map(|(k, v)| (*k, v.as_str())).collect();
    envs.extend([
        ("SIDECAST_SESSION__SECRET", SECRET),
        ("SIDECAST_AUTH__POLICY", r#"["session", "token"]"#),
        ("SIDECAST_AUTH__TOKENS__CRON", "s3cret"),
        ("SIDECAST_AUTH__TOKENS__ADA", "tok-ada"),
        ("SIDECAST_AUTH__TOKENS__BOB", "tok-bob"),
        ("SIDECAST_AUTH__TOKENS__CY", "tok-cy"),
    ]);
    serve(&["--bind", "127.0.0.1:0"], &envs)
}

async fn client(node: &Served, token: &str) -> SioClient {
    let options = ClientOptions {
        auth: Some(json!({ "token": token })),
        ..ClientOptions::default()
    };
    connect(&node.socket_url(), options).await.accepted()
}

/// `GET /api/presence?room=<room>` on `base` with `token` (none: no credentials).
async fn read(base: &str, room: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{base}/api/presence?room={room}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The users of `room` on `base` as `[(user, connections)]`.
async fn users(base: &str, room: &str) -> Vec<(String, u64)> {
    let (status, body) = read(base, room, Some("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    users_of(&body)
}

fn users_of(body: &Value) -> Vec<(String, u64)> {
    body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap().to_owned(),
                u["connections"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Waits until `base` lists `expected` in `room`; fails after `within`.
async fn await_users(base: &str, room: &str, expected: &[(&str, u64)], within: Duration) {
    let expected: Vec<(String, u64)> = expected
        .iter()
        .map(|(u, c)| ((*u).to_owned(), *c))
        .collect();
    let deadline = Instant::now() + within;
    loop {
        let seen = users(base, room).await;
        if seen == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base} sees {seen:?} in {room}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Makes the sockets of `user` join `room` through `POST /api/rooms` on `base`.
async fn join(base: &str, user: &str, room: &str) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/rooms"))
        .bearer_auth("s3cret")
        .json(&json!({"op": "join", "rooms": room, "to": format!("user:{user}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The next `sidecast:presence_diff` of `client` with a leave.
async fn next_leave(client: &mut SioClient) -> Value {
    loop {
        let (name, args) = client.next_event().await;
        if name == "sidecast:presence_diff" && args[0]["leaves"] != json!([]) {
            return args[0].clone();
        }
    }
}

async fn presence_across_three_nodes(broker: Vec<(&'static str, String)>) {
    let (n1, n2, mut n3) = (node(&broker), node(&broker), node(&broker));
    let ada = client(&n1, "tok-ada").await;
    let mut bob = client(&n2, "tok-bob").await;
    let _cy = client(&n3, "tok-cy").await;
    let _ada_tab = client(&n3, "tok-ada").await;
    for user in ["ada", "bob", "cy"] {
        join(&n1.base, user, "chat:1").await;
    }
    let everyone = [("ada", 2), ("bob", 1), ("cy", 1)];
    for node in [&n1, &n2, &n3] {
        await_users(&node.base, "chat:1", &everyone, Duration::from_secs(20)).await;
    }
    // Bob's socket got the room's state after it joined.
    let (name, args) = bob.next_event().await;
    assert_eq!(name, "sidecast:presence");
    assert_eq!(args[0]["room"], "chat:1");

    // A process outside the nodes reads the same view from the bus.
    let envs: Vec<(&str, &str)> = broker.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let output = run_ok(&["presence", "chat:1"], &envs);
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        users_of(&body),
        everyone.map(|(u, c)| (u.to_owned(), c)).to_vec(),
        "{body}"
    );
    assert_eq!(
        (
            body["user_count"].as_u64(),
            body["connection_count"].as_u64()
        ),
        (Some(3), Some(4))
    );

    // Credentials are checked as for POST /api/; bad rooms are 4xx with a JSON error.
    assert_eq!(read(&n1.base, "chat:1", None).await.0, 401);
    let (status, body) = read(&n2.base, "lobby", Some("s3cret")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("presence.rooms"),
        "{body}"
    );

    // SIGKILL: node 3 sends nothing more; the others drop its sockets after the missed
    // heartbeats, and the users left (cy) are leaves for the room's sockets.
    n3.child.kill().unwrap();
    let _ = n3.child.wait();
    let killed = Instant::now();
    let expiry = Duration::from_millis(HEARTBEAT_MS * (MISSED + 1));
    let remaining = [("ada", 1), ("bob", 1)];
    for node in [&n1, &n2] {
        await_users(
            &node.base,
            "chat:1",
            &remaining,
            expiry + Duration::from_secs(5),
        )
        .await;
    }
    eprintln!(
        "node 3's sockets dropped {:?} after the SIGKILL",
        killed.elapsed()
    );
    let diff = next_leave(&mut bob).await;
    assert_eq!(
        diff["leaves"],
        json!([{"user": "cy"}]),
        "ada still has a tab: {diff}"
    );
    assert_eq!(diff["user_count"], 2);

    // A graceful leave: ada's last tab.
    ada.disconnect().await;
    let diff = next_leave(&mut bob).await;
    assert_eq!(diff["leaves"], json!([{"user": "ada"}]));
    await_users(&n1.base, "chat:1", &[("bob", 1)], Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_across_three_nodes_on_redis() {
    let redis = RedisServer::start().await;
    presence_across_three_nodes(on_broker("redis", redis.url(), "sidecast")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_across_three_nodes_on_rabbitmq() {
    let rabbit = RabbitMqServer::shared().await;
    let channel = sidecast_testkit::unique_channel("presence");
    presence_across_three_nodes(on_broker("amqp", rabbit.url(), &channel)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_converge_again_after_a_redis_outage() {
    let mut redis = RedisServer::start_local().await;
    let broker = on_broker("redis", redis.url(), "sidecast");
    let (n1, n2) = (node(&broker), node(&broker));
    let ada = client(&n1, "tok-ada").await;
    let _bob = client(&n2, "tok-bob").await;
    join(&n1.base, "ada", "chat:1").await;
    join(&n1.base, "bob", "chat:1").await;
    let both = [("ada", 1), ("bob", 1)];
    for node in [&n1, &n2] {
        await_users(&node.base, "chat:1", &both, Duration::from_secs(20)).await;
    }
    // During the outage each node drops the other (no heartbeats), and Ada's leave, sent while
    // Redis is down, is lost.
    redis.stop().await;
    ada.disconnect().await;
    await_users(&n1.base, "chat:1", &[], Duration::from_secs(10)).await;
    await_users(&n2.base, "chat:1", &[("bob", 1)], Duration::from_secs(10)).await;
    redis.restart().await;
    // Back: each asks the other for its state again (a node it does not know, or a gap in its
    // numbers), so node 1 sees Bob again and node 2 has Ada's leave.
    await_users(&n1.base, "chat:1", &[("bob", 1)], Duration::from_secs(30)).await;
    await_users(&n2.base, "chat:1", &[("bob", 1)], Duration::from_secs(30)).await;
}

#[test]
fn the_cli_refuses_bad_rooms_and_the_memory_broker() {
    let stderr = common::run_failing(&["presence", "a\u{7}b", "--broker", "redis"], &[]);
    assert!(stderr.contains("control character"), "{stderr}");
    let stderr = common::run_failing(&["presence", "chat:1", "--broker", "memory"], &[]);
    assert!(stderr.contains("GET /api/presence"), "{stderr}");
    let stderr = common::run_failing(
        &["presence", "lobby", "--broker", "redis"],
        &[("SIDECAST_PRESENCE__ROOMS", r#"["chat:*"]"#)],
    );
    assert!(stderr.contains("presence.rooms"), "{stderr}");
}
