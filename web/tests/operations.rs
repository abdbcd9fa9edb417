//! Operations: metrics, slow clients, graceful shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use common::stall::{flood, stalled_client};
use futures_util::StreamExt;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ClientOptions, DEADLINE, TestServer, memory_config};
use serde_json::json;
use sidecast_core::config::SlowClientPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn metrics(server: &TestServer) -> String {
    reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one sample line (`name{labels} value`) of the Prometheus text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let (server, cookie, mut client) = TestServer::start_signed_in(memory_config()).await;
    server.connect(ClientOptions::default()).await.refused();
    server
        .state
        .broker()
        .publish("sidecast", Bytes::from_static(b"not json"))
        .await
        .unwrap();
    server
        .publish(&cookie, json!({"channel": "message", "body": "Hi"}))
        .await;
    assert_eq!(client.next_event().await.0, "message");
    // The pub/sub message and the /api/ event (through the history) take two paths, not ordered
    // with each other: wait until the first was handled too.
    sidecast_testkit::eventually("the undecodable message was counted", || {
        server.state.metrics().dropped_count("undecodable") == 1
    })
    .await;

    let text = metrics(&server).await;
    assert_eq!(sample(&text, "sidecast_sockets_connected"), 1.0);
    assert_eq!(
        sample(
            &text,
            r#"sidecast_connects_refused_total{reason="unauthenticated"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&text, r#"sidecast_events_published_total{source="api"}"#),
        1.0
    );
    assert_eq!(sample(&text, "sidecast_events_emitted_total"), 1.0);
    assert_eq!(
        sample(
            &text,
            r#"sidecast_events_dropped_total{reason="undecodable"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"sidecast_bus_messages_received_total{source="native"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(&text, "sidecast_api_request_duration_seconds_count"),
        1.0
    );
    assert_eq!(sample(&text, "sidecast_delivery_lag_seconds_count"), 1.0);
    client.disconnect().await;
    // The gauge follows disconnects.
    let deadline = Instant::now() + DEADLINE;
    while sample(&metrics(&server).await, "sidecast_sockets_connected") != 0.0 {
        assert!(
            Instant::now() < deadline,
            "socket gauge never went back to 0"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disconnect_policy_drops_a_stalled_socket() {
    let mut config = memory_config();
    config.server.socket_buffer = 64;
    config.server.slow_client = SlowClientPolicy::Disconnect;
    // Keep engine.io's heartbeat out of the way: this test is about Sidecast's own policy.
    config.server.ping_interval_ms = 120_000;
    let (server, cookie, mut reader) = TestServer::start_signed_in(config).await;
    let mut stalled = stalled_client(&server, &cookie).await;
    let metrics = server.state.metrics();
    let deadline = Instant::now() + DEADLINE;
    while metrics.slow_client_disconnects.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled socket never overflowed"
        );
        flood(&server, &mut reader, 1, 8 * 1024).await;
    }
    // Counted once, however many more events it misses.
    flood(&server, &mut reader, 5, 8 * 1024).await;
    assert_eq!(metrics.slow_client_disconnects.get(), 1);

    // The full queue could not even take the disconnect packet. As soon as it has room (the
    // client reads again), the next event makes the relay retry, and the client is told to go.
    let drained = tokio::spawn(async move {
        while let Some(Ok(frame)) = stalled.next().await {
            if frame.to_text().is_ok_and(|t| t.starts_with("41")) {
                return true;
            }
        }
        false
    });
    let deadline = Instant::now() + DEADLINE;
    while !drained.is_finished() {
        assert!(
            Instant::now() < deadline,
            "no disconnect packet reached the client"
        );
        flood(&server, &mut reader, 1, 16).await;
    }
    assert!(
        drained.await.unwrap(),
        "the client saw a Socket.IO disconnect"
    );
    assert_eq!(server.state.io().sockets().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_and_closes_sockets() {
    let server = TestServer::start(memory_config()).await;
    let cookie = server.login().await;
    // A websocket client, read raw, to see how the server ends it.
    let mut socket = stalled_client(&server, &cookie).await;
    // A POST whose body is still arriving when the shutdown begins. `Expect: 100-continue`
    // makes the server say when its handler starts reading the body: only then is the request
    // in flight (before that, a shutdown may find the connection idle, and close it).
    let body = r#"{"channel":"message","body":"in flight"}"#;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/ HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nCookie: {cookie}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            assert_eq!(
                tcp.read(&mut byte).await.unwrap(),
                1,
                "connection closed early"
            );
            interim.push(byte[0]);
        }
    })
    .await
    .expect("the handler starts reading the body");
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    tcp.write_all(&body.as_bytes()[..10]).await.unwrap();

    let stopping = tokio::spawn(server.stop());
    // The transport is closed without a Socket.IO disconnect ("41"), after which socket.io
    // clients would not reconnect: they must reconnect, to the other nodes.
    let frames = tokio::time::timeout(DEADLINE, async {
        let mut frames = Vec::new();
        while let Some(Ok(frame)) = socket.next().await {
            if let Ok(text) = frame.to_text() {
                frames.push(text.to_owned());
            }
        }
        frames
    })
    .await
    .expect("the shutdown closes the socket's transport");
    assert!(
        !frames.iter().any(|f| f.starts_with("41")),
        "no Socket.IO disconnect: {frames:?}"
    );
    tcp.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"status":true}"#), "{answer}");
    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("shutdown finishes within its timeout")
        .unwrap();
}
