//! What NatsBroker logs during an outage.
//!
//! Alone in its own test binary on purpose: tracing caches per-callsite interest process-wide, and
//! tests running in parallel threads without a subscriber can make a thread-local subscriber miss
//! events.

mod support;

use sidecast_core::Broker;
use sidecast_testkit::conformance::{MakeBroker, await_subscribed, subscribed};
use sidecast_testkit::log::CapturedLog;
use sidecast_testkit::{await_reconnecting, eventually, unique_channel};
use support::{NatsServer, nats_on};

/// One outage is logged once (`warn`) and its end once (`info`), however many subscriptions
/// share the connection and however many reconnect attempts it takes.
///
/// A current-thread runtime, so that the thread-local log subscriber sees async-nats' event task.
#[tokio::test]
async fn an_outage_is_logged_once() {
    let (logs, _guard) = CapturedLog::set_default("sidecast_example_nats=info");

    let mut server = NatsServer::start_local().await;
    let broker = nats_on(&server).make().await;
    let mut subs = Vec::new();
    for i in 0..3 {
        let channel = unique_channel(&format!("logged-{i}"));
        let sub = subscribed(&broker, &channel).await;
        subs.push((channel, sub));
    }

    server.stop().await;
    await_reconnecting(&broker, "Reconnecting with attempt >= 3", |attempt| {
        attempt >= 3
    })
    .await;
    server.restart().await;
    eventually("Connected", || broker.health().is_connected()).await;
    for (channel, sub) in &mut subs {
        await_subscribed(&broker, sub, channel).await;
    }
    // The log line comes from async-nats' event task, which may trail the connection state.
    eventually("the reconnection logged", || {
        logs.count("reconnected to nats") > 0
    })
    .await;

    let text = logs.text();
    assert_eq!(logs.count("lost the connection to nats"), 1, "{text}");
    assert_eq!(logs.count("reconnected to nats"), 1, "{text}");
    assert!(text.contains("WARN"), "{text}");
    assert!(
        !text.contains(&format!(":{}@", server.port())),
        "credentials in the log: {text}"
    );
}
