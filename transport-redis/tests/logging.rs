//! What RedisBroker logs during an outage.
//!
//! Alone in its own test binary on purpose: tracing caches per-callsite interest process-wide,
//! and tests running in parallel threads without a subscriber can make a thread-local
//! subscriber miss events.

mod common;

use common::{connect, options};
use sidecast_core::Broker;
use sidecast_testkit::conformance::subscribed;
use sidecast_testkit::log::CapturedLog;
use sidecast_testkit::{RedisServer, await_reconnecting, eventually, unique_channel};

/// An outage that breaks several connections (the publisher and three subscriptions) and takes
/// several reconnect attempts is logged as one "lost" and one "restored", with the password
/// redacted.
#[tokio::test]
async fn an_outage_is_logged_once() {
    // The test runs on a current-thread runtime, so the broker's tasks log through this too.
    let (captured, _guard) = CapturedLog::set_default("info");

    let mut server = RedisServer::start_local_with_args(["--requirepass", "log-secret"]).await;
    let url = server.url_with_credentials(None, "log-secret");
    let broker = connect(options(&url)).await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let channel = unique_channel("logged");
        subs.push(subscribed(&broker, &channel).await);
    }

    server.stop().await;
    await_reconnecting(
        &broker,
        "Reconnecting with a few failed attempts",
        |attempt| attempt >= 3,
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
