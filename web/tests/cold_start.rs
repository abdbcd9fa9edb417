//! A cold start (decision 21): a node started while its broker is down serves `/healthz`,
//! answers 503 with `Retry-After` to `/readyz`, `POST /api/`, `POST /api/rooms` and Socket.IO
//! handshakes, and serves normally once the broker answers; `broker.start_timeout_ms` limits the
//! wait. On real Redis and RabbitMQ servers that start after the node.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, TestServer, await_ready};
use serde_json::{Value, json};
use sidecast_core::config::BrokerKind;
use sidecast_testkit::log::CapturedLog;
use sidecast_web::{Sidecast, StartError};

/// The log line of a node that starts waiting for its broker.
const WAITING: &str = "the broker is unavailable; the node serves /healthz";
/// The log line of a waiting node whose broker answered.
const ANSWERED: &str = "the broker answered; the node is ready";

/// How soon after the broker answers the node must serve (the issue asks for 1 s; the margin is
/// for a loaded test machine).
const READY_WITHIN: Duration = Duration::from_secs(2);

/// The service token of the principal `cron`, who may apply room operations.
const TOKEN: &str = "s3cret";

/// A test node on `kind` at `url` with sessions and the service token [`TOKEN`].
fn config(kind: BrokerKind, url: &str) -> sidecast_core::Config {
    use sidecast_core::config::{PolicyKind, PolicyList};
    let mut config = common::broker_config(kind, url);
    config.auth.policy = PolicyList::Any(vec![PolicyKind::Session, PolicyKind::Token]);
    config.auth.tokens.insert("cron".into(), TOKEN.into());
    config
}

fn log() -> &'static CapturedLog {
    CapturedLog::global("sidecast_web=info")
}

/// Lines of the log that contain both `needle` and `url`.
fn lines_with(needle: &str, url: &str) -> usize {
    log()
        .text()
        .lines()
        .filter(|l| l.contains(needle) && l.contains(url))
        .count()
}

/// Asserts what a starting node answers: `/healthz` 200, 503 with `Retry-After` elsewhere.
async fn assert_starting(server: &TestServer, cookie: &str) {
    assert!(!server.state.is_started());
    assert_eq!(server.get("/healthz").await.status(), 200);

    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "starting", "{body}");

    let answer = server.publish_in_outage(cookie).await;
    assert!(
        answer["error"].as_str().unwrap().contains("unavailable"),
        "{answer}"
    );

    let rooms = server
        .request(reqwest::Method::POST, "/api/rooms")
        .bearer_auth(TOKEN)
        .json(&json!({"op": "join", "rooms": "r", "to": "user:Gonzalo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rooms.status(), 503);
    assert!(rooms.headers().contains_key("retry-after"));

    // Engine.IO handshakes, polling and websocket: a transport failure, which clients retry.
    for transport in ["polling", "websocket"] {
        let handshake = reqwest::get(format!(
            "{}?EIO=4&transport={transport}",
            server.socket_url()
        ))
        .await
        .unwrap();
        assert_eq!(handshake.status(), 503, "{transport} handshake");
        assert_eq!(handshake.headers()["retry-after"], "1");
        let body: Value = handshake.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("starting"),
            "{body}"
        );
    }
}

/// Once ready: a socket connects and receives an event published through `POST /api/`.
async fn assert_serves(server: &TestServer, cookie: &str) {
    assert!(server.state.is_started());
    let mut client = server.client(cookie).await;
    server
        .round_trip(cookie, &mut client, "after the cold start")
        .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_redis_waits_and_serves_once_redis_answers() {
    log();
    let mut redis = sidecast_testkit::RedisServer::reserve_local();
    let url = redis.url().to_owned();
    let server = TestServer::start(config(BrokerKind::Redis, &url)).await;
    // The session cookie needs no broker.
    let cookie = server.login().await;
    assert_starting(&server, &cookie).await;

    redis.restart().await;
    let answered = Instant::now();
    let ready = await_ready(&server.base, 200, DEADLINE).await;
    assert!(
        ready.duration_since(answered) < READY_WITHIN,
        "ready {:?} after Redis answered",
        ready.duration_since(answered)
    );
    assert_serves(&server, &cookie).await;

    assert_eq!(lines_with(WAITING, &url), 1, "{}", log().text());
    assert!(
        log()
            .text()
            .lines()
            .any(|l| l.contains(WAITING) && l.contains("broker.start_timeout_ms")),
        "the waiting line names the key"
    );
    assert_eq!(lines_with(ANSWERED, &url), 1, "{}", log().text());
    server.stop().await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_timeout_zero_fails_at_once_naming_broker_url() {
    let redis = sidecast_testkit::RedisServer::reserve_local();
    let mut config = common::broker_config(BrokerKind::Redis, redis.url());
    config.broker.start_timeout_ms = Some(0);
    let started = Instant::now();
    let error = Sidecast::builder()
        .config(config)
        .build()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
    assert!(
        matches!(error, StartError::BrokerSetting { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(redis.url()) && text.contains("broker.url (SIDECAST_BROKER__URL)"),
        "{text}"
    );
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_timeout_ends_the_node_with_the_broker_error_after_it() {
    let redis = sidecast_testkit::RedisServer::reserve_local();
    let mut config = common::broker_config(BrokerKind::Redis, redis.url());
    config.broker.start_timeout_ms = Some(400);
    let started = Instant::now();
    let node = Sidecast::builder().config(config).build().await.unwrap();
    assert!(!node.is_started(), "the node serves while it waits");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = tokio::time::timeout(
        DEADLINE,
        sidecast_web::serve(listener, node, std::future::pending()),
    )
    .await
    .expect("serve returns when the start times out");
    let elapsed = started.elapsed();
    let text = served.unwrap_err().to_string();
    assert!(elapsed >= Duration::from_millis(400), "waited {elapsed:?}");
    assert!(
        text.contains(redis.url()) && text.contains("broker.url (SIDECAST_BROKER__URL)"),
        "{text}"
    );
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_reached_its_broker_shuts_down_at_once() {
    let redis = sidecast_testkit::RedisServer::reserve_local();
    let server = TestServer::start(common::broker_config(BrokerKind::Redis, redis.url())).await;
    assert!(!server.state.is_started());
    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_after_the_wait_ends_the_node() {
    // Redis comes up with a password the node does not have: waiting cannot help.
    let mut redis =
        sidecast_testkit::RedisServer::reserve_local_with_args(["--requirepass", "right-pw"]);
    let url = redis.url_with_credentials(None, "wrong-pw");
    let node = Sidecast::builder()
        .config(common::broker_config(BrokerKind::Redis, &url))
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = tokio::spawn(sidecast_web::serve(listener, node, std::future::pending()));
    redis.restart().await;
    let text = tokio::time::timeout(DEADLINE, served)
        .await
        .expect("serve returns on a permanent error")
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(text.contains("broker.url (SIDECAST_BROKER__URL)"), "{text}");
    assert!(!text.contains("wrong-pw"), "the password leaked: {text}");
}

#[cfg(feature = "amqp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_rabbitmq_waits_and_serves_once_it_answers() {
    let mut rabbit = sidecast_testkit::RabbitMqServer::start_local().await;
    rabbit.stop().await;
    let mut config = config(BrokerKind::Amqp, rabbit.url());
    config.broker.channel = sidecast_testkit::unique_channel("cold-start");
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    assert_starting(&server, &cookie).await;

    rabbit.restart().await;
    let answered = Instant::now();
    let ready = await_ready(&server.base, 200, DEADLINE).await;
    assert!(
        ready.duration_since(answered) < READY_WITHIN,
        "ready {:?} after RabbitMQ answered",
        ready.duration_since(answered)
    );
    assert_serves(&server, &cookie).await;
    server.stop().await;
}
