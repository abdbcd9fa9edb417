//! The admin namespace's socket lists against a cluster view of the test's own (the trait
//! `SocketDirectory`, in memory) and a real Socket.IO client: `all_sockets` on connect, then
//! the view's changes as the UI's events, and nothing of the admin namespace itself.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::Payload;
use rust_socketio::asynchronous::ClientBuilder;
use serde_json::{Value, json};
use sidecast_core::Config;
use sidecast_core::config::BrokerKind;
use tokio::sync::{broadcast, mpsc};

use crate::presence::view::{NodeSummary, SocketDirectory, SocketRecord, ViewChange};

/// A cluster view held in memory: sockets set by the test, changes sent by the test.
struct FakeDirectory {
    sockets: Mutex<Vec<SocketRecord>>,
    changes: broadcast::Sender<ViewChange>,
}

impl SocketDirectory for FakeDirectory {
    fn sockets(&self) -> Vec<SocketRecord> {
        self.sockets.lock().unwrap().clone()
    }
    fn nodes(&self) -> Vec<NodeSummary> {
        Vec::new()
    }
    fn changes(&self) -> broadcast::Receiver<ViewChange> {
        self.changes.subscribe()
    }
}

fn record(node: &str, nsp: &str, sid: &str, rooms: &[&str]) -> SocketRecord {
    SocketRecord {
        node: node.into(),
        nsp: nsp.into(),
        sid: sid.into(),
        user: Some("alice".into()),
        info: None,
        rooms: rooms
            .iter()
            .map(|r| (*r).to_owned())
            .collect::<BTreeSet<_>>(),
        connected_at_ms: 0,
        transport: "websocket".into(),
        handshake: Some(json!({"address": "10.0.0.2", "headers": {"user-agent": "test"}})),
    }
}

#[tokio::test]
async fn the_ui_gets_the_cluster_view_and_its_changes() {
    let directory = Arc::new(FakeDirectory {
        sockets: Mutex::new(vec![
            record(
                "node-b",
                "/",
                "sid-on-b",
                &["sid-on-b", "user:alice", "game:1"],
            ),
            // Not one of server.namespaces: left out.
            record("node-b", "/other", "sid-elsewhere", &[]),
        ]),
        changes: broadcast::channel(16).0,
    });
    let mut config = Config::default();
    config.broker.kind = BrokerKind::Memory;
    config.admin.enabled = true;
    config.admin.password_hash = bcrypt::hash("pw", 4).unwrap().as_str().into();
    let node = crate::Sidecast::builder()
        .config(config)
        .directory(directory.clone())
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ws/socket.io/", listener.local_addr().unwrap());
    let serving = tokio::spawn(crate::serve(listener, node, std::future::pending()));

    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Vec<Value>)>();
    let client = ClientBuilder::new(url)
        .namespace("/admin")
        .auth(json!({"username": "admin", "password": "pw"}))
        .reconnect(false)
        .on_any(move |event, payload, _| {
            if let Payload::Text(values) = payload {
                let _ = tx.send((event.as_str().to_owned(), values));
            }
            async {}.boxed()
        })
        .connect()
        .await
        .unwrap();
    let mut next = async |name: &str| loop {
        let (event, args) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .unwrap();
        if event == name {
            return args;
        }
    };
    let all = next("all_sockets").await;
    assert_eq!(all[0].as_array().unwrap().len(), 1, "{all:?}");
    let socket = &all[0][0];
    assert_eq!(socket["id"], "sid-on-b");
    assert_eq!(socket["nsp"], "/");
    assert_eq!(socket["rooms"], json!(["game:1", "sid-on-b", "user:alice"]));
    assert_eq!(socket["data"]["user"], "alice");
    assert_eq!(socket["handshake"]["address"], "10.0.0.2");

    directory
        .changes
        .send(ViewChange::SocketConnected(record(
            "node-a",
            "/",
            "sid-2",
            &["sid-2"],
        )))
        .unwrap();
    let connected = next("socket_connected").await;
    assert_eq!(connected[0]["id"], "sid-2");
    assert!(connected[1].as_str().unwrap().ends_with('Z'), "a date");
    directory
        .changes
        .send(ViewChange::RoomJoined {
            nsp: "/".into(),
            room: "game:2".into(),
            sid: "sid-2".into(),
        })
        .unwrap();
    let joined = next("room_joined").await;
    assert_eq!(joined[..3], [json!("/"), json!("game:2"), json!("sid-2")]);
    directory
        .changes
        .send(ViewChange::RoomLeft {
            nsp: "/".into(),
            room: "game:2".into(),
            sid: "sid-2".into(),
        })
        .unwrap();
    let left = next("room_left").await;
    assert_eq!(left[..3], [json!("/"), json!("game:2"), json!("sid-2")]);
    directory
        .changes
        .send(ViewChange::SocketDisconnected {
            node: "node-a".into(),
            nsp: "/".into(),
            sid: "sid-2".into(),
            reason: "node down".into(),
        })
        .unwrap();
    let gone = next("socket_disconnected").await;
    assert_eq!(gone[..3], [json!("/"), json!("sid-2"), json!("node down")]);
    let _ = client.disconnect().await;
    serving.abort();
}
