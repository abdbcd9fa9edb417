//! The default body limit of `POST /api/`: 1 MiB, about Node's socket.io's, so that the messages
//! the original delivers (a 64 KiB string) go through; 413 above it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, memory_config};
use serde_json::{Value, json};

#[tokio::test]
async fn a_64_kib_message_is_delivered_and_a_body_over_1_mib_is_refused() {
    let (server, cookie, mut client) = TestServer::start_signed_in(memory_config()).await;
    assert_eq!(server.state.config().server.max_body_bytes, 1024 * 1024);
    let big = "x".repeat(64 * 1024);
    server.round_trip(&cookie, &mut client, &big).await;

    let too_big = json!({"channel": "message", "body": "x".repeat(1024 * 1024)}).to_string();
    let (status, answer) = server
        .post_api(Some(&cookie), Some("application/json"), too_big)
        .await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("max_body_bytes"));
    let response = server
        .request(reqwest::Method::POST, "/api/rooms")
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(vec![b' '; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
}
