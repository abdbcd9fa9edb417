//! The custom policy of `examples/proxy_auth.rs`, wired through the library API and driven with a
//! real Socket.IO client.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../examples/proxy_auth.rs"]
#[allow(dead_code, unreachable_pub)]
mod proxy_auth;

use axum::http::HeaderName;
use common::{ClientOptions, TestServer, memory_config};
use proxy_auth::ProxyHeaderAuth;
use serde_json::json;

/// A node whose policy trusts the `X-Forwarded-User` header from `trusted` only.
async fn node_trusting(trusted: &str) -> TestServer {
    let policy = ProxyHeaderAuth {
        header: HeaderName::from_static("x-forwarded-user"),
        trusted_proxies: vec![trusted.parse().unwrap()],
    };
    TestServer::start_with(
        sidecast_web::Sidecast::builder()
            .config(memory_config())
            .auth(policy),
    )
    .await
}

fn as_user(user: &str) -> ClientOptions {
    ClientOptions {
        headers: vec![("X-Forwarded-User".into(), user.into())],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_from_the_trusted_proxy_authenticates() {
    let server = node_trusting("127.0.0.1").await;
    let mut alice = server.connect(as_user("alice")).await.accepted();
    let mut bob = server.connect(as_user("bob")).await.accepted();
    let reason = server.connect(ClientOptions::default()).await.refused();
    assert!(reason.contains("no user"), "{reason}");

    // The principal is the header's user: `to: user:alice` reaches alice only.
    for body in [
        json!({"channel": "message", "body": "hi alice", "to": "user:alice"}),
        json!({"channel": "done", "body": ""}),
    ] {
        let response =
            common::post_api_with(&server.base, &[("x-forwarded-user", "bob")], body).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        alice.events_until("done").await,
        vec![("message".to_owned(), vec![json!("hi alice")])]
    );
    assert_eq!(bob.events_until("done").await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_from_anywhere_else_is_refused() {
    // 127.0.0.1 is not the proxy here: the same header must not authenticate.
    let server = node_trusting("10.0.0.7").await;
    let reason = server.connect(as_user("alice")).await.refused();
    assert!(reason.contains("proxy"), "{reason}");
    let response = common::post_api_with(
        &server.base,
        &[("x-forwarded-user", "alice")],
        json!({"channel": "message", "body": "x"}),
    )
    .await;
    assert_eq!(response.status(), 401);
}
