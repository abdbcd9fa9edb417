//! The `http` policy against a small real web application (axum, standing in for the app):
//! it answers 200 with the user and rooms, 401/403 with a reason the client sees; when it is slow
//! or down the connect is refused with a retryable reason (503 on /api/) within the time limit,
//! never accepted; the concurrency bound holds; refusals are counted.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{ClientOptions, TestServer, memory_config, post_api_with, with_cookie, with_token};
use serde_json::{Value, json};
use sidecast_core::config::{PolicyKind, PolicyList};
use sidecast_core::{Action, AuthPolicy, AuthRequest, RefusalKind};
use tokio::sync::Mutex;

/// The application: decides on the `user` cookie, records the requests it got.
async fn app_auth(
    State(seen): State<Arc<Mutex<Vec<Value>>>>,
    body: axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    let body = body.0;
    seen.lock().await.push(body.clone());
    let cookie = body["headers"]["cookie"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match cookie.as_str() {
        "user=alice" => (
            StatusCode::OK,
            axum::Json(json!({"user": "alice", "rooms": ["team:7"]})),
        ),
        "user=banned" => (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"reason": "this account is banned"})),
        ),
        "user=slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (StatusCode::OK, axum::Json(json!({"user": "slow"})))
        }
        "user=broken" => (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({}))),
        _ if body["token"] == "service-token" => {
            (StatusCode::OK, axum::Json(json!({"user": "cron"})))
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"reason": "log in at /login first"})),
        ),
    }
}

async fn start_app() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/sidecast/auth", post(app_auth))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sidecast/auth", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn http_config(url: &str) -> sidecast_core::Config {
    let mut config = memory_config();
    config.auth.policy = PolicyList::One(PolicyKind::Http);
    config.auth.http.url = url.to_owned();
    config.auth.http.timeout_ms = 500;
    config.auth.http.publish = true;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_decides() {
    let (url, seen) = start_app().await;
    let server = TestServer::start(http_config(&url)).await;
    let mut alice = server.connect(with_cookie("user=alice")).await.accepted();
    let request = seen.lock().await.last().cloned().unwrap();
    assert_eq!(request["action"], "connect");
    assert_eq!(request["namespace"], "/");
    assert_eq!(request["headers"]["cookie"], "user=alice");
    assert!(
        request["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{request}"
    );
    // The rooms of the answer; publishing is asked too.
    let response = post_api_with(
        &server.base,
        &[("cookie", "user=alice")],
        json!({"channel": "message", "body": "to team 7", "to": "team:7"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let request = seen.lock().await.last().cloned().unwrap();
    assert_eq!(
        (request["action"].clone(), request["event"].clone()),
        (json!("publish"), json!("message"))
    );
    assert_eq!(request["rooms"], json!(["team:7"]));
    assert_eq!(
        alice.next_event().await,
        ("message".to_owned(), vec![json!("to team 7")])
    );
    // The Socket.IO auth token is passed on.
    server
        .connect(with_token("service-token"))
        .await
        .accepted()
        .disconnect()
        .await;

    let reason = server.connect(with_cookie("user=banned")).await.refused();
    assert!(
        reason.contains("forbidden: this account is banned"),
        "{reason}"
    );
    let reason = server.connect(ClientOptions::default()).await.refused();
    assert!(
        reason.contains("unauthorized: log in at /login first"),
        "{reason}"
    );
    let response = post_api_with(
        &server.base,
        &[("cookie", "user=banned")],
        json!({"channel": "m", "body": "x"}),
    )
    .await;
    assert_eq!(response.status(), 403);
    alice.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_or_broken_application_is_a_retryable_refusal_never_an_accept() {
    let (url, _) = start_app().await;
    let server = TestServer::start(http_config(&url)).await;
    for cookie in ["user=slow", "user=broken"] {
        let started = Instant::now();
        let reason = server.connect(with_cookie(cookie)).await.refused();
        assert!(
            reason.contains("unavailable, retry later"),
            "{cookie}: {reason}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{cookie}: bounded by the time-out"
        );
    }
    let response = post_api_with(
        &server.base,
        &[("cookie", "user=slow")],
        json!({"channel": "m", "body": "x"}),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));

    // Down: nothing listens at the URL. Three refusals, one log line for the outage (the policy
    // logs under its own crate's name).
    let log = sidecast_testkit::log::CapturedLog::global("sidecast_web=info,sidecast_auth=info");
    let closed = sidecast_testkit::process::free_port();
    let down = TestServer::start(http_config(&format!("http://127.0.0.1:{closed}/auth"))).await;
    for _ in 0..3 {
        let reason = down.connect(with_cookie("user=alice")).await.refused();
        assert!(reason.contains("unavailable, retry later"), "{reason}");
    }
    let logged = log
        .text()
        .lines()
        .filter(|l| l.contains("auth endpoint fails") && l.contains(&format!(":{closed}/")))
        .count();
    assert_eq!(logged, 1, "logged once per outage:\n{}", log.text());
    // In a list, the retryable refusal wins over the session policy's "log in".
    let mut config = http_config(&format!("http://127.0.0.1:{closed}/auth"));
    config.auth.policy = PolicyList::Any(vec![PolicyKind::Session, PolicyKind::Http]);
    let both = TestServer::start(config).await;
    assert!(
        both.connect(with_cookie("user=alice"))
            .await
            .refused()
            .contains("retry later")
    );

    let metrics = server.get_text("/metrics").await;
    for code in ["timeout", "bad_status"] {
        let series = format!(
            "sidecast_auth_refusals_total{{policy=\"http\",reason=\"{code}\",action=\"connect\"}}"
        );
        assert!(metrics.contains(&series), "{series}");
    }
    assert!(
        down.get_text("/metrics")
            .await
            .contains("reason=\"unreachable\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded() {
    let (url, seen) = start_app().await;
    let mut config = http_config(&url).auth.http;
    config.max_concurrency = 1;
    config.timeout_ms = 800;
    let policy = sidecast_web::auth::HttpAuth::from_config(&config).unwrap();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", "user=slow".parse().unwrap());
    let request = AuthRequest {
        action: Action::Connect { namespace: "/" },
        headers: &headers,
        session_user: None,
        token: None,
        peer: None,
    };
    // Three slow connects at once: the application is asked once; the others give up waiting
    // for the slot within the same time limit. All are refused as retryable.
    let started = Instant::now();
    let outcomes = futures_util::future::join_all((0..3).map(|_| policy.authorize(&request))).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    for outcome in outcomes {
        assert_eq!(outcome.unwrap_err().kind(), Some(RefusalKind::Unavailable));
    }
    assert_eq!(
        seen.lock().await.len(),
        1,
        "one slot, one request in flight"
    );
}
