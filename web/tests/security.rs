//! Every refusal path of the security model: each asserts the status or connect_error and that
//! nothing was emitted.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use common::{CLOSED, ClientOptions, Connect, TestServer, memory_config, with_cookie, with_token};
use serde_json::json;
use sidecast_core::codec::native;
use sidecast_core::config::{PolicyKind, PolicyList};
use sidecast_core::envelope::now_millis;
use sidecast_core::{Envelope, Signer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cookie_is_refused() {
    let server = TestServer::start(memory_config()).await;
    let cookie = server.login().await;
    // The value is <signature><base64 of {"user":"Gonzalo"}>: keep the signature, change the user.
    let (name, value) = cookie.split_once('=').unwrap();
    let value = urlencoding_decode(value);
    let original = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"user":"Gonzalo"}"#);
    assert!(value.ends_with(&original), "{value}");
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"user":"admin"}"#);
    let tampered = format!(
        "{name}={}{}",
        &value[..value.len() - original.len()],
        forged_payload
    );
    let reason = server.connect(with_cookie(&tampered)).await.refused();
    assert!(reason.contains("unauthorized"), "{reason}");
    let (status, _) = server
        .post_api(
            Some(&tampered),
            Some("application/json"),
            r#"{"channel":"message","body":"x"}"#,
        )
        .await;
    assert_eq!(status, 401);
}

fn urlencoding_decode(s: &str) -> String {
    s.replace("%3D", "=")
        .replace("%2F", "/")
        .replace("%2B", "+")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_missing_tokens_are_refused() {
    let mut config = memory_config();
    config.auth.policy = PolicyList::One(PolicyKind::Token);
    config
        .auth
        .tokens
        .insert("cron".into(), "s3cret-token".into());
    let server = TestServer::start(config).await;
    let mut good = server.connect(with_token("s3cret-token")).await.accepted();
    for options in [
        with_token("wrong"),
        with_token(""),
        ClientOptions::default(),
    ] {
        let reason = server.connect(options).await.refused();
        assert!(reason.contains("token"), "{reason}");
    }
    let api = |auth: Option<&'static str>| {
        let base = server.base.clone();
        async move {
            let mut request = reqwest::Client::new()
                .post(format!("{base}/api/"))
                .json(&json!({"channel": "message", "body": "via token"}));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(api(None).await, 401);
    assert_eq!(api(Some("Bearer wrong")).await, 401);
    assert_eq!(api(Some("Basic s3cret-token")).await, 401);
    assert_eq!(api(Some("Bearer s3cret-token")).await, 200);
    assert_eq!(
        good.next_event().await,
        ("message".to_owned(), vec![json!("via token")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_handshakes_with_a_valid_cookie_are_refused() {
    let mut config = memory_config();
    config.server.allowed_origins = vec!["https://app.example.com".into()];
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    for websocket_only in [false, true] {
        let options = |origin: &str| ClientOptions {
            cookie: Some(cookie.clone()),
            websocket_only,
            headers: vec![("Origin".into(), origin.into())],
            ..Default::default()
        };
        match server.connect(options("http://evil.example")).await {
            Connect::Refused(_) => {}
            Connect::Accepted(_) => {
                panic!("cross-origin handshake accepted (websocket_only={websocket_only})")
            }
        }
        let own = server.base.clone();
        server.connect(options(&own)).await.accepted();
        server
            .connect(options("https://app.example.com"))
            .await
            .accepted();
    }
    // The polling handshake itself answers 403 to a foreign origin.
    let response = reqwest::Client::new()
        .get(format!("{}?EIO=4&transport=polling", server.socket_url()))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_api_post_is_refused_and_emits_nothing() {
    let (server, cookie, mut client) = TestServer::start_signed_in(memory_config()).await;
    let response = common::post_api_with(
        &server.base,
        &[("cookie", &cookie), ("origin", "http://evil.example")],
        json!({"channel": "message", "body": "csrf"}),
    )
    .await;
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("allowed_origins"));
    server
        .publish(&cookie, json!({"channel": "done", "body": "marker"}))
        .await;
    assert_eq!(client.events_until("done").await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_and_emits_only_what_it_accepted() {
    let mut config = memory_config();
    config.server.api_rate_limit = 1;
    config.server.api_rate_burst = 3;
    let (server, cookie, mut client) = TestServer::start_signed_in(config).await;
    let mut accepted = 0;
    let mut limited = None;
    for i in 0..6 {
        let response = server
            .request(reqwest::Method::POST, "/api/")
            .header("cookie", &cookie)
            .json(&json!({"channel": "count", "body": i.to_string()}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => accepted += 1,
            429 => {
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
                limited = Some(response.json::<serde_json::Value>().await.unwrap());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let limited = limited.expect("the burst of 3 was exceeded");
    assert!(limited["error"].as_str().unwrap().contains("rate limit"));
    assert!((3..6).contains(&accepted), "accepted {accepted}");
    // The marker through the node's Emitter, which no rate limit applies to, and which takes the
    // history's path like the accepted events, so that it follows them.
    server.state.emitter().emit("done", "marker").await.unwrap();
    assert_eq!(client.events_until("done").await.len(), accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_disconnects_the_users_open_socket() {
    let (server, cookie, mut client) = TestServer::start_signed_in(memory_config()).await;
    common::logout_at(&server.base, &cookie).await;
    assert_eq!(client.next_event().await.0, CLOSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bus_rejects_unsigned_and_replayed_accepts_signed() {
    let mut config = memory_config();
    config.broker.signing_key = "bus-signing-key".into();
    let (server, cookie, mut client) = TestServer::start_signed_in(config).await;
    let broker = server.state.broker().clone();
    let signer = Signer::new("bus-signing-key", Duration::from_secs(60));
    let publish = |bytes: Vec<u8>| {
        let broker = broker.clone();
        async move {
            broker
                .publish("sidecast", Bytes::from(bytes))
                .await
                .unwrap()
        }
    };
    let event = |text: &str| native::encode(&Envelope::new("message", json!(text)));

    publish(event("unsigned")).await;
    let signed = signer.seal(&event("signed"), now_millis());
    publish(signed.clone()).await;
    publish(signed).await; // replay
    let wrong_key = Signer::new("another-key", Duration::from_secs(60));
    publish(wrong_key.seal(&event("wrong key"), now_millis())).await;
    let stale = signer.seal(&event("stale"), now_millis() - 120_000);
    publish(stale).await;
    // /api/ signs what it publishes (its events go through the history).
    server
        .publish(&cookie, json!({"channel": "signed-api", "body": "marker"}))
        .await;
    // The end marker over pub/sub, the path of the messages above, so that it follows them; the
    // history's path is not ordered with pub/sub, so the /api/ event may come on either side.
    publish(signer.seal(
        &native::encode(&Envelope::new("done", json!("marker"))),
        now_millis(),
    ))
    .await;
    let mut events = client.events_until("done").await;
    match events.iter().position(|(event, _)| event == "signed-api") {
        Some(i) => {
            events.remove(i);
        }
        None => assert_eq!(client.next_event().await.0, "signed-api"),
    }
    assert_eq!(events, vec![("message".to_owned(), vec![json!("signed")])]);
    let metrics = server.state.metrics();
    assert_eq!(metrics.dropped_count("unsigned"), 1);
    assert_eq!(metrics.dropped_count("bad_signature"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_is_http_only_same_site_lax_and_secure_when_configured() {
    for secure in [false, true] {
        let mut config = memory_config();
        config.session.secure = secure;
        let server = TestServer::start(config).await;
        let response = reqwest::get(format!("{}/login", server.base))
            .await
            .unwrap();
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        assert_eq!(cookie.contains("Secure"), secure, "{cookie}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_socket_packet_closes_that_connection_only() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut config = memory_config();
    config.server.max_socket_payload_bytes = 1_000;
    let (server, cookie, mut bystander) = TestServer::start_signed_in(config).await;
    let mut socket = common::stall::stalled_client(&server, &cookie).await;
    let big = format!("42[\"upload\",\"{}\"]", "x".repeat(10_000));
    socket.send(Message::text(big)).await.unwrap();
    let closed = tokio::time::timeout(common::DEADLINE, async {
        while let Some(Ok(frame)) = socket.next().await {
            if frame.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the oversize packet's connection was closed"
    );
    server
        .publish(&cookie, json!({"channel": "message", "body": "still here"}))
        .await;
    assert_eq!(
        bystander.next_event().await,
        ("message".to_owned(), vec![json!("still here")])
    );
}
