//! Cluster-wide presence between nodes in one process on a shared memory broker, with a real
//! Socket.IO client: the view on every node, second tabs, the reserved events, a graceful stop,
//! limits, the API's refusals.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::{ClientOptions, SioClient, TestServer, connect, memory_config};
use serde_json::{Value, json};
use sidecast_core::{
    Action, AuthError, AuthPolicy, AuthRequest, Broker, BrokerError, BrokerHealth, ChannelSpec,
    Config, MemoryBroker, Principal, SharedBroker, Subscription,
};

/// One node's handle on a memory broker shared by the nodes of a test: closing it ends that
/// node's subscriptions only.
#[derive(Debug)]
struct Handle {
    broker: MemoryBroker,
    closed: tokio::sync::watch::Sender<bool>,
}

#[async_trait]
impl Broker for Handle {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        if *self.closed.borrow() {
            return Err(BrokerError::Closed);
        }
        self.broker.publish(channel, payload).await
    }
    async fn subscribe(&self, channels: &[ChannelSpec]) -> Result<Subscription, BrokerError> {
        let mut inner = self.broker.subscribe(channels).await?;
        let (tx, subscription) = Subscription::bounded(4096);
        let mut closed = self.closed.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = inner.recv() => match message {
                        Some(message) => { tx.deliver(message); }
                        None => return,
                    },
                    _ = closed.wait_for(|c| *c) => return,
                }
            }
        });
        Ok(subscription)
    }
    fn health(&self) -> BrokerHealth {
        if *self.closed.borrow() {
            BrokerHealth::Closed
        } else {
            self.broker.health()
        }
    }
    async fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// The memory broker the nodes of a test share.
#[derive(Clone)]
struct Shared(MemoryBroker);

/// Sockets say who they are with `auth: {token: "user|room,room"}`; the policy makes that the
/// principal, with its rooms and an `info`. HTTP callers: `Bearer reader` may read presence,
/// any other token may not.
struct TestPolicy;

#[async_trait]
impl AuthPolicy for TestPolicy {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        let token = req.token.unwrap_or_default();
        match req.action {
            Action::Presence { .. } if token == "reader" => Ok(Principal::new("reader")),
            Action::Presence { room, .. } => Err(AuthError::forbidden(format!(
                "may not read the presence of {room}"
            ))),
            _ => {
                let (user, rooms) = token.split_once('|').unwrap_or((token, ""));
                let rooms = rooms.split(',').filter(|r| !r.is_empty());
                let info = if user == "big" {
                    json!({ "blob": "x".repeat(5000) })
                } else {
                    json!({ "name": user.to_uppercase() })
                };
                Ok(Principal::new(user).with_rooms(rooms).with_info(info))
            }
        }
    }
}

fn config() -> Config {
    let mut config = memory_config();
    config.recovery.enabled = false;
    config.presence.rooms = vec!["chat:*".into()];
    config.presence.heartbeat_ms = 200;
    config.presence.diff_interval_ms = 50;
    config
}

async fn node(broker: &Shared, config: Config) -> TestServer {
    let broker: SharedBroker = std::sync::Arc::new(Handle {
        broker: broker.0.clone(),
        closed: tokio::sync::watch::channel(false).0,
    });
    TestServer::start_with(
        sidecast_web::Sidecast::builder()
            .config(config)
            .broker(broker)
            .auth(TestPolicy),
    )
    .await
}

async fn client(server: &TestServer, token: &str) -> SioClient {
    let options = ClientOptions {
        auth: Some(json!({ "token": token })),
        ..ClientOptions::default()
    };
    connect(&server.socket_url(), options).await.accepted()
}

/// `GET /api/presence?<query>` on `server` with `token`: status and JSON body.
async fn read(server: &TestServer, query: &str, token: &str) -> (u16, Value) {
    let response = server
        .request(reqwest::Method::GET, &format!("/api/presence?{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The users of `room` on `server` as `[(user, connections)]`.
async fn users(server: &TestServer, room: &str) -> Vec<(String, u64)> {
    let (status, body) = read(server, &format!("room={room}"), "reader").await;
    assert_eq!(status, 200, "{body}");
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

async fn await_users(server: &TestServer, room: &str, expected: &[(&str, u64)]) {
    let expected: Vec<(String, u64)> = expected
        .iter()
        .map(|(u, c)| ((*u).to_owned(), *c))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = users(server, room).await;
        if seen == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} sees {seen:?} in {room}, expected {expected:?}",
            server.base
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next presence event (`sidecast:presence` or `sidecast:presence_diff`) of `client`.
async fn presence_event(client: &mut SioClient) -> (String, Value) {
    loop {
        let (name, mut args) = client.next_event().await;
        if name.starts_with("sidecast:presence") {
            return (name, args.remove(0));
        }
    }
}

/// The next `sidecast:presence_diff` of `client` that `wanted` accepts; no other diff before it
/// may have joins or leaves other than Ada's own join.
async fn diff_where(client: &mut SioClient, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let (name, diff) = presence_event(client).await;
        assert_eq!(name, "sidecast:presence_diff", "{diff}");
        if wanted(&diff) {
            return diff;
        }
        assert_eq!(
            diff["joins"],
            json!([{"user": "ada", "info": {"name": "ADA"}}]),
            "{diff}"
        );
        assert_eq!(diff["leaves"], json!([]), "{diff}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_reach_every_nodes_view_and_the_rooms_sockets() {
    let broker = Shared(MemoryBroker::new(1024));
    let n1 = node(&broker, config()).await;
    let n2 = node(&broker, config()).await;

    let mut ada = client(&n1, "ada|chat:1").await;
    let (name, snapshot) = presence_event(&mut ada).await;
    assert_eq!(name, "sidecast:presence");
    assert_eq!(snapshot["room"], "chat:1");
    assert_eq!(snapshot["user_count"], 1);
    assert_eq!(snapshot["users"][0]["user"], "ada");
    assert_eq!(snapshot["users"][0]["info"], json!({"name": "ADA"}));

    let bob = client(&n2, "bob|chat:1").await;
    await_users(&n1, "chat:1", &[("ada", 1), ("bob", 1)]).await;
    await_users(&n2, "chat:1", &[("ada", 1), ("bob", 1)]).await;
    // Diffs may repeat what the snapshot showed (Ada's own join): clients apply them as set
    // operations.
    let diff = diff_where(&mut ada, |d| d["joins"].to_string().contains("bob")).await;
    // Ada's own join may be coalesced into the same diff.
    let bob_joined = json!({"user": "bob", "info": {"name": "BOB"}});
    assert!(
        diff["joins"].as_array().unwrap().contains(&bob_joined),
        "{diff}"
    );
    assert_eq!(diff["user_count"], 2);

    // Ada's second tab, on the other node: one user, two connections, no join.
    let tab = client(&n2, "ada|chat:1").await;
    await_users(&n1, "chat:1", &[("ada", 2), ("bob", 1)]).await;
    tab.disconnect().await;
    await_users(&n1, "chat:1", &[("ada", 1), ("bob", 1)]).await;
    // Bob's last tab closes: that is the leave, and the first diff Ada gets after bob's join.
    bob.disconnect().await;
    await_users(&n1, "chat:1", &[("ada", 1)]).await;
    let diff = diff_where(&mut ada, |d| d["leaves"] != json!([])).await;
    assert_eq!(diff["joins"], json!([]), "no join for a second tab: {diff}");
    assert_eq!(diff["leaves"], json!([{"user": "bob"}]));
    assert_eq!(n1.state.metrics().presence_nodes.get(), 2);
    assert!(
        n1.state
            .metrics()
            .render()
            .contains("sidecast_presence_messages_total")
    );
    ada.disconnect().await;
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_operations_move_users_in_and_out_and_a_stopped_node_leaves_at_once() {
    let broker = Shared(MemoryBroker::new(1024));
    let n1 = node(&broker, config()).await;
    let mut config2 = config();
    // Heartbeats far apart: only the stop message can make the other node forget it quickly.
    config2.presence.heartbeat_ms = 60_000;
    let n2 = node(&broker, config2).await;

    let mut cy = client(&n1, "cy|").await;
    let _dee = client(&n2, "dee|").await;
    // Not in a presence room: nothing is tracked.
    assert_eq!(
        n1.state.presence("/", "chat:2").unwrap().connection_count,
        0
    );
    n1.state
        .emitter()
        .to("user:cy")
        .join("chat:2")
        .await
        .unwrap();
    n1.state
        .emitter()
        .to("user:dee")
        .join("chat:2")
        .await
        .unwrap();
    n1.state
        .emitter()
        .to("user:dee")
        .join("other")
        .await
        .unwrap();
    await_users(&n1, "chat:2", &[("cy", 1), ("dee", 1)]).await;
    let (name, snapshot) = presence_event(&mut cy).await;
    assert_eq!(name, "sidecast:presence");
    assert_eq!(snapshot["room"], "chat:2");
    assert!(
        n1.state.presence("/", "other").is_none(),
        "not a presence room"
    );

    n1.state
        .emitter()
        .to("user:cy")
        .leave("chat:2")
        .await
        .unwrap();
    await_users(&n2, "chat:2", &[("dee", 1)]).await;

    n2.stop().await;
    await_users(&n1, "chat:2", &[]).await;
    assert_eq!(n1.state.metrics().presence_nodes.get(), 1);
    cy.disconnect().await;
    n1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_limited_with_exact_counts_and_large_info_is_left_out() {
    let broker = Shared(MemoryBroker::new(1024));
    let mut config = config();
    config.presence.max_members = 2;
    config.presence.max_info_bytes = 100;
    let n1 = node(&broker, config).await;
    let mut clients = Vec::new();
    for user in ["u1", "u2", "u3", "big"] {
        clients.push(client(&n1, &format!("{user}|chat:big")).await);
    }
    clients.push(client(&n1, "u1|chat:big").await);
    let (status, body) = read(&n1, "room=chat:big", "reader").await;
    assert_eq!(status, 200);
    assert_eq!(body["user_count"], 4, "{body}");
    assert_eq!(body["connection_count"], 5, "{body}");
    assert_eq!(body["truncated"], true);
    assert_eq!(body["users"].as_array().unwrap().len(), 2);
    // Users are listed by name: "big" comes first, without its oversized info.
    assert_eq!(body["users"][0], json!({"user": "big", "connections": 1}));
    assert_eq!(
        body["users"][1],
        json!({"user": "u1", "connections": 2, "info": {"name": "U1"}})
    );
    n1.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rooms_and_refusals_are_4xx_json() {
    let broker = Shared(MemoryBroker::new(1024));
    let n1 = node(&broker, config()).await;
    let (status, body) = read(&n1, "", "reader").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("room"), "{body}");
    let (status, body) = read(&n1, "room=", "reader").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = read(&n1, &format!("room={}", "x".repeat(300)), "reader").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = read(&n1, "room=lobby", "reader").await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("presence.rooms"),
        "{body}"
    );
    let (status, body) = read(&n1, "room=user:ada", "reader").await;
    assert_eq!(
        status, 422,
        "user rooms are never presence rooms by default: {body}"
    );
    let (status, body) = read(&n1, "room=chat:1&namespace=/nope", "reader").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = read(&n1, "room=chat:1", "someone").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("chat:1"), "{body}");
    let (status, body) = read(&n1, "room=chat:1", "reader").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"room": "chat:1", "users": [], "user_count": 0, "connection_count": 0, "truncated": false})
    );
    n1.stop().await;

    // Presence off: 404, and nothing reserved reaches sockets.
    let mut off = memory_config();
    off.recovery.enabled = false;
    let n = node(&broker, off).await;
    let (status, body) = read(&n, "room=chat:1", "reader").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("presence.rooms"),
        "{body}"
    );
    let mut c = client(&n, "ada|chat:1").await;
    n.state.emitter().emit("marker", "m").await.unwrap();
    let before = c.events_until("marker").await;
    assert!(before.is_empty(), "{before:?}");
    n.stop().await;
}
