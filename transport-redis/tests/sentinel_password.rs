//! The password of a Sentinel address, in a test binary of its own: it captures the process-wide
//! log, which the failovers of other tests running beside it made unreliable to count in.

#![allow(clippy::unwrap_used)]

mod common;

use common::failover::publish_until_received;
use sidecast_core::{Broker, ChannelSpec};
use sidecast_testkit::{RedisSentinelSet, unique_channel};

/// The password of a Sentinel address goes to the master (the data nodes require it; the
/// sentinels do not) and never into the log, even across a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_goes_to_the_master_and_never_to_the_log() {
    const PASSWORD: &str = "sentinel-hunter2";
    // The process-wide log (the other tests of this file log into it too; none has a password,
    // and the failover line names this set's own addresses).
    let captured = sidecast_testkit::log::CapturedLog::global("debug");
    let mut set = RedisSentinelSet::start_with_password(PASSWORD).await;
    assert!(set.url().contains(PASSWORD));
    let broker = common::connect(common::options(&set.url())).await;
    assert!(!broker.url().contains(PASSWORD), "{}", broker.url());
    assert!(!format!("{broker:?}").contains(PASSWORD));
    let channel = unique_channel("sentinel-password");
    let mut subscription = broker
        .subscribe(&[ChannelSpec::exact(&channel)])
        .await
        .unwrap();
    publish_until_received(&broker, &mut subscription, &channel, "before").await;

    let old = set.kill_master().await;
    let new = set.wait_for_promotion(&old).await;
    publish_until_received(&broker, &mut subscription, &channel, "after").await;
    assert_eq!(broker.failovers(), 1);
    broker.close().await;

    let log = captured.text();
    assert_eq!(
        captured.count(&format!(
            "redis master changed from {old} to {new} (failover)"
        )),
        1,
        "{log}"
    );
    assert!(log.contains(":***@"), "the URL is logged, redacted: {log}");
    assert!(!log.contains(PASSWORD), "{log}");
}
