//! The Socket.IO Admin UI's namespace (`[admin]`), with a real Socket.IO client: the login,
//! what read-only and production modes leave out, the actions as room operations, that nothing
//! published on the bus reaches admin sockets, the UI's files and CORS for a hosted UI, and every
//! node's `server_stats` through real Redis and real RabbitMQ.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{CLOSED, ClientOptions, Connect, SioClient, TestServer};
use serde_json::{Value, json};
use sidecast_core::Config;
use sidecast_core::config::{AdminMode, BrokerKind};

const PASSWORD: &str = "correct horse";

/// A configuration with the admin namespace on (cost 4: tests need no slow hash).
fn admin_config(mut config: Config) -> Config {
    config.admin.enabled = true;
    config.admin.password_hash = bcrypt::hash(PASSWORD, 4).unwrap().as_str().into();
    config.admin.stats_interval_ms = 200;
    config
}

fn login(password: &str) -> ClientOptions {
    ClientOptions {
        namespace: Some("/admin".into()),
        auth: Some(json!({"username": "admin", "password": password})),
        ..ClientOptions::default()
    }
}

/// Several arguments, as the UI sends its actions.
fn args(values: Value) -> rust_socketio::Payload {
    rust_socketio::Payload::Text(values.as_array().unwrap().clone())
}

async fn admin(server: &TestServer) -> SioClient {
    server.connect(login(PASSWORD)).await.accepted()
}

/// The first event named `name`, skipping others.
async fn next_named(client: &mut SioClient, name: &str) -> Vec<Value> {
    loop {
        let (event, args) = client.next_event().await;
        if event == name {
            return args;
        }
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_a_right_one_gives_a_session() {
    let server = TestServer::start(admin_config(common::memory_config())).await;
    let refused = server.connect(login("wrong")).await.refused();
    assert!(refused.contains("invalid credentials"), "{refused}");
    let refused = server
        .connect(ClientOptions {
            namespace: Some("/admin".into()),
            ..ClientOptions::default()
        })
        .await
        .refused();
    assert!(refused.contains("invalid credentials"), "{refused}");
    // The application's own session does not open the admin namespace.
    let cookie = server.login().await;
    let refused = server
        .connect(ClientOptions {
            namespace: Some("/admin".into()),
            ..common::with_cookie(&cookie)
        })
        .await
        .refused();
    assert!(refused.contains("invalid credentials"), "{refused}");

    let mut ui = admin(&server).await;
    let session = next_named(&mut ui, "session").await;
    let session = session[0].as_str().unwrap().to_owned();
    let config = next_named(&mut ui, "config").await;
    assert_eq!(
        config[0]["supportedFeatures"],
        json!([
            "JOIN",
            "LEAVE",
            "DISCONNECT",
            "MJOIN",
            "MLEAVE",
            "MDISCONNECT"
        ])
    );
    // The UI's reload: the session id alone logs in.
    let reload = server
        .connect(ClientOptions {
            namespace: Some("/admin".into()),
            auth: Some(json!({"sessionId": session})),
            ..ClientOptions::default()
        })
        .await;
    assert!(matches!(reload, Connect::Accepted(_)), "session accepted");
    let forged = server
        .connect(ClientOptions {
            namespace: Some("/admin".into()),
            auth: Some(json!({"sessionId": "99999999999.00"})),
            ..ClientOptions::default()
        })
        .await
        .refused();
    assert!(forged.contains("invalid credentials"), "{forged}");
    let logins = |reason| {
        server
            .state
            .metrics()
            .admin_logins
            .get_or_create(&sidecast_web::metrics::Reason { reason })
            .get()
    };
    assert_eq!(
        (logins("password"), logins("session"), logins("invalid")),
        (1, 1, 4)
    );
}

#[tokio::test]
async fn a_configuration_without_a_bcrypt_hash_is_refused() {
    let mut config = admin_config(common::memory_config());
    config.admin.password_hash = PASSWORD.into();
    let error = sidecast_web::Sidecast::builder()
        .config(config)
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("admin.password_hash")
            && error.contains("plain password")
            && error.contains("sidecast admin hash-password"),
        "{error}"
    );
}

#[tokio::test]
async fn read_only_offers_and_carries_out_no_action() {
    let mut config = admin_config(common::memory_config());
    config.admin.read_only = true;
    let (server, cookie, mut app) = TestServer::start_signed_in(config).await;
    let mut ui = admin(&server).await;
    let config = next_named(&mut ui, "config").await;
    assert_eq!(config[0]["supportedFeatures"], json!([]));
    let sid = server.state.io().sockets()[0].id.to_string();
    ui.client
        .emit("_disconnect", args(json!(["/", true, sid])))
        .await
        .unwrap();
    // A message published after the action arrives: the socket is still connected.
    server.round_trip(&cookie, &mut app, "still here").await;
    assert_eq!(server.state.io().sockets().len(), 1);
}

#[tokio::test]
async fn actions_travel_as_room_operations_by_socket_id() {
    let (server, cookie, mut app) =
        TestServer::start_signed_in(admin_config(common::memory_config())).await;
    let mut ui = admin(&server).await;
    next_named(&mut ui, "config").await;
    let socket = server.state.io().sockets()[0].clone();
    let sid = socket.id.to_string();
    ui.client
        .emit("join", args(json!(["/", "game:1", sid])))
        .await
        .unwrap();
    sidecast_testkit::eventually("the socket joins game:1", || {
        socket.rooms().iter().any(|r| r == "game:1")
    })
    .await;
    ui.client
        .emit("leave", args(json!(["/", "game:1", sid])))
        .await
        .unwrap();
    sidecast_testkit::eventually("the socket leaves game:1", || {
        !socket.rooms().iter().any(|r| r == "game:1")
    })
    .await;
    // A namespace the node does not serve is refused; the socket stays.
    ui.client
        .emit("_disconnect", args(json!(["/admin", false, sid])))
        .await
        .unwrap();
    server.round_trip(&cookie, &mut app, "still here").await;
    ui.client
        .emit("_disconnect", args(json!(["/", true, sid])))
        .await
        .unwrap();
    assert_eq!(next_named(&mut app, CLOSED).await, Vec::<Value>::new());
    let actions = |reason| {
        server
            .state
            .metrics()
            .admin_actions
            .get_or_create(&sidecast_web::metrics::Reason { reason })
            .get()
    };
    assert_eq!(
        ["join", "leave", "disconnect", "refused"].map(actions),
        [1, 1, 1, 1]
    );
}

#[tokio::test]
async fn production_mode_sends_no_socket_lists() {
    for (mode, lists) in [
        (AdminMode::Production, false),
        (AdminMode::Development, true),
    ] {
        let mut config = admin_config(common::memory_config());
        config.admin.mode = mode;
        let (server, _cookie, _app) = TestServer::start_signed_in(config).await;
        let mut ui = admin(&server).await;
        // Until the second round of stats: anything sent on connect came before it.
        let mut before = Vec::new();
        let mut rounds = 0;
        while rounds < 2 {
            let (event, _) = ui.next_event().await;
            if event == "server_stats" {
                rounds += 1;
            } else {
                before.push(event);
            }
        }
        assert_eq!(
            before.iter().any(|e| e == "all_sockets"),
            lists,
            "{mode:?}: {before:?}"
        );
        assert!(
            !before.iter().any(|e| e.starts_with("socket_")),
            "{before:?}"
        );
    }
}

#[tokio::test]
async fn admin_sockets_receive_nothing_published_on_the_bus() {
    let (server, cookie, mut app) =
        TestServer::start_signed_in(admin_config(common::memory_config())).await;
    let mut ui = admin(&server).await;
    next_named(&mut ui, "config").await;
    let admin_sid = server
        .state
        .io()
        .of("/admin")
        .unwrap()
        .sockets()
        .first()
        .unwrap()
        .id
        .to_string();
    let emitter = server.state.emitter().with_history(false);
    // Addressed to the admin namespace, to its socket's id, to everyone: none may reach it.
    emitter
        .of("/admin")
        .emit("message", "to admins")
        .await
        .unwrap();
    emitter
        .of("/admin")
        .to(admin_sid.clone())
        .emit("message", "to the admin socket")
        .await
        .unwrap();
    emitter.of("/admin").join("game:1").await.unwrap();
    emitter
        .of("/admin")
        .to(admin_sid)
        .disconnect(Some("bye"))
        .await
        .unwrap();
    server.round_trip(&cookie, &mut app, "to all").await;
    // After the application's event, two rounds of stats: what the bus sent has been applied.
    next_named(&mut ui, "server_stats").await;
    let mut seen = Vec::new();
    loop {
        let (event, args) = ui.next_event().await;
        if event == "server_stats" {
            break;
        }
        seen.push((event, args));
    }
    assert!(seen.is_empty(), "{seen:?}");
    let socket = server.state.io().of("/admin").unwrap().sockets();
    assert_eq!(socket.len(), 1, "the admin socket is still connected");
    assert!(!socket[0].rooms().iter().any(|r| r == "game:1"));
}

#[tokio::test]
async fn the_ui_files_are_served_and_a_hosted_ui_gets_cors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<title>admin ui</title>").unwrap();
    let mut config = admin_config(common::memory_config());
    config.admin.ui_dir = Some(dir.path().to_owned());
    config.admin.allowed_origins = vec!["https://admin.socket.io".into()];
    let server = TestServer::start(config.clone()).await;
    assert!(server.get_text("/admin/").await.contains("admin ui"));
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/admin", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.headers()["location"], "/admin/");

    let path = format!("{}/?EIO=4&transport=polling", config.server.socketio_path);
    let preflight = server
        .request(reqwest::Method::OPTIONS, &path)
        .header("origin", "https://admin.socket.io")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://admin.socket.io"
    );
    let handshake = server
        .request(reqwest::Method::GET, &path)
        .header("origin", "https://admin.socket.io")
        .send()
        .await
        .unwrap();
    assert_eq!(handshake.status(), 200);
    assert_eq!(
        handshake.headers()["access-control-allow-credentials"],
        "true"
    );
    // Another origin is still refused, and POST /api/ from the admin origin too.
    let foreign = server
        .request(reqwest::Method::GET, &path)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let api = server
        .request(reqwest::Method::POST, "/api/")
        .header("origin", "https://admin.socket.io")
        .json(&json!({"event": "message", "data": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403);
    // The admin origin opens the admin namespace, not the application's.
    let origin = vec![("Origin".to_owned(), "https://admin.socket.io".to_owned())];
    let ui = server
        .connect(ClientOptions {
            headers: origin.clone(),
            ..login(PASSWORD)
        })
        .await;
    assert!(matches!(ui, Connect::Accepted(_)));
    let cookie = server.login().await;
    let app = server
        .connect(ClientOptions {
            headers: origin,
            ..common::with_cookie(&cookie)
        })
        .await
        .refused();
    assert!(app.contains("admin namespace only"), "{app}");

    let mut bad = config;
    bad.admin.ui_dir = Some(dir.path().join("missing"));
    let error = sidecast_web::Sidecast::builder()
        .config(bad)
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("admin.ui_dir") && error.contains("npm install"),
        "{error}"
    );
}

/// Two nodes on one broker: a UI on the first sees both nodes' stats, each under its own
/// `serverId`, with its own socket count.
async fn stats_of_two_nodes(kind: BrokerKind, url: &str) {
    let config = admin_config(common::broker_config(kind, url));
    let a = TestServer::start(config.clone()).await;
    let (b, _cookie, _app) = TestServer::start_signed_in(config).await;
    let mut ui = admin(&a).await;
    let mut seen = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats seen: {seen:?}"
        );
        let stats = next_named(&mut ui, "server_stats").await;
        let id = stats[0]["serverId"].as_str().unwrap().to_owned();
        seen.insert(id, stats[0].clone());
    }
    let of = |node: &TestServer| seen[node.state.node_id()].clone();
    assert_eq!(of(&a)["clientsCount"], 0);
    assert_eq!(of(&b)["clientsCount"], 1);
    assert_eq!(
        of(&b)["namespaces"],
        json!([{"name": "/", "socketsCount": 1}])
    );
    assert_eq!(of(&b)["pid"], std::process::id());
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn server_stats_of_every_node_through_redis() {
    let redis = sidecast_testkit::RedisServer::start_local().await;
    stats_of_two_nodes(BrokerKind::Redis, redis.url()).await;
}

#[cfg(feature = "amqp")]
#[tokio::test]
async fn server_stats_of_every_node_through_rabbitmq() {
    let rabbit = sidecast_testkit::RabbitMqServer::start_local().await;
    stats_of_two_nodes(BrokerKind::Amqp, rabbit.url()).await;
}

/// Two nodes on one Redis: a UI on the first lists the socket connected to the second with its
/// rooms (from the cluster view, asking no node), sees it join a room, and disconnects it.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_ui_lists_and_disconnects_a_socket_of_another_node_on_redis() {
    let redis = sidecast_testkit::RedisServer::start_local().await;
    lists_and_disconnects_across_nodes(BrokerKind::Redis, redis.url()).await;
}

/// The same on RabbitMQ alone.
#[cfg(feature = "amqp")]
#[tokio::test]
async fn the_ui_lists_and_disconnects_a_socket_of_another_node_on_rabbitmq() {
    let rabbit = sidecast_testkit::RabbitMqServer::start_local().await;
    lists_and_disconnects_across_nodes(BrokerKind::Amqp, rabbit.url()).await;
}

async fn lists_and_disconnects_across_nodes(kind: BrokerKind, url: &str) {
    let config = admin_config(common::broker_config(kind, url));
    let a = TestServer::start(config.clone()).await;
    let (b, _cookie, mut app) = TestServer::start_signed_in(config).await;
    let sid = b.state.io().sockets()[0].id.to_string();
    let mut ui = admin(&a).await;
    // The list on connect may precede the view's knowledge of node b: read lists and
    // connections until the socket appears.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "socket {sid} never listed"
        );
        let (event, args) = ui.next_event().await;
        let found = match event.as_str() {
            "all_sockets" => args[0]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == sid.as_str())
                .cloned(),
            "socket_connected" if args[0]["id"] == sid.as_str() => Some(args[0].clone()),
            _ => None,
        };
        if let Some(socket) = found {
            break socket;
        }
    };
    let rooms: Vec<&str> = listed["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        rooms.contains(&sid.as_str()) && rooms.contains(&"user:Gonzalo"),
        "{listed}"
    );
    let headers = &listed["handshake"]["headers"];
    assert!(
        headers.get("cookie").is_none(),
        "cookies are not shown: {headers}"
    );

    ui.client
        .emit("join", args(json!(["/", "game:7", sid])))
        .await
        .unwrap();
    loop {
        let (event, args) = ui.next_event().await;
        if event == "room_joined" && args[1] == "game:7" && args[2] == sid.as_str() {
            break;
        }
    }
    ui.client
        .emit("_disconnect", args(json!(["/", true, sid])))
        .await
        .unwrap();
    assert_eq!(next_named(&mut app, CLOSED).await, Vec::<Value>::new());
    loop {
        let (event, args) = ui.next_event().await;
        if event == "socket_disconnected" && args[1] == sid.as_str() {
            break;
        }
    }
}
