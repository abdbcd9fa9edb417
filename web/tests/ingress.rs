//! Ingress channels on one node: messages captured from the real python-socketio and
//! @socket.io/redis-emitter packages, published on the node's broker, reach a real Socket.IO
//! client (rust_socketio); what cannot be relayed is dropped and counted, and the node goes on.
//! The same with the real packages over Redis and RabbitMQ: e2e/test/emitters.test.js and
//! cli/tests/emitters_amqp.rs.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{TestServer, memory_config};
use serde_json::json;
use sidecast_core::config::{IngressConfig, IngressFormat};

macro_rules! fixture {
    ($path:literal) => {
        Bytes::from_static(include_bytes!(concat!(
            "../../core/tests/fixtures/ingress/",
            $path
        )))
    };
}

fn config_with_ingress() -> sidecast_core::Config {
    let mut config = memory_config();
    config.broker.ingress = vec![
        IngressConfig::new(IngressFormat::PythonSocketio),
        IngressConfig::new(IngressFormat::NodeEmitter),
    ];
    config
}

async fn publish(server: &TestServer, channel: &str, payload: Bytes) {
    server
        .state
        .broker()
        .publish(channel, payload)
        .await
        .unwrap();
}

fn received(server: &TestServer, source: &'static str) -> u64 {
    server
        .state
        .metrics()
        .bus_received
        .get_or_create(&sidecast_web::metrics::Source { source })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitters_reach_clients_and_refusals_are_counted() {
    let (server, _cookie, mut client) = TestServer::start_signed_in(config_with_ingress()).await;

    let py = "flask-socketio";
    for (channel, payload) in [
        // SocketIO(message_queue=...).emit('message', 'Hi'): python-socketio 5.18.1 and 5.14.0.
        (py, fixture!("python-socketio/5.18.1-message-hi.json")),
        (py, fixture!("python-socketio/5.14.0-message-hi.json")),
        // To room user:alice: this client is Gonzalo's.
        (py, fixture!("python-socketio/5.18.1-object-to-room.json")),
        // Refused, counted, and the node goes on.
        (py, fixture!("python-socketio/5.13.0-pickle-message-hi.bin")),
        (py, fixture!("python-socketio/5.18.1-binary.json")),
        // A python-socketio server's acknowledgement: not for Sidecast.
        (py, fixture!("python-socketio/5.18.1-callback.json")),
        (py, Bytes::from_static(b"{not json")),
        // Node's emitter, on the channels it uses.
        ("socket.io#/#", fixture!("node-emitter/message-hi.msgpack")),
        (
            "socket.io#/#user:alice#",
            fixture!("node-emitter/object-to-one-room.msgpack"),
        ),
        ("socket.io#/#", fixture!("node-emitter/binary.msgpack")),
        (
            "socket.io#/#",
            fixture!("node-emitter/args-rooms-except.msgpack"),
        ),
        ("socket.io#/#", fixture!("node-emitter/types.msgpack")),
        // A custom key is another emitter: not subscribed.
        ("custom#/#", fixture!("node-emitter/custom-key.msgpack")),
    ] {
        publish(&server, channel, payload).await;
    }
    // Sidecast's own channel still works, and marks the end.
    // The marker over pub/sub, the path of the messages above, so that it arrives after them
    // (the Emitter's events take the history's path, not ordered with pub/sub).
    publish(
        &server,
        "sidecast",
        Bytes::from_static(br#"{"v":1,"event":"marker","data":1}"#),
    )
    .await;

    let events = client.events_until("marker").await;
    assert_eq!(
        events,
        vec![
            ("message".to_owned(), vec![json!("Hi")]),
            ("message".to_owned(), vec![json!("Hi")]),
            ("message".to_owned(), vec![json!("Hi")]),
            (
                "types".to_owned(),
                vec![
                    json!(1.5),
                    json!(-7),
                    json!(true),
                    json!([1, "two"]),
                    json!(null),
                    json!("2024-11-25T15:53:20.123Z"),
                    json!("é")
                ]
            ),
        ]
    );
    let metrics = server.state.metrics();
    assert_eq!(received(&server, "python-socketio"), 7);
    assert_eq!(received(&server, "node-emitter"), 5);
    assert_eq!(metrics.dropped_count("pickle"), 1);
    assert_eq!(metrics.dropped_count("binary"), 2);
    assert_eq!(metrics.dropped_count("not_an_event"), 1);
    assert_eq!(metrics.dropped_count("undecodable"), 1);
    let text = metrics.render();
    assert!(
        text.contains(r#"sidecast_bus_messages_received_total{source="python-socketio"} 7"#),
        "{text}"
    );
    assert!(
        text.contains(r#"sidecast_events_dropped_total{reason="pickle"} 1"#),
        "{text}"
    );
    client.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_bus_takes_unsigned_ingress_only_when_told() {
    let mut config = config_with_ingress();
    config.broker.signing_key = "0123456789abcdef".into();
    let refused = sidecast_web::Sidecast::builder()
        .config(config.clone())
        .build()
        .await
        .expect_err("ingress on a signed bus needs broker.ingress_unsigned_ok");
    assert!(
        refused.to_string().contains("broker.ingress_unsigned_ok"),
        "{refused}"
    );

    config.broker.ingress_unsigned_ok = true;
    let (server, _cookie, mut client) = TestServer::start_signed_in(config).await;
    // Unsigned native messages are still dropped; ingress messages are emitted unverified.
    publish(
        &server,
        "sidecast",
        Bytes::from_static(br#"{"event":"forged","data":1}"#),
    )
    .await;
    publish(
        &server,
        "flask-socketio",
        fixture!("python-socketio/5.18.1-message-hi.json"),
    )
    .await;
    // The forged message and the ingress one travel the same subscription, in order: had the
    // first been emitted, it would arrive first. (An event through the Emitter would take the
    // history's path, which is not ordered with pub/sub.)
    assert_eq!(
        client.next_event().await,
        ("message".to_owned(), vec![json!("Hi")])
    );
    assert_eq!(server.state.metrics().dropped_count("unsigned"), 1);
    client.disconnect().await;
    server.stop().await;
}
