//! Nodes on a real RabbitMQ: the same behaviour as on Redis, selected by configuration alone.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../web/tests/common/mod.rs"]
mod sio;

use std::time::{Duration, Instant};

use common::{Served, run_ok, serve};
use serde_json::json;
use sidecast_core::config::BrokerKind;
use sidecast_testkit::RabbitMqServer;
use sio::{TestServer, await_ready, login_at as login, post_json as post};

/// How long a broker restart may take to be noticed and recovered from.
const RESTART_WAIT: Duration = Duration::from_secs(60);

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

/// A node configured for AMQP by environment only: the one change from a Redis deployment.
fn node(url: &str, channel: &str) -> Served {
    serve(
        &["--bind", "127.0.0.1:0"],
        &[
            ("SIDECAST_BROKER__KIND", "amqp"),
            ("SIDECAST_BROKER__URL", url),
            ("SIDECAST_BROKER__CHANNEL", channel),
            ("SIDECAST_SESSION__SECRET", SECRET),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_rabbitmq_share_api_and_emit_events() {
    let rabbit = RabbitMqServer::shared().await;
    let channel = sidecast_testkit::unique_channel("amqp-cluster");
    let a = node(rabbit.url(), &channel);
    let b = node(rabbit.url(), &channel);
    let cookie = login(&a.base).await;
    let mut on_a = sio::client_at(&a.socket_url(), &cookie).await;
    let mut on_b = sio::client_at(&b.socket_url(), &cookie).await;

    for i in 0..10 {
        let r = post(
            &a.base,
            &cookie,
            json!({"channel": "count", "body": i.to_string()}),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    run_ok(
        &["emit", "message", "over amqp"],
        &[
            ("SIDECAST_BROKER__KIND", "amqp"),
            ("SIDECAST_BROKER__URL", rabbit.url()),
            ("SIDECAST_BROKER__CHANNEL", &channel),
        ],
    );
    let r = post(&a.base, &cookie, json!({"channel": "done", "body": ""})).await;
    assert_eq!(r.status(), 200);

    let mut expected: Vec<sio::Event> = (0..10)
        .map(|i| ("count".to_owned(), vec![json!(i.to_string())]))
        .collect();
    expected.push(("message".to_owned(), vec![json!("over amqp")]));
    assert_eq!(on_a.events_until("done").await, expected);
    assert_eq!(on_b.events_until("done").await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_receives_again_after_a_rabbitmq_restart() {
    let mut rabbit = RabbitMqServer::start_local().await;
    let config = sio::broker_config(BrokerKind::Amqp, rabbit.url());
    let (server, cookie, mut client) = TestServer::start_signed_in(config).await;

    rabbit.stop().await;
    await_ready(&server.base, 503, RESTART_WAIT).await;
    server.publish_in_outage(&cookie).await;

    rabbit.restart().await;
    let back = Instant::now();
    await_ready(&server.base, 200, RESTART_WAIT).await;
    // Ready means consuming again: the node publishes and receives its own event.
    server
        .round_trip(&cookie, &mut client, "after restart")
        .await;
    eprintln!(
        "rabbitmq restart: first event delivered {:?} after rabbitmq was back",
        back.elapsed()
    );
    server.stop().await;
}
