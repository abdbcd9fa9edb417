//! Memory stays bounded when a client stops reading. Alone in its test binary, so that no other
//! test's allocations show up in the process's RSS.
#![allow(clippy::unwrap_used)]

mod common;

use common::stall::{flood, rss_bytes, stalled_client};
use common::{TestServer, memory_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_costs_bounded_memory_and_others_keep_receiving() {
    let mut config = memory_config();
    config.server.socket_buffer = 64;
    let (server, cookie, mut reader) = TestServer::start_signed_in(config).await;
    let _stalled = stalled_client(&server, &cookie).await;

    let before = rss_bytes();
    // 320 batches × 32 events × 8 KiB = 80 MiB sent to the stalled socket, which reads none.
    flood(&server, &mut reader, 320, 8 * 1024).await;
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "STALLED grown {} MiB drops {}",
        grown / (1024 * 1024),
        server.state.metrics().slow_client_drops.get()
    );
    assert!(
        grown < 40 * 1024 * 1024,
        "memory grew by {} MiB for a client that reads nothing",
        grown / (1024 * 1024)
    );
    assert!(server.state.metrics().slow_client_drops.get() > 0);
}
