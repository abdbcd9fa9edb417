//! `sidecast emit` with `broker.min_replicas`: exit 0 once a replica has the event, non-zero with
//! the reason when no replica acknowledges it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{run_failing, run_ok};
use sidecast_testkit::RedisServer;

#[test]
fn emit_fails_when_no_replica_acknowledges() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let master = rt.block_on(RedisServer::start_local());
    let mut replica = rt.block_on(master.start_replica());
    let envs = [
        ("SIDECAST_BROKER__KIND", "redis"),
        ("SIDECAST_BROKER__URL", master.url()),
        ("SIDECAST_BROKER__MIN_REPLICAS", "1"),
        ("SIDECAST_BROKER__REPLICA_TIMEOUT_MS", "300"),
    ];
    run_ok(&["emit", "message", "replicated"], &envs);

    rt.block_on(replica.stop());
    let stderr = run_failing(&["emit", "message", "unreplicated"], &envs);
    assert!(
        stderr.contains("min_replicas") && stderr.contains("replica"),
        "the reason names the setting: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
