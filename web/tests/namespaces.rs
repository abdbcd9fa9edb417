//! Namespaces (`server.namespaces`): connects authorized per namespace, events and room operations
//! per namespace, unknown namespaces refused with Socket.IO's error, seen by a real client.
#![allow(clippy::unwrap_used)]

mod common;

use common::{CLOSED, ClientOptions, Connect, TestServer, memory_config, with_cookie};
use serde_json::json;
use sidecast_core::{Action, AuthError, AuthPolicy, AuthRequest, Principal};
use sidecast_testkit::eventually;

/// Connects to `namespace` with the session `cookie`.
async fn connect_ns(server: &TestServer, namespace: &str, cookie: &str) -> Connect {
    let options = ClientOptions {
        namespace: Some(namespace.to_owned()),
        ..with_cookie(cookie)
    };
    server.connect(options).await
}

fn two_namespaces() -> sidecast_core::Config {
    let mut config = memory_config();
    config.server.namespaces = vec!["/".into(), "/chat".into()];
    config
}

/// How many of the node's sockets of `namespace` are in `room`.
fn members(server: &TestServer, namespace: &str, room: &str) -> usize {
    server
        .state
        .io()
        .of(namespace)
        .unwrap()
        .to(room.to_owned())
        .sockets()
        .len()
}

#[tokio::test]
async fn events_and_room_operations_are_per_namespace() {
    let server = TestServer::start(two_namespaces()).await;
    let cookie = server.login().await;
    let mut root = connect_ns(&server, "/", &cookie).await.accepted();
    let mut chat = connect_ns(&server, "/chat", &cookie).await.accepted();
    let emitter = server.state.emitter();

    emitter.of("/chat").emit("news", "for chat").await.unwrap();
    server
        .publish(
            &cookie,
            json!({"channel": "news", "body": "chat over http", "namespace": "/chat"}),
        )
        .await;
    emitter.emit("marker", 1).await.unwrap();
    emitter.of("/chat").emit("marker", 1).await.unwrap();
    assert_eq!(root.events_until("marker").await, Vec::new());
    assert_eq!(
        chat.events_until("marker").await,
        vec![
            ("news".to_owned(), vec![json!("for chat")]),
            ("news".to_owned(), vec![json!("chat over http")]),
        ]
    );

    // A join in /chat: the user's /chat socket joins, its / socket does not.
    emitter
        .of("/chat")
        .to("user:Gonzalo")
        .join("game:1")
        .await
        .unwrap();
    eventually("the /chat socket joins", || {
        members(&server, "/chat", "game:1") == 1
    })
    .await;
    assert_eq!(members(&server, "/", "game:1"), 0);

    // /logout disconnects the user in every namespace.
    common::logout_at(&server.base, &cookie).await;
    assert_eq!(root.next_event().await.0, CLOSED);
    assert_eq!(chat.next_event().await.0, CLOSED);
}

#[tokio::test]
async fn unknown_namespaces_are_refused_everywhere() {
    let server = TestServer::start(two_namespaces()).await;
    let cookie = server.login().await;
    let refused = connect_ns(&server, "/nope", &cookie).await.refused();
    assert!(refused.contains("Invalid namespace"), "{refused}");

    let (status, answer) = server
        .post_api(
            Some(&cookie),
            Some("application/json"),
            json!({"channel": "m", "body": "x", "namespace": "/nope"}).to_string(),
        )
        .await;
    assert_eq!(
        (status, answer["field"].clone()),
        (422, json!("namespace")),
        "{answer}"
    );
    let join = json!({"op": "join", "rooms": "r", "to": "user:Gonzalo", "namespace": "/nope"});
    let (status, answer) = server.post_rooms(Some(&cookie), None, join).await;
    assert_eq!(status, 422);
    assert_eq!(answer["field"], "namespace");
}

/// Lets the session user into `/` only: `/admin` is for nobody.
struct NoAdmin;

#[async_trait::async_trait]
impl AuthPolicy for NoAdmin {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        match req.action {
            Action::Connect {
                namespace: "/admin",
            } => Err(AuthError::forbidden("not an admin")),
            _ => Ok(Principal::new(req.session_user.unwrap_or("anonymous"))),
        }
    }
}

#[tokio::test]
async fn each_connect_is_authorized_for_its_namespace() {
    let mut config = memory_config();
    config.server.namespaces = vec!["/".into(), "/admin".into()];
    let server = TestServer::start_with(
        sidecast_web::Sidecast::builder()
            .config(config)
            .auth(NoAdmin),
    )
    .await;
    let cookie = server.login().await;
    connect_ns(&server, "/", &cookie).await.accepted();
    let refused = connect_ns(&server, "/admin", &cookie).await.refused();
    assert!(refused.contains("not an admin"), "{refused}");
}
