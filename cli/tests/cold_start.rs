//! `sidecast serve` started before its Redis (decision 21): the process stays up, answers
//! `/healthz` and 503 on `/readyz`, and becomes ready once Redis answers;
//! `SIDECAST_BROKER__START_TIMEOUT_MS` brings back the exit with status 1.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../web/tests/common/mod.rs"]
mod sio;

use std::time::{Duration, Instant};

use common::{DEADLINE, run_failing, serve, sidecast};
use sidecast_testkit::RedisServer;
use sio::await_ready;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_started_before_redis_stays_up_and_becomes_ready() {
    let mut redis = RedisServer::reserve_local();
    let mut served = serve(
        &["--bind", "127.0.0.1:0"],
        &[("SIDECAST_BROKER__URL", redis.url())],
    );
    let health = reqwest::get(format!("{}/healthz", served.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    await_ready(&served.base, 503, DEADLINE).await;
    assert!(served.child.try_wait().unwrap().is_none(), "still running");
    assert!(
        served
            .log()
            .iter()
            .any(|l| l.contains("the broker is unavailable") && l.contains(redis.url())),
        "logs that it waits, naming the URL"
    );

    redis.restart().await;
    await_ready(&served.base, 200, DEADLINE).await;
    assert!(served.child.try_wait().unwrap().is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_timeout_zero_exits_at_once_naming_broker_url() {
    let redis = RedisServer::reserve_local();
    let started = Instant::now();
    let stderr = run_failing(
        &["serve", "--bind", "127.0.0.1:0"],
        &[
            ("SIDECAST_BROKER__URL", redis.url()),
            ("SIDECAST_BROKER__START_TIMEOUT_MS", "0"),
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(5), "exits fast");
    assert!(
        stderr.contains(redis.url()) && stderr.contains("broker.url (SIDECAST_BROKER__URL)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_timeout_exits_with_status_1_after_it() {
    let redis = RedisServer::reserve_local();
    let started = Instant::now();
    let output = sidecast()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("SIDECAST_BROKER__URL", redis.url())
        .env("SIDECAST_BROKER__START_TIMEOUT_MS", "600")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(elapsed >= Duration::from_millis(600), "waited {elapsed:?}");
    assert!(
        stderr.contains("broker.url (SIDECAST_BROKER__URL)"),
        "{stderr}"
    );
}
