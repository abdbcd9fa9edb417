//! Every session store's cookie survives the cookie handling of the common Python clients:
//! aiohttp (python-socketio's `AsyncClient`, websocket and polling, header and cookie jar),
//! requests (polling, cookie jar) and websocket-client. Node and browsers: e2e/test/auth.test.js.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, memory_config, python};
use sidecast_core::config::SessionStoreKind;
use sidecast_testkit::RedisServer;

const CLIENTS: [&str; 6] = [
    "aiohttp-websocket",
    "aiohttp-polling",
    "aiohttp-jar",
    "requests-polling",
    "websocket-client",
    "requests-jar",
];

/// Logs in and connects with each Python client; every one must be accepted.
async fn every_client_accepted(server: &TestServer, store: &str) {
    let path = server.state.config().server.socketio_path.clone();
    let runs = CLIENTS.map(|client| {
        python::run(
            "session_clients.py",
            vec![server.base.clone(), path.clone(), client.to_owned()],
        )
    });
    let outputs = futures_util::future::join_all(runs).await;
    let failures: Vec<String> = CLIENTS
        .iter()
        .zip(outputs)
        .filter(|(_, out)| !out.status.success())
        .map(|(client, out)| {
            format!(
                "{client}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "session.store = {store}: refused clients:\n{}",
        failures.join("\n")
    );
}

fn config(store: SessionStoreKind) -> sidecast_core::Config {
    let mut config = memory_config();
    config.session.store = store;
    config.session.secret = "a-session-secret-of-at-least-32-bytes!".into();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_store_cookie_survives_python_clients() {
    let server = TestServer::start(config(SessionStoreKind::Cookie)).await;
    every_client_accepted(&server, "cookie").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_cookie_survives_python_clients() {
    let server = TestServer::start(config(SessionStoreKind::Memory)).await;
    every_client_accepted(&server, "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_cookie_survives_python_clients() {
    let redis = RedisServer::start().await;
    let mut config = config(SessionStoreKind::Redis);
    config.session.url = redis.url().to_owned();
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let value = cookie.split_once('=').unwrap().1;
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "the cookie value holds only unreserved characters and escapes: {value}"
    );
    every_client_accepted(&server, "redis").await;
}
