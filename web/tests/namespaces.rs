//! Namespaces (`server.namespaces`): connects authorized per namespace, events and room operations
//! per namespace, unknown namespaces refused with Socket.IO's error, seen by a real client.
#![allow(clippy::unwrap_used)]

mod common;

use common::{CLOSED, DEADLINE, Event, TestServer, memory_config};
use futures_util::FutureExt;
use rust_socketio::Payload;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use serde_json::{Value, json};
use sidecast_core::{Action, AuthError, AuthPolicy, AuthRequest, Principal};
use sidecast_testkit::eventually;
use tokio::sync::mpsc;

/// A client of one namespace: its events (the close as [`CLOSED`]), or why it was refused.
struct NsClient {
    client: Client,
    events: mpsc::UnboundedReceiver<Event>,
}

impl NsClient {
    async fn next_event(&mut self) -> Event {
        tokio::time::timeout(DEADLINE, self.events.recv())
            .await
            .expect("an event arrives in time")
            .expect("client running")
    }

    async fn events_until(&mut self, marker: &str) -> Vec<Event> {
        let mut before = Vec::new();
        loop {
            let event = self.next_event().await;
            if event.0 == marker {
                return before;
            }
            before.push(event);
        }
    }
}

/// Connects to `namespace` with the session `cookie` (if any); `Err` with the connect error text.
async fn connect_ns(
    server: &TestServer,
    namespace: &str,
    cookie: Option<&str>,
) -> Result<NsClient, String> {
    let (tx, events) = mpsc::unbounded_channel::<Event>();
    let (state_tx, mut state_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let (connected, refused, closed) = (state_tx.clone(), state_tx, tx.clone());
    let mut builder = ClientBuilder::new(server.socket_url())
        .namespace(namespace)
        .reconnect(false)
        .on(rust_socketio::Event::Connect, move |_, _| {
            let _ = connected.send(Ok(()));
            async {}.boxed()
        })
        .on(rust_socketio::Event::Error, move |payload, _| {
            let text = match payload {
                Payload::Text(values) => values.first().map(|v| v.to_string()).unwrap_or_default(),
                other => format!("{other:?}"),
            };
            let _ = refused.send(Err(text));
            async {}.boxed()
        })
        .on(rust_socketio::Event::Close, move |_, _| {
            let _ = closed.send((CLOSED.to_owned(), Vec::new()));
            async {}.boxed()
        })
        .on_any(move |event, payload, _| {
            let values = match payload {
                Payload::Text(values) => values,
                other => vec![Value::String(format!("{other:?}"))],
            };
            let _ = tx.send((event.as_str().to_owned(), values));
            async {}.boxed()
        });
    if let Some(cookie) = cookie {
        builder = builder.opening_header("Cookie", cookie);
    }
    let client = builder.connect().await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(DEADLINE, state_rx.recv()).await {
        Ok(Some(Ok(()))) => Ok(NsClient { client, events }),
        Ok(Some(Err(reason))) => {
            let _ = client.disconnect().await;
            Err(reason)
        }
        _ => panic!("no connect or connect_error within {DEADLINE:?}"),
    }
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
    let mut root = connect_ns(&server, "/", Some(&cookie)).await.unwrap();
    let mut chat = connect_ns(&server, "/chat", Some(&cookie)).await.unwrap();
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
    let _ = (root.client, chat.client);
}

#[tokio::test]
async fn unknown_namespaces_are_refused_everywhere() {
    let server = TestServer::start(two_namespaces()).await;
    let cookie = server.login().await;
    let refused = connect_ns(&server, "/nope", Some(&cookie))
        .await
        .err()
        .unwrap();
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
    let response = server
        .request(reqwest::Method::POST, "/api/rooms")
        .header("cookie", &cookie)
        .json(&json!({"op": "join", "rooms": "r", "to": "user:Gonzalo", "namespace": "/nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap()["field"],
        "namespace"
    );
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
    assert!(connect_ns(&server, "/", Some(&cookie)).await.is_ok());
    let refused = connect_ns(&server, "/admin", Some(&cookie))
        .await
        .err()
        .unwrap();
    assert!(refused.contains("not an admin"), "{refused}");
}
