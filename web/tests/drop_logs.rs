//! A publisher that keeps sending what a node cannot relay fills the counters, not the log: each
//! kind of dropped bus message (native, control, each ingress format) is warned about once, and
//! every one is counted. Its own test binary: it captures the process-wide log.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{TestServer, memory_config};
use sidecast_core::config::{IngressConfig, IngressFormat};
use sidecast_testkit::log::CapturedLog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_dropped_message_is_logged_once_and_always_counted() {
    let log = CapturedLog::global("sidecast_web=warn");
    let mut config = memory_config();
    config.broker.ingress = vec![IngressConfig::new(IngressFormat::PythonSocketio)];
    let (server, _cookie, mut client) = TestServer::start_signed_in(config).await;
    let broker = server.state.broker().clone();
    for _ in 0..3 {
        for (channel, payload) in [
            ("sidecast", "not json"),
            ("sidecast:control", "{\"control\": \"explode\"}"),
            ("flask-socketio", "{\"method\": \"emit\""),
        ] {
            broker
                .publish(channel, Bytes::from_static(payload.as_bytes()))
                .await
                .unwrap();
        }
    }
    // The relay handles pub/sub messages in order: once this one arrives, every drop above was
    // handled. (A POST /api/ event would take the history's path, not ordered with pub/sub.)
    broker
        .publish(
            "sidecast",
            Bytes::from_static(br#"{"v":1,"event":"done","data":0}"#),
        )
        .await
        .unwrap();
    client.events_until("done").await;

    assert_eq!(server.state.metrics().dropped_count("undecodable"), 9);
    let text = log.text();
    for line in [
        "undecodable message dropped",
        "undecodable control message dropped",
        "ingress message dropped",
    ] {
        assert_eq!(
            text.matches(line).count(),
            1,
            "{line:?} is warned about once:\n{text}"
        );
    }
    assert!(
        text.contains("counted in sidecast_events_dropped_total"),
        "the warning says where the rest are counted:\n{text}"
    );
    client.disconnect().await;
    server.stop().await;
}
