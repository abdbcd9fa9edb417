//! Room operations through the one delivery path: published on the bus (by `Emitter` or
//! `POST /api/rooms`), applied by the node's own subscription, seen by a real Socket.IO client.
#![allow(clippy::unwrap_used)]

mod common;

use common::{CLOSED, SioClient, TestServer, memory_config};
use serde_json::{Value, json};
use sidecast_core::config::{PolicyKind, PolicyList};
use sidecast_core::rooms::DISCONNECT_REASON_EVENT;
use sidecast_testkit::eventually;
use sidecast_web::Sidecast;

/// How many of the node's sockets are in `room` of `/`.
fn members(state: &Sidecast, room: &str) -> usize {
    state
        .io()
        .of("/")
        .unwrap()
        .to(room.to_owned())
        .sockets()
        .len()
}

#[tokio::test]
async fn emitter_joins_leaves_closes_and_disconnects() {
    let (server, _cookie, mut client) = TestServer::start_signed_in(memory_config()).await;
    let state = &server.state;
    let emitter = state.emitter();

    emitter.to("user:Gonzalo").join("game:1").await.unwrap();
    eventually("the user's socket joins game:1", || {
        members(state, "game:1") == 1
    })
    .await;
    emitter.to("game:1").emit("move", "e4").await.unwrap();
    assert_eq!(
        client.next_event().await,
        ("move".to_owned(), vec![json!("e4")])
    );

    emitter.to("user:Gonzalo").leave("game:1").await.unwrap();
    eventually("the socket leaves game:1", || members(state, "game:1") == 0).await;
    emitter.to("game:1").emit("move", "lost").await.unwrap();
    emitter.emit("marker", 1).await.unwrap();
    assert_eq!(client.events_until("marker").await, Vec::new());

    // One socket by its id: every socket is in the room named by its id.
    let sid = state.io().sockets()[0].id.to_string();
    assert_eq!(members(state, &sid), 1);
    emitter.to(sid.clone()).join("game:2").await.unwrap();
    eventually("the socket joins game:2", || members(state, "game:2") == 1).await;
    emitter.close_room("game:2").await.unwrap();
    eventually("game:2 is closed", || members(state, "game:2") == 0).await;
    assert_eq!(members(state, &sid), 1, "closing a room leaves the others");

    // Everyone (no rooms), except the user: nobody joins.
    emitter.except("user:Gonzalo").join("game:3").await.unwrap();
    emitter.join("game:4").await.unwrap();
    eventually("everyone joins game:4", || members(state, "game:4") == 1).await;
    assert_eq!(members(state, "game:3"), 0);

    emitter
        .to("user:Gonzalo")
        .disconnect(Some("game over"))
        .await
        .unwrap();
    assert_eq!(
        client.next_event().await,
        (DISCONNECT_REASON_EVENT.to_owned(), vec![json!("game over")])
    );
    assert_eq!(client.next_event().await.0, CLOSED);

    let metrics = state.metrics();
    assert_eq!(metrics.room_operation_count("join"), 4);
    assert_eq!(metrics.room_operation_count("leave"), 1);
    assert_eq!(metrics.room_operation_count("close_room"), 1);
    assert_eq!(metrics.room_operation_count("disconnect"), 1);
}

#[tokio::test]
async fn every_series_is_exported_from_start_up() {
    let server = TestServer::start(memory_config()).await;
    let text = server.state.metrics().render();
    let mut series: Vec<String> = ["join", "leave", "disconnect", "close_room"]
        .iter()
        .map(|op| format!("sidecast_room_operations_applied_total{{op=\"{op}\"}} 0"))
        .collect();
    series.extend(
        [
            r#"sidecast_events_published_total{source="api"} 0"#,
            r#"sidecast_events_dropped_total{reason="undecodable"} 0"#,
            r#"sidecast_events_dropped_total{reason="unsupported_request"} 0"#,
            r#"sidecast_connects_refused_total{reason="unauthenticated"} 0"#,
            r#"sidecast_bus_messages_received_total{source="control"} 0"#,
            "sidecast_rooms 0",
            "sidecast_room_memberships 0",
        ]
        .map(str::to_owned),
    );
    for line in series {
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn metrics_count_the_nodes_rooms_and_memberships() {
    let (server, cookie, _client) = TestServer::start_signed_in(memory_config()).await;
    let _second = server.client(&cookie).await;
    let state = &server.state;
    state
        .emitter()
        .to("user:Gonzalo")
        .join("game:1")
        .await
        .unwrap();
    eventually("both sockets join", || members(state, "game:1") == 2).await;
    let text = server
        .request(reqwest::Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Rooms user:Gonzalo and game:1, two sockets in each; the own-id rooms are not counted.
    assert!(text.contains("sidecast_rooms 2"), "{text}");
    assert!(text.contains("sidecast_room_memberships 4"), "{text}");
}

#[tokio::test]
async fn malformed_control_messages_are_dropped_and_counted() {
    let (server, _cookie, mut client) = TestServer::start_signed_in(memory_config()).await;
    let state = &server.state;
    let before = state.metrics().dropped_count("undecodable");
    for bad in [
        r#"{"v":1,"control":"join","rooms":["user:Gonzalo"]}"#,
        r#"{"v":1,"control":"disconnect","rooms":[]}"#,
        r#"{"v":1,"control":"join","join":"a\u0001"}"#,
    ] {
        state
            .emitter()
            .publish_raw("sidecast:control", bad.as_bytes().to_vec())
            .await
            .unwrap();
    }
    // Control and event channels share the node's one subscription, in order.
    state.emitter().emit("marker", 1).await.unwrap();
    assert_eq!(client.events_until("marker").await, Vec::new());
    eventually("three drops counted", || {
        state.metrics().dropped_count("undecodable") == before + 3
    })
    .await;
}

/// A node with sessions and the service token `s3cret` of the principal `cron`.
async fn node_with_token() -> (TestServer, String, common::SioClient) {
    let mut config = memory_config();
    config.auth.policy = PolicyList::Any(vec![PolicyKind::Session, PolicyKind::Token]);
    config.auth.tokens.insert("cron".into(), "s3cret".into());
    TestServer::start_signed_in(config).await
}

/// Publishes a `move` to `game:1` and asserts that `client`, a member, receives it next.
async fn move_reaches(server: &TestServer, cookie: &str, client: &mut SioClient) {
    server
        .publish(
            cookie,
            json!({"channel": "move", "body": "e4", "to": "game:1"}),
        )
        .await;
    assert_eq!(
        client.next_event().await,
        ("move".to_owned(), vec![json!("e4")])
    );
}

#[tokio::test]
async fn services_with_a_token_operate_rooms_over_http() {
    let (server, cookie, mut client) = node_with_token().await;
    let state = &server.state;
    let ok = (200, json!({"status": true}));

    let join = json!({"op": "join", "rooms": "game:1", "to": "user:Gonzalo"});
    assert_eq!(server.post_rooms(None, Some("s3cret"), join).await, ok);
    eventually("joined over HTTP", || members(state, "game:1") == 1).await;
    move_reaches(&server, &cookie, &mut client).await;

    let leave = json!({"op": "leave", "rooms": ["game:1"], "to": "user:Gonzalo"});
    assert_eq!(server.post_rooms(None, Some("s3cret"), leave).await, ok);
    eventually("left over HTTP", || members(state, "game:1") == 0).await;

    let disconnect = json!({"op": "disconnect", "to": "user:Gonzalo", "reason": "bye"});
    assert_eq!(
        server.post_rooms(None, Some("s3cret"), disconnect).await,
        ok
    );
    assert_eq!(
        client.next_event().await,
        (DISCONNECT_REASON_EVENT.to_owned(), vec![json!("bye")])
    );
    assert_eq!(client.next_event().await.0, CLOSED);
}

#[tokio::test]
async fn pages_may_not_operate_rooms_and_bad_requests_name_the_field() {
    let (server, cookie, _client) = node_with_token().await;
    let join = json!({"op": "join", "rooms": "game:1", "to": "user:Gonzalo"});

    let (status, answer) = server.post_rooms(Some(&cookie), None, join.clone()).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("token"),
        "{answer}"
    );
    assert_eq!(server.post_rooms(None, None, join.clone()).await.0, 401);
    assert_eq!(server.post_rooms(None, Some("wrong"), join).await.0, 401);

    let (status, answer) = server
        .post_rooms(
            None,
            Some("s3cret"),
            json!({"op": "join", "rooms": "", "to": "user:Gonzalo"}),
        )
        .await;
    assert_eq!(
        (status, answer["field"].clone()),
        (422, json!("rooms")),
        "{answer}"
    );
    let (status, answer) = server
        .post_rooms(None, Some("s3cret"), json!({"op": "disconnect"}))
        .await;
    assert_eq!(
        (status, answer["field"].clone()),
        (422, json!("to")),
        "{answer}"
    );

    let response = server
        .request(reqwest::Method::POST, "/api/rooms")
        .bearer_auth("s3cret")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = server
        .request(reqwest::Method::POST, "/api/rooms")
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    let metrics = server.state.metrics();
    assert_eq!(metrics.room_operation_count("join"), 0);
    // Every refusal is counted by reason: one 403, two 401, two 422, a 415 and a 400.
    assert_eq!(metrics.room_operation_refused_count("forbidden"), 1);
    assert_eq!(metrics.room_operation_refused_count("unauthenticated"), 2);
    assert_eq!(metrics.room_operation_refused_count("invalid"), 4);
    let text = metrics.render();
    assert!(
        text.contains(r#"sidecast_room_operations_refused_total{reason="rate_limited"} 0"#),
        "every reason is exported from start-up"
    );
    // The policy's refusals are also counted by policy and reason, as for connects and /api/.
    assert!(
        text.contains(
            r#"sidecast_auth_refusals_total{policy="other",reason="unauthenticated",action="rooms"} 2"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn ingress_room_operations_from_python_socketio_and_the_node_emitter() {
    use sidecast_core::config::{IngressConfig, IngressFormat};
    let mut config = memory_config();
    config.broker.ingress = vec![
        IngressConfig::new(IngressFormat::PythonSocketio),
        IngressConfig::new(IngressFormat::NodeEmitter),
    ];
    let (server, _cookie, mut client) = TestServer::start_signed_in(config).await;
    let state = &server.state;
    let broker = state.broker();
    let sid = state.io().sockets()[0].id.to_string();
    let publish = async |channel: &str, message: Value| {
        broker
            .publish(channel, message.to_string().into_bytes().into())
            .await
            .unwrap();
    };

    // python-socketio's manager.enter_room(sid, '/', 'r1'), as 5.18.1 writes it.
    let host_id = "c958058f74004f16852e6b82f76ae555";
    publish(
        "flask-socketio",
        json!({"method": "enter_room", "sid": sid, "room": "r1", "namespace": "/", "host_id": host_id}),
    )
    .await;
    eventually("enter_room applied", || members(state, "r1") == 1).await;
    publish(
        "flask-socketio",
        json!({"method": "leave_room", "sid": sid, "room": "r1", "namespace": "/", "host_id": host_id}),
    )
    .await;
    eventually("leave_room applied", || members(state, "r1") == 0).await;

    // @socket.io/redis-emitter: io.in("user:Gonzalo").socketsJoin("r2"), then socketsLeave.
    let request = "socket.io-request#/#";
    publish(
        request,
        json!({"type": 2, "opts": {"rooms": ["user:Gonzalo"], "except": []}, "rooms": ["r2"]}),
    )
    .await;
    eventually("socketsJoin applied", || members(state, "r2") == 1).await;
    // serverSideEmit: unsupported, counted every time, logged once.
    let unsupported = json!({"uid": "emitter", "type": 6, "data": ["hello"]});
    publish(request, unsupported.clone()).await;
    publish(request, unsupported).await;
    publish(
        request,
        json!({"type": 3, "opts": {"rooms": ["user:Gonzalo"], "except": []}, "rooms": ["r2"]}),
    )
    .await;
    eventually("socketsLeave applied", || members(state, "r2") == 0).await;
    assert_eq!(state.metrics().dropped_count("unsupported_request"), 2);

    // python-socketio close_room, then disconnect by sid.
    publish(
        "flask-socketio",
        json!({"method": "close_room", "room": "user:Gonzalo", "namespace": "/", "host_id": host_id}),
    )
    .await;
    eventually("close_room applied", || members(state, "user:Gonzalo") == 0).await;
    publish(
        "flask-socketio",
        json!({"method": "disconnect", "sid": sid, "namespace": "/", "host_id": host_id}),
    )
    .await;
    assert_eq!(client.next_event().await.0, CLOSED);
    assert_eq!(state.metrics().room_operation_count("join"), 2);
    assert_eq!(state.metrics().room_operation_count("disconnect"), 1);
}

#[tokio::test]
async fn a_users_rooms_outlive_its_sockets_until_a_leave() {
    let (server, cookie, first) = TestServer::start_signed_in(memory_config()).await;
    let state = &server.state;
    let emitter = state.emitter();
    emitter.to("user:Gonzalo").join("game:1").await.unwrap();
    // Joined by one socket id only: lasts as long as that socket.
    let sid = state.io().sockets()[0].id.to_string();
    emitter.to(sid).join("solo").await.unwrap();
    eventually("joined", || {
        members(state, "game:1") == 1 && members(state, "solo") == 1
    })
    .await;
    first.disconnect().await;
    eventually("the socket is gone", || state.io().sockets().is_empty()).await;

    // The user reconnects: the new socket is in game:1, not in solo.
    let mut second = server.client(&cookie).await;
    emitter.to("game:1").emit("move", "e4").await.unwrap();
    emitter.to("solo").emit("solo", 1).await.unwrap();
    emitter.emit("marker", 1).await.unwrap();
    assert_eq!(
        second.events_until("marker").await,
        vec![("move".to_owned(), vec![json!("e4")])]
    );

    emitter.to("user:Gonzalo").leave("game:1").await.unwrap();
    eventually("left", || members(state, "game:1") == 0).await;
    second.disconnect().await;
    eventually("the socket is gone", || state.io().sockets().is_empty()).await;
    let mut third = server.client(&cookie).await;
    emitter.to("game:1").emit("move", "lost").await.unwrap();
    emitter.emit("marker", 2).await.unwrap();
    assert_eq!(third.events_until("marker").await, Vec::new());
}

#[tokio::test]
async fn a_page_joins_and_leaves_the_rooms_its_rules_allow_over_http() {
    let mut config = memory_config();
    config.auth.session_rooms = vec!["game:*".into(), "team:{user}".into()];
    let (server, cookie, mut client) = TestServer::start_signed_in(config).await;
    let state = &server.state;
    let page = |body: Value| server.post_rooms(Some(&cookie), None, body);
    let ok = (200, json!({"status": true}));

    let join = json!({"op": "join", "rooms": ["game:1", "team:Gonzalo"], "to": "user:Gonzalo"});
    assert_eq!(page(join).await, ok);
    eventually("the page's socket joins", || {
        members(state, "game:1") == 1 && members(state, "team:Gonzalo") == 1
    })
    .await;
    move_reaches(&server, &cookie, &mut client).await;

    for refused in [
        // A room the rules do not allow, another user's team, everyone's sockets, another
        // user's sockets, an operation other than join and leave.
        json!({"op": "join", "rooms": "chat", "to": "user:Gonzalo"}),
        json!({"op": "join", "rooms": "team:alice", "to": "user:Gonzalo"}),
        json!({"op": "join", "rooms": "game:2"}),
        json!({"op": "join", "rooms": "game:2", "to": "user:alice"}),
        json!({"op": "disconnect", "to": "user:Gonzalo"}),
        json!({"op": "close_room", "rooms": "game:1"}),
        // All or nothing: one refused room refuses the operation.
        json!({"op": "join", "rooms": ["game:3", "chat"], "to": "user:Gonzalo"}),
    ] {
        let (status, answer) = page(refused.clone()).await;
        assert_eq!(status, 403, "{refused} → {answer}");
    }
    assert_eq!(members(state, "game:3"), 0);

    let leave = json!({"op": "leave", "rooms": "game:1", "to": "user:Gonzalo"});
    assert_eq!(page(leave).await, ok);
    eventually("the page's socket leaves", || members(state, "game:1") == 0).await;
}

/// A policy that hands every socket the room `team:7` (and a name that breaks the rules).
struct Teams;

#[async_trait::async_trait]
impl sidecast_core::AuthPolicy for Teams {
    async fn authorize(
        &self,
        _req: &sidecast_core::AuthRequest<'_>,
    ) -> Result<sidecast_core::Principal, sidecast_core::AuthError> {
        Ok(sidecast_core::Principal::new("alice").with_rooms(["team:7", ""]))
    }
}

#[tokio::test]
async fn a_policy_hands_rooms_to_sockets_at_connect() {
    let server =
        TestServer::start_with(Sidecast::builder().config(memory_config()).auth(Teams)).await;
    let mut client = common::connect(&server.socket_url(), common::ClientOptions::default())
        .await
        .accepted();
    eventually("the socket is in its rooms", || {
        members(&server.state, "team:7") == 1 && members(&server.state, "user:alice") == 1
    })
    .await;
    server
        .state
        .emitter()
        .to("team:7")
        .emit("news", "for the team")
        .await
        .unwrap();
    assert_eq!(
        client.next_event().await,
        ("news".to_owned(), vec![json!("for the team")])
    );
}

/// With the Redis that keeps memberships unreachable, sockets still connect (the lookup is
/// bounded by `session.timeout_ms` and logged) in their own rooms, events to their user still
/// arrive, and a join is applied to the sockets connected now; once Redis answers again, a join
/// is remembered for the user's later sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_membership_store_down_sockets_connect_in_their_own_rooms() {
    let mut redis = sidecast_testkit::RedisServer::start_local().await;
    let mut config = memory_config();
    config.session.store = sidecast_core::config::SessionStoreKind::Redis;
    config.session.url = redis.url().to_owned();
    config.session.timeout_ms = 200;
    config.auth.policy = PolicyList::Any(vec![PolicyKind::Token]);
    config.auth.tokens.insert("alice".into(), "token-a".into());
    let server = TestServer::start(config).await;
    let emitter = server.state.emitter();
    redis.stop().await;

    // Asks for offsets, so that a recovery report tells when the socket is live.
    let with_offsets = || common::ClientOptions {
        auth: Some(json!({ "token": "token-a", "offset": "" })),
        ..Default::default()
    };
    let mut alice = server.connect(with_offsets()).await.accepted();
    // The report comes once the connect handler is done: the socket is in its rooms.
    alice.recovery_report().await;
    // A join to the user while the store is down: applied to the socket connected now.
    emitter.to("user:alice").join("game:1").await.unwrap();
    eventually("alice's socket joined game:1", || {
        members(&server.state, "game:1") == 1
    })
    .await;
    emitter
        .to("game:1")
        .emit("move", json!("e4"))
        .await
        .unwrap();
    assert_eq!(
        alice.next_event().await,
        ("move".to_owned(), vec![json!("e4")])
    );

    // Redis is back: a join is remembered, and a new socket of alice's starts in the room.
    redis.restart().await;
    emitter.to("user:alice").join("game:2").await.unwrap();
    eventually("alice's socket joined game:2", || {
        members(&server.state, "game:2") == 1
    })
    .await;
    let mut again = server.connect(with_offsets()).await.accepted();
    again.recovery_report().await;
    eventually("alice's new socket is in game:2 too", || {
        members(&server.state, "game:2") == 2
    })
    .await;
    emitter
        .to("game:2")
        .emit("move", json!("d4"))
        .await
        .unwrap();
    assert_eq!(
        again.next_event().await,
        ("move".to_owned(), vec![json!("d4")])
    );
    alice.disconnect().await;
    again.disconnect().await;
    server.stop().await;
}
