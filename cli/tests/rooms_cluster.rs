//! Room operations across two `sidecast serve` nodes on a real Redis and a real RabbitMQ: a join
//! published by the CLI, `POST /api/rooms` or `redis-cli` on one side is applied by every node,
//! and events to the room then reach the user's sockets on both, also sockets connected later
//! (memberships survive reconnects).
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../web/tests/common/mod.rs"]
mod sio;

use common::{Served, run_failing, run_ok, serve};
use serde_json::{Value, json};
use sidecast_testkit::{RabbitMqServer, RedisServer};
use sio::{CLOSED, SioClient, connect, login_at as login, post_json as post, with_cookie};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

/// The environment of a node and of the CLI on one broker.
fn on_broker(kind: &'static str, url: &str, channel: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SIDECAST_BROKER__KIND", kind.to_owned()),
        ("SIDECAST_BROKER__URL", url.to_owned()),
        ("SIDECAST_BROKER__CHANNEL", channel.to_owned()),
    ]
}

fn node(broker: &[(&'static str, String)]) -> Served {
    let mut envs: Vec<(&str, &str)> = broker.iter().map(|(k, v)| (*k, v.as_str())).collect();
    envs.extend([
        ("SIDECAST_SESSION__SECRET", SECRET),
        ("SIDECAST_AUTH__POLICY", r#"["session", "token"]"#),
        ("SIDECAST_AUTH__TOKENS__CRON", "s3cret"),
    ]);
    serve(&["--bind", "127.0.0.1:0"], &envs)
}

/// `sidecast args...` on the broker, expecting success.
fn sidecast(broker: &[(&'static str, String)], args: &[&str]) {
    let envs: Vec<(&str, &str)> = broker.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_ok(args, &envs);
}

/// `POST /api/rooms` on `base` with the service token, expecting success.
async fn rooms_api(base: &str, body: Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/rooms"))
        .bearer_auth("s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Publishes `event` to `room` (everyone when `None`) through `POST /api/` on `base`.
async fn publish(base: &str, cookie: &str, event: &str, room: Option<&str>) {
    let mut body = json!({"channel": event, "body": event});
    if let Some(room) = room {
        body["to"] = json!(room);
    }
    assert_eq!(post(base, cookie, body).await.status(), 200);
}

/// The scenario both brokers run: Gonzalo has a socket on each node; operations are published on
/// A's side (CLI, `POST /api/rooms` on A, `extra_join`) and must be applied by both.
async fn rooms_across_two_nodes(
    broker: Vec<(&'static str, String)>,
    extra_join: Option<Box<dyn Fn()>>,
    shared_store: bool,
) {
    let (a, b) = (node(&broker), node(&broker));
    let cookie = login(&a.base).await;
    let mut clients: Vec<SioClient> = Vec::new();
    for n in [&a, &b] {
        clients.push(
            connect(&n.socket_url(), with_cookie(&cookie))
                .await
                .accepted(),
        );
    }

    // Join by the CLI; each publish returns once the broker took it, and a node applies bus
    // messages in order, so the event that follows finds the sockets in the room.
    sidecast(
        &broker,
        &["rooms", "join", "game:1", "--to", "user:Gonzalo"],
    );
    publish(&b.base, &cookie, "move", Some("game:1")).await;
    for client in &mut clients {
        assert_eq!(
            client.next_event().await,
            ("move".to_owned(), vec![json!("move")])
        );
    }

    // Memberships survive reconnects: a socket the user connects later, on either node, is in
    // game:1 too; also on a node started after the join (`shared_store`: the broker's or the
    // session store's Redis, or learnt from the running nodes on RabbitMQ).
    let mut later = vec![
        connect(&b.socket_url(), with_cookie(&cookie))
            .await
            .accepted(),
    ];
    let late_node = shared_store.then(|| node(&broker));
    if let Some(c) = &late_node {
        later.push(
            connect(&c.socket_url(), with_cookie(&cookie))
                .await
                .accepted(),
        );
    }
    publish(&a.base, &cookie, "again", Some("game:1")).await;
    for client in clients.iter_mut().chain(later.iter_mut()) {
        assert_eq!(
            client.next_event().await,
            ("again".to_owned(), vec![json!("again")])
        );
    }
    for client in later {
        client.disconnect().await;
    }

    // Leave over HTTP on node A.
    rooms_api(
        &a.base,
        json!({"op": "leave", "rooms": "game:1", "to": "user:Gonzalo"}),
    )
    .await;
    publish(&b.base, &cookie, "lost", Some("game:1")).await;
    publish(&a.base, &cookie, "marker", None).await;
    for client in &mut clients {
        assert_eq!(client.events_until("marker").await, Vec::new());
    }
    // ... and is forgotten: a new socket is not in game:1.
    let mut after_leave = connect(&b.socket_url(), with_cookie(&cookie))
        .await
        .accepted();
    publish(&a.base, &cookie, "lost", Some("game:1")).await;
    publish(&a.base, &cookie, "marker", None).await;
    assert_eq!(after_leave.events_until("marker").await, Vec::new());
    after_leave.disconnect().await;
    for client in &mut clients {
        assert_eq!(client.events_until("marker").await, Vec::new());
    }

    if let Some(join) = extra_join {
        join();
        publish(&a.base, &cookie, "hand-written", Some("game:2")).await;
        for client in &mut clients {
            assert_eq!(client.next_event().await.0, "hand-written");
        }
    }

    // close_room over HTTP, then a disconnect with a reason by the CLI.
    rooms_api(&b.base, json!({"op": "close_room", "rooms": ["game:2"]})).await;
    publish(&b.base, &cookie, "closed", Some("game:2")).await;
    publish(&a.base, &cookie, "marker", None).await;
    for client in &mut clients {
        assert_eq!(client.events_until("marker").await, Vec::new());
    }
    sidecast(
        &broker,
        &[
            "rooms",
            "disconnect",
            "--to",
            "user:Gonzalo",
            "--reason",
            "bye",
        ],
    );
    for client in &mut clients {
        assert_eq!(
            client.next_event().await,
            ("sidecast:disconnect".to_owned(), vec![json!("bye")])
        );
        assert_eq!(client.next_event().await.0, CLOSED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_across_two_nodes_on_redis() {
    let redis = RedisServer::start().await;
    let broker = on_broker("redis", redis.url(), "sidecast");
    let port = redis.port().to_string();
    // Any Redis client can publish a room operation (docs/protocol.md).
    let redis_cli = move || {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &port, "PUBLISH", "sidecast:control"])
            .arg(r#"{"v":1,"control":"join","to":"user:Gonzalo","join":"game:2"}"#)
            .output()
            .unwrap();
        // Nodes A, B and the one started after the first join.
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");
    };
    rooms_across_two_nodes(broker, Some(Box::new(redis_cli)), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_across_two_nodes_on_rabbitmq() {
    let rabbit = RabbitMqServer::shared().await;
    let channel = sidecast_testkit::unique_channel("rooms");
    // Without a Redis session store, each node remembers memberships in its memory, and a node
    // started after the join learns them from the running nodes (decision 19).
    rooms_across_two_nodes(on_broker("amqp", rabbit.url(), &channel), None, true).await;
}

#[test]
fn a_disconnect_names_its_rooms() {
    let stderr = run_failing(
        &["rooms", "disconnect", "--broker", "redis"],
        &[("SIDECAST_BROKER__URL", "redis://127.0.0.1:1")],
    );
    assert!(stderr.contains("--to"), "{stderr}");
    let stderr = run_failing(&["rooms", "join", "game:1", "--broker", "memory"], &[]);
    assert!(stderr.contains("POST /api/rooms"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_rabbitmq_with_a_redis_session_store_reach_nodes_started_later() {
    let rabbit = RabbitMqServer::shared().await;
    let redis = RedisServer::start().await;
    let channel = sidecast_testkit::unique_channel("rooms-redis-sessions");
    let mut broker = on_broker("amqp", rabbit.url(), &channel);
    // The membership store follows the Redis session store (decision 19).
    broker.push(("SIDECAST_SESSION__STORE", "redis".to_owned()));
    broker.push(("SIDECAST_SESSION__URL", redis.url().to_owned()));
    rooms_across_two_nodes(broker, None, true).await;
}
