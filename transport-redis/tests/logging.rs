//! What RedisBroker logs during an outage.
//!
//! Alone in its own test binary on purpose: tracing caches per-callsite interest process-wide,
//! and tests running in parallel threads without a subscriber can make a thread-local
//! subscriber miss events.

mod common;

use std::time::Duration;

use common::options;
use sidecast_core::testing::conformance::{DEADLINE, await_subscribed};
use sidecast_core::testing::{RedisServer, unique_channel};
use sidecast_core::{Broker, BrokerHealth, ChannelSpec};
use sidecast_transport_redis::RedisBroker;
use tokio::time::{Instant, sleep};

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        sleep(Duration::from_millis(5)).await;
    }
}

async fn connect(url: &str) -> RedisBroker {
    RedisBroker::connect(options(url))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}"))
}

/// A `MakeWriter` that keeps everything logged, for assertions.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

/// An outage that breaks several connections (the publisher and three subscriptions) and takes
/// several reconnect attempts is logged as one "lost" and one "restored", with the password
/// redacted.
#[tokio::test]
async fn an_outage_is_logged_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runs on a current-thread runtime, so the broker's tasks log through this too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut server = RedisServer::start_local_with_args(["--requirepass", "log-secret"]).await;
    let url = server.url_with_credentials(None, "log-secret");
    let broker = connect(&url).await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let channel = unique_channel("logged");
        let mut sub = broker
            .subscribe(&[ChannelSpec::exact(&channel)])
            .await
            .expect("subscribe");
        await_subscribed(&broker, &mut sub, &channel).await;
        subs.push(sub);
    }

    server.stop().await;
    eventually(
        "Reconnecting with a few failed attempts",
        || matches!(broker.health(), BrokerHealth::Reconnecting { attempt, .. } if attempt >= 3),
    )
    .await;
    server.restart().await;
    eventually("Connected again", || broker.health().is_connected()).await;

    let log = captured.text();
    eprintln!("captured log:\n{log}");
    assert_eq!(
        log.matches("redis connection lost, reconnecting").count(),
        1,
        "one warning per outage:\n{log}"
    );
    assert_eq!(
        log.matches("redis connection restored").count(),
        1,
        "one notice per recovery:\n{log}"
    );
    assert!(log.contains("WARN"), "{log}");
    assert!(
        !log.contains("log-secret"),
        "the password leaked into the log:\n{log}"
    );
}
