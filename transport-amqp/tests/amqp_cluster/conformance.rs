//! The broker conformance suite against the shared cluster, the broker given all three URLs
//! (so each connects to the first node, in order).

use crate::common::{amqp, options};
use crate::shared_cluster;
use sidecast_testkit::conformance::{Capabilities, HistoryBounds};

sidecast_testkit::conformance_tests!(
    amqp(options(&shared_cluster().await.url_list())),
    Capabilities::WITHOUT_PATTERNS
        .with_history(true)
        .with_history_bounds(HistoryBounds::BYTES)
);
