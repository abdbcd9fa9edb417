//! What a connected socket keeps of its handshake request: Socket.IO keeps the request for the
//! socket's whole life, so a node keeps only what is read later — the session's user rather
//! than the session, and only the headers its auth policy reads.
#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use common::{ClientOptions, TestServer, memory_config, with_cookie};
use sidecast_core::{AuthError, AuthPolicy, AuthRequest, Principal};

/// The header names every socket of the root namespace kept, one list per socket.
fn kept_headers(server: &TestServer) -> Vec<Vec<String>> {
    let namespace = server.state.io().of("/").unwrap();
    let mut kept: Vec<Vec<String>> = namespace
        .sockets()
        .iter()
        .map(|socket| {
            let parts = socket.req_parts();
            assert!(
                parts.extensions.get::<tower_sessions::Session>().is_none(),
                "socket {} still holds its session",
                socket.id
            );
            let mut names: Vec<String> = parts
                .headers
                .keys()
                .map(|n| n.as_str().to_owned())
                .collect();
            names.sort();
            names
        })
        .collect();
    kept.sort();
    kept
}

fn browser_like(cookie: &str, websocket_only: bool) -> ClientOptions {
    ClientOptions {
        websocket_only,
        headers: vec![
            (
                "User-Agent".into(),
                "Mozilla/5.0 (X11; Linux x86_64)".into(),
            ),
            ("Accept-Language".into(), "en-GB,en;q=0.9".into()),
            ("X-Request-Id".into(), "4f2a".into()),
        ],
        ..with_cookie(cookie)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_keeps_neither_its_session_nor_headers_no_one_reads() {
    // The default policy, `session`, reads the session's user and no header.
    let server = TestServer::start(memory_config()).await;
    let cookie = server.login().await;
    let websocket = server.connect(browser_like(&cookie, true)).await.accepted();
    let polling = server
        .connect(browser_like(&cookie, false))
        .await
        .accepted();

    // The websocket handshake keeps the key its upgrade answered with; the polling one nothing.
    assert_eq!(
        kept_headers(&server),
        [vec![], vec!["sec-websocket-key".to_owned()]]
    );
    // Both still work as the session's user: events reach them.
    let mut websocket = websocket;
    let mut polling = polling;
    server.round_trip(&cookie, &mut websocket, "hi").await;
    server.round_trip(&cookie, &mut polling, "hi").await;
    websocket.disconnect().await;
    polling.disconnect().await;
    server.stop().await;
}

/// A policy of its own that does not name the headers it reads.
struct LetsEveryoneIn;

#[async_trait]
impl AuthPolicy for LetsEveryoneIn {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        let agent = req
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("nobody");
        Ok(Principal::new(agent.split('/').next().unwrap_or("nobody")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_does_not_name_its_headers_gets_them_all() {
    let server = TestServer::start_with(
        sidecast_web::Sidecast::builder()
            .config(memory_config())
            .auth(LetsEveryoneIn),
    )
    .await;
    let client = server.connect(browser_like("a=1", true)).await.accepted();
    let kept = kept_headers(&server);
    assert_eq!(kept.len(), 1);
    for name in ["user-agent", "accept-language", "x-request-id", "cookie"] {
        assert!(
            kept[0].iter().any(|n| n == name),
            "{name} not kept: {kept:?}"
        );
    }
    client.disconnect().await;
    server.stop().await;
}
