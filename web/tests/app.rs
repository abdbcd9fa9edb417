//! The original application's request path, end to end over HTTP and the Socket.IO protocol, on
//! the memory broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ClientOptions, TestServer, memory_config, with_token};
use serde_json::{Value, json};
use sidecast_core::config::{PolicyKind, PolicyList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_then_connect_is_accepted_on_both_transports() {
    let (server, cookie, polling) = TestServer::start_signed_in(memory_config()).await;
    let websocket = server.websocket_client(&cookie).await;
    polling.disconnect().await;
    websocket.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_without_session_or_with_forged_cookie_is_refused() {
    let server = TestServer::start(memory_config()).await;
    let reason = server.connect(ClientOptions::default()).await.refused();
    assert!(reason.contains("unauthorized"), "{reason}");

    // Same payload as a real session cookie, signed with another key.
    let cookie = server.login().await;
    let (name, value) = cookie.split_once('=').unwrap();
    let mut forged = value.to_owned();
    forged.replace_range(
        0..4,
        if &value[0..4] == "AAAA" {
            "BBBB"
        } else {
            "AAAA"
        },
    );
    let reason = common::refused_at(&server.socket_url(), &format!("{name}={forged}")).await;
    assert!(reason.contains("unauthorized"), "{reason}");
    // A hand-made unsigned cookie claiming a user.
    let reason = common::refused_at(
        &server.socket_url(),
        &format!("{name}=eyJ1c2VyIjoiR29uemFsbyJ9"),
    )
    .await;
    assert!(reason.contains("unauthorized"), "{reason}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_events_reach_every_client_once_and_in_order() {
    let (server, cookie, mut a) = TestServer::start_signed_in(memory_config()).await;
    let mut b = server.websocket_client(&cookie).await;

    server
        .publish(&cookie, json!({"channel": "message", "body": "Hi"}))
        .await;
    server
        .publish(
            &cookie,
            json!({"channel": "message", "body": {"text": "Hi", "n": [1, 2]}}),
        )
        .await;
    server
        .publish(&cookie, json!({"channel": "news", "body": "custom event"}))
        .await;
    for i in 0..20 {
        server
            .publish(&cookie, json!({"channel": "count", "body": i.to_string()}))
            .await;
    }
    server
        .publish(&cookie, json!({"channel": "done", "body": "end"}))
        .await;

    let mut expected: Vec<(String, Vec<Value>)> = vec![
        ("message".into(), vec![json!("Hi")]),
        ("message".into(), vec![json!({"text": "Hi", "n": [1, 2]})]),
        ("news".into(), vec![json!("custom event")]),
    ];
    expected.extend((0..20).map(|i| ("count".to_owned(), vec![json!(i.to_string())])));
    for client in [&mut a, &mut b] {
        // Exactly once and in order: the events before the marker are exactly these.
        assert_eq!(client.events_until("done").await, expected);
    }
    a.disconnect().await;
    b.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_reaches_only_that_room() {
    let mut config = memory_config();
    config.auth.policy = PolicyList::Any(vec![PolicyKind::Session, PolicyKind::Token]);
    config.auth.tokens.insert("alice".into(), "token-a".into());
    config.auth.tokens.insert("bob".into(), "token-b".into());
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let mut alice = server.connect(with_token("token-a")).await.accepted();
    let mut bob = server.connect(with_token("token-b")).await.accepted();
    let mut gonzalo = server.client(&cookie).await;

    server
        .publish(
            &cookie,
            json!({"channel": "message", "body": "for alice", "to": "user:alice"}),
        )
        .await;
    server
        .publish(
            &cookie,
            json!({"channel": "message", "body": "for both", "to": ["user:alice", "user:bob"]}),
        )
        .await;
    server
        .publish(&cookie, json!({"channel": "done", "body": "all"}))
        .await;

    let msg = |s: &str| ("message".to_owned(), vec![json!(s)]);
    assert_eq!(
        alice.events_until("done").await,
        vec![msg("for alice"), msg("for both")]
    );
    assert_eq!(bob.events_until("done").await, vec![msg("for both")]);
    assert_eq!(gonzalo.events_until("done").await, vec![]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_status_and_emits_nothing() {
    let mut config = memory_config();
    config.server.max_body_bytes = 1024;
    let (server, cookie, mut client) = TestServer::start_signed_in(config).await;
    let json_ct = Some("application/json");

    // (cookie, content type, body, expected status, text the error or field must name)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, String, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            Some(&cookie),
            json_ct,
            "{not json".into(),
            400,
            "invalid JSON",
        ),
        (
            Some(&cookie),
            Some("text/plain"),
            r#"{"channel":"message","body":"x"}"#.into(),
            415,
            "Content-Type",
        ),
        (
            Some(&cookie),
            None,
            r#"{"channel":"message","body":"x"}"#.into(),
            415,
            "Content-Type",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"body":"x"}"#.into(),
            422,
            "channel",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"channel":"message"}"#.into(),
            422,
            "body",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"channel":"message","body":42}"#.into(),
            422,
            "body",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"channel":"message","body":["a"]}"#.into(),
            422,
            "body",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"channel":7,"body":"x"}"#.into(),
            422,
            "channel",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"channel":"","body":"x"}"#.into(),
            422,
            "channel",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"channel":"disconnect","body":"x"}"#.into(),
            422,
            "reserved",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"channel":"message","body":"x","to":3}"#.into(),
            422,
            "to",
        ),
        (
            Some(&cookie),
            json_ct,
            r#"{"channel":"message","body":"x","namespace":"nope"}"#.into(),
            422,
            "namespace",
        ),
        (Some(&cookie), json_ct, "[1,2]".into(), 422, "object"),
        (
            Some(&cookie),
            json_ct,
            format!(r#"{{"channel":"message","body":"{}"}}"#, "x".repeat(2000)),
            413,
            "larger than 1024",
        ),
        (
            None,
            json_ct,
            r#"{"channel":"message","body":"x"}"#.into(),
            401,
            "unauthorized",
        ),
        (
            Some("sidecast.session=forged"),
            json_ct,
            r#"{"channel":"message","body":"x"}"#.into(),
            401,
            "unauthorized",
        ),
    ];
    for (cookie, content_type, body, status, needle) in cases {
        let (got, answer) = server.post_api(cookie, content_type, body.clone()).await;
        assert_eq!(got, status, "{body:?} -> {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        let field = answer["field"].as_str().unwrap_or_default();
        assert!(
            error.contains(needle) || field == needle,
            "{body:?} -> {answer} should mention {needle:?}"
        );
    }
    server
        .publish(&cookie, json!({"channel": "done", "body": "marker"}))
        .await;
    assert_eq!(
        client.events_until("done").await,
        vec![],
        "no bad request emitted"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_health_and_logout() {
    let mut config = memory_config();
    config.server.socketio_path = "/rt/socket.io".into();
    let server = TestServer::start(config).await;
    let page = server.get_text("/").await;
    for needle in [
        r#"id="message""#,
        r#"id="messages""#,
        ">Send</button>",
        r#"id="status""#,
        r#"path: "/rt/socket.io""#,
        sidecast_core::config::DEFAULT_CLIENT_JS_URL,
    ] {
        assert!(page.contains(needle), "page lacks {needle}");
    }
    let health: Value = server.get("/healthz").await.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 200);

    // After logout the old session no longer authenticates a socket.
    let cookie = server.login().await;
    server.client(&cookie).await;
    let response = common::logout_at(&server.base, &cookie).await;
    let cleared = common::session_cookie(&response);
    common::refused_at(&server.socket_url(), &cleared).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_client_script_and_disabled_login() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("socket.io.min.js");
    std::fs::write(&script, "/* client */").unwrap();
    let mut config = memory_config();
    config.server.client_js = Some(script);
    config.auth.demo_login = false;
    let server = TestServer::start(config).await;
    let page = server.get_text("/").await;
    assert!(page.contains(r#"<script src="/socket.io.min.js">"#));
    let js = server.get("/socket.io.min.js").await;
    assert_eq!(js.status(), 200);
    assert_eq!(js.text().await.unwrap(), "/* client */");
    let login = server.get("/login").await;
    assert_eq!(login.status(), 404);
    let body: Value = login.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("auth.demo_login"));
    server.stop().await;
}
