//! What an acknowledged event is worth on Redis: with `broker.min_replicas`, `POST /api/`
//! answers 200 only once a replica has the event (503 with `Retry-After` otherwise), and a
//! history lost by Redis (a restart without persistence) is never passed off as recovered: a
//! client coming back from before the loss is told `unknown`, and the loss is counted.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ClientOptions, TestServer, broker_config, post_json, with_cookie};
use serde_json::json;
use sidecast_core::config::BrokerKind;
use sidecast_testkit::RedisServer;

/// Client options with a session cookie and `auth: {offset}`.
fn resuming(cookie: &str, offset: &str) -> ClientOptions {
    ClientOptions {
        auth: Some(json!({ "offset": offset })),
        ..with_cookie(cookie)
    }
}

/// Posts `body` to `/api/` until it is acknowledged (the node answers 503 while Redis comes
/// back), within the test deadline.
async fn publish_eventually(server: &TestServer, cookie: &str, body: serde_json::Value) {
    let deadline = std::time::Instant::now() + common::DEADLINE;
    loop {
        let status = post_json(&server.base, cookie, body.clone()).await.status();
        match status.as_u16() {
            200 => return,
            503 => assert!(std::time::Instant::now() < deadline, "{body} still refused"),
            other => panic!("POST /api/ answered {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The value of `metric` in `/metrics`.
async fn metric(server: &TestServer, metric: &str) -> f64 {
    let text = server.get_text("/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(metric)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{metric} is not in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A client receives `before-0` and leaves; `missed-1` and `missed-2` are acknowledged; Redis
/// restarts without persistence (the history is gone); `after-0..2` are acknowledged. The
/// client coming back with the offset of `before-0` must not be told `recovered` with
/// `after-0..2` only: `missed-1` and `missed-2` are lost, and it is told `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_coming_back_across_a_lost_history_is_told_unknown() {
    let mut redis = RedisServer::start_local().await;
    let server = TestServer::start(broker_config(BrokerKind::Redis, redis.url())).await;
    let cookie = server.login().await;
    let mut client = server.connect(resuming(&cookie, "")).await.accepted();
    assert_eq!(client.recovery_report().await["status"], "new");
    server
        .publish(&cookie, json!({"channel": "count", "body": "before-0"}))
        .await;
    let (event, args) = client.next_event().await;
    assert_eq!((event.as_str(), &args[0]), ("count", &json!("before-0")));
    let (_, seen) = client.disconnect_and_drain().await;
    let seen = seen.expect("the offset of before-0");
    for missed in ["missed-1", "missed-2"] {
        server
            .publish(&cookie, json!({"channel": "count", "body": missed}))
            .await;
    }
    assert_eq!(metric(&server, "sidecast_history_loss_total").await, 0.0);

    redis.restart().await;
    for n in 0..3 {
        publish_eventually(
            &server,
            &cookie,
            json!({"channel": "count", "body": format!("after-{n}")}),
        )
        .await;
    }

    let mut back = server.connect(resuming(&cookie, &seen)).await.accepted();
    let report = back.recovery_report().await;
    assert_eq!(report["status"], "unknown", "{report}");
    assert_eq!(report["recovered"], 0, "{report}");
    assert!(
        metric(&server, "sidecast_history_loss_total").await >= 1.0,
        "the loss is counted"
    );
    assert_eq!(server.state.metrics().recovery_count("recovered"), 0);
    back.disconnect().await;
    server.stop().await;
}

/// With `broker.min_replicas = 1`, an event is acknowledged while the replica acknowledges it,
/// and refused with 503 and `Retry-After` (never 200) once the replica is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_replica_an_event_is_a_503() {
    let master = RedisServer::start_local().await;
    let mut replica = master.start_replica().await;
    let mut config = broker_config(BrokerKind::Redis, master.url());
    config.broker.min_replicas = 1;
    config.broker.replica_timeout_ms = 300;
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let mut client = server.client(&cookie).await;
    server
        .publish(&cookie, json!({"channel": "count", "body": "replicated"}))
        .await;
    assert_eq!(client.next_event().await.1[0], "replicated");

    replica.stop().await;
    let started = std::time::Instant::now();
    let refused = post_json(
        &server.base,
        &cookie,
        json!({"channel": "count", "body": "unreplicated"}),
    )
    .await;
    let took = started.elapsed();
    let (status, retry_after) = (
        refused.status(),
        refused.headers().get("retry-after").cloned(),
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry_after.unwrap(), "1");
    assert!(
        body["error"].as_str().unwrap().contains("min_replicas"),
        "the reason names the setting: {body}"
    );
    assert!(
        took < std::time::Duration::from_millis(1_500),
        "refused after {took:?}, the replica time-out is 300 ms"
    );
    client.disconnect().await;
    server.stop().await;
}
