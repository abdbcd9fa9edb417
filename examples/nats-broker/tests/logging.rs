//! What NatsBroker logs during an outage.
//!
//! Alone in its own test binary on purpose: tracing caches per-callsite interest process-wide, and
//! tests running in parallel threads without a subscriber can make a thread-local subscriber miss
//! events.

mod support;

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sidecast_core::testing::conformance::{DEADLINE, MakeBroker, await_subscribed};
use sidecast_core::testing::unique_channel;
use sidecast_core::{Broker, BrokerHealth, ChannelSpec};
use support::{Nats, NatsServer};
use tokio::time::{Instant, sleep};

const POLL: Duration = Duration::from_millis(5);

/// Polls until `condition` holds; panics after [`DEADLINE`] naming `what`.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        sleep(POLL).await;
    }
}

/// Captures formatted log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One outage is logged once (`warn`) and its end once (`info`), however many subscriptions
/// share the connection and however many reconnect attempts it takes.
///
/// A current-thread runtime, so that the thread-local log subscriber sees async-nats' event task.
#[tokio::test]
async fn an_outage_is_logged_once() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "sidecast_example_nats=info",
            ))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );

    let mut server = NatsServer::start_local().await;
    let broker = Nats::on(&server).make().await;
    let mut subs = Vec::new();
    for i in 0..3 {
        let channel = unique_channel(&format!("logged-{i}"));
        let mut sub = broker
            .subscribe(&[ChannelSpec::exact(&channel)])
            .await
            .unwrap();
        await_subscribed(&broker, &mut sub, &channel).await;
        subs.push((channel, sub));
    }

    server.stop().await;
    eventually(
        "Reconnecting with attempt >= 3",
        || matches!(broker.health(), BrokerHealth::Reconnecting { attempt, .. } if attempt >= 3),
    )
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
