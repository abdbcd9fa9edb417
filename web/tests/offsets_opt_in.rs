//! Offsets are opt-in (decision 26): with recovery on (the default), a socket that sent no
//! `offset` in its CONNECT `auth` receives exactly the published arguments and no reserved event;
//! a socket that sent one (`""` on a first connect) gets each event's offset as its last argument
//! and the recovery report. Both kinds on one node, for broadcasts, room-addressed events, live-
//! only events and both slow-client policies.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ClientOptions, SioClient, TestServer, is_offset, memory_config, with_cookie};
use serde_json::{Value, json};
use sidecast_core::config::SlowClientPolicy;

/// Client options with a session cookie that ask for offsets (`auth: {offset: ""}`).
fn with_offsets(cookie: &str) -> ClientOptions {
    ClientOptions {
        auth: Some(json!({ "offset": "" })),
        ..with_cookie(cookie)
    }
}

/// The events published through `POST /api/` (the history's path), as they must arrive.
fn through_the_api() -> Vec<(String, Vec<Value>)> {
    vec![
        ("message".to_owned(), vec![json!("hi")]),
        (
            "message".to_owned(),
            vec![json!({"text": "an object", "n": 1})],
        ),
        ("message".to_owned(), vec![json!("to the user's room")]),
    ]
}

/// Publishes [`through_the_api`]'s events: to everyone, an object, to the user's room.
async fn publish_through_the_api(server: &TestServer, cookie: &str) {
    server
        .publish(cookie, json!({"channel": "message", "body": "hi"}))
        .await;
    server
        .publish(
            cookie,
            json!({"channel": "message", "body": {"text": "an object", "n": 1}}),
        )
        .await;
    server
        .publish(
            cookie,
            json!({"channel": "message", "body": "to the user's room", "to": "user:Gonzalo"}),
        )
        .await;
}

/// Publishes a live-only event (plain pub/sub, not in the history), then `done` on the same
/// path, so that it arrives after it.
async fn publish_live_only(server: &TestServer) {
    let broker = server.state.broker();
    for payload in [
        &br#"{"v":1,"event":"message","data":"live only"}"#[..],
        br#"{"v":1,"event":"done","data":"0"}"#,
    ] {
        broker
            .publish("sidecast", payload.to_vec().into())
            .await
            .unwrap();
    }
}

/// Receives the [`through_the_api`] events (the history's path and pub/sub are not ordered
/// with each other, so they are awaited before the live-only one is published).
async fn next_events(client: &mut SioClient, n: usize) -> Vec<(String, Vec<Value>)> {
    let mut events = Vec::new();
    for _ in 0..n {
        events.push(client.next_event().await);
    }
    events
}

async fn both_kinds_on_one_node(policy: SlowClientPolicy) {
    let mut config = memory_config();
    config.server.slow_client = policy;
    assert!(config.recovery.enabled, "recovery is on by default");
    let server = TestServer::start(config).await;
    let cookie = server.login().await;

    let mut plain: SioClient = server.connect(with_cookie(&cookie)).await.accepted();
    let mut with: SioClient = server.connect(with_offsets(&cookie)).await.accepted();
    // The socket that asked is told where it starts: with "0", the start of an empty history,
    // not "", which a client sends when it has no offset yet.
    assert_eq!(
        with.recovery_report().await,
        json!({"status": "new", "recovered": 0})
    );
    assert_eq!(with.last_offset().as_deref(), Some("0"));

    publish_through_the_api(&server, &cookie).await;
    // The plain socket: exactly the published arguments, no offset.
    assert_eq!(next_events(&mut plain, 3).await, through_the_api());
    // The socket that asked: the same events, each carrying its offset (stripped by the client
    // helper and kept as the last offset).
    assert_eq!(next_events(&mut with, 3).await, through_the_api());
    let last = with.last_offset().unwrap();
    assert!(
        is_offset(&json!(last)) && last != "0",
        "offsets came: {last}"
    );

    // A live-only event: the plain socket gets it as published, the other with the offset of
    // the last history entry before it.
    publish_live_only(&server).await;
    let live_only = vec![("message".to_owned(), vec![json!("live only")])];
    assert_eq!(plain.events_until("done").await, live_only);
    assert_eq!(with.events_until("done").await, live_only);
    assert_eq!(with.last_offset(), Some(last), "the last history offset");
    assert_eq!(
        plain.unread_reports(),
        0,
        "no sidecast:recovery for a plain socket"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_offset_sockets_on_one_node_each_get_their_arguments() {
    both_kinds_on_one_node(SlowClientPolicy::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_the_disconnect_slow_client_policy() {
    both_kinds_on_one_node(SlowClientPolicy::Disconnect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_socket_keeps_an_argument_that_looks_like_an_offset() {
    // Nothing is stripped or added: a last argument that looks like an offset is the app's.
    let server = TestServer::start(memory_config()).await;
    let cookie = server.login().await;
    let mut plain = server.connect(with_cookie(&cookie)).await.accepted();
    for body in [json!("0"), json!("00000000000000000001")] {
        server
            .publish(&cookie, json!({"channel": "message", "body": body}))
            .await;
        assert_eq!(plain.next_event().await, ("message".to_owned(), vec![body]));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_of_the_wrong_type_is_reported_unknown() {
    let server = TestServer::start(memory_config()).await;
    let cookie = server.login().await;
    let options = ClientOptions {
        auth: Some(json!({ "offset": 12 })),
        ..with_cookie(&cookie)
    };
    let mut client = server.connect(options).await.accepted();
    assert_eq!(
        client.recovery_report().await,
        json!({"status": "unknown", "recovered": 0})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_recovery_off_nobody_gets_offsets() {
    let mut config = memory_config();
    config.recovery.enabled = false;
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let mut with = server.connect(with_offsets(&cookie)).await.accepted();
    publish_through_the_api(&server, &cookie).await;
    assert_eq!(next_events(&mut with, 3).await, through_the_api());
    assert_eq!(with.last_offset(), None, "no offset without recovery");
    assert_eq!(with.unread_reports(), 0);
    server.stop().await;
}
