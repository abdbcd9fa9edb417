//! A RabbitMQ history stream queue deleted and declared again, as a user would meet it (decision
//! 33): one node, a connected client, 20 events delivered; `rabbitmqctl delete_queue`; 40 more
//! events acknowledged. The connected client gets all 40 (the node reads the new stream from its
//! start), and a client coming back with an offset from the old stream is told `unknown`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ClientOptions, TestServer, broker_config, post_json, with_cookie};
use serde_json::json;
use sidecast_core::config::BrokerKind;

/// Client options with a session cookie and `auth: {offset}`.
fn resuming(cookie: &str, offset: &str) -> ClientOptions {
    ClientOptions {
        auth: Some(json!({ "offset": offset })),
        ..with_cookie(cookie)
    }
}

/// Posts `body` to `/api/` until it is acknowledged (503 while the queue is declared again),
/// within the test deadline.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_and_redeclared_stream_is_read_from_its_start_and_old_offsets_are_unknown() {
    let rabbit = sidecast_testkit::RabbitMqServer::start_local().await;
    let mut config = broker_config(BrokerKind::Amqp, rabbit.url());
    config.broker.channel = sidecast_testkit::unique_channel("redeclared");
    let queue = format!("sidecast.history.{}", config.broker.channel);
    let server = TestServer::start(config).await;
    let cookie = server.login().await;
    let mut client = server.connect(resuming(&cookie, "")).await.accepted();
    assert_eq!(client.recovery_report().await["status"], "new");
    let mut leaver = server.connect(resuming(&cookie, "")).await.accepted();
    assert_eq!(leaver.recovery_report().await["status"], "new");
    for n in 0..20 {
        server
            .publish(
                &cookie,
                json!({"channel": "count", "body": format!("old-{n}")}),
            )
            .await;
        let (event, args) = client.next_event().await;
        assert_eq!(
            (event.as_str(), &args[0]),
            ("count", &json!(format!("old-{n}")))
        );
        let (_, args) = leaver.next_event().await;
        assert_eq!(args[0], json!(format!("old-{n}")));
    }
    let (_, seen) = leaver.disconnect_and_drain().await;
    let seen = seen.expect("the offset of old-19");
    assert_eq!(metric(&server, "sidecast_history_loss_total").await, 0.0);

    rabbit.ctl(&["delete_queue", &queue]).await.unwrap();
    for n in 0..40 {
        publish_eventually(
            &server,
            &cookie,
            json!({"channel": "count", "body": format!("new-{n}")}),
        )
        .await;
    }
    for n in 0..40 {
        let (event, args) = client.next_event().await;
        assert_eq!(
            (event.as_str(), &args[0]),
            ("count", &json!(format!("new-{n}"))),
            "every event of the new stream, in order"
        );
    }
    assert!(
        metric(&server, "sidecast_history_loss_total").await >= 1.0,
        "the renewed stream is counted"
    );

    let mut back = server.connect(resuming(&cookie, &seen)).await.accepted();
    let report = back.recovery_report().await;
    assert_eq!(report["status"], "unknown", "{report}");
    assert_eq!(report["recovered"], 0, "{report}");
    back.disconnect().await;
    client.disconnect().await;
    server.stop().await;
}
