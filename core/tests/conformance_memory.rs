//! MemoryBroker against the broker conformance suite, one test per check.
//!
//! The memory broker's backend is the broker value itself, so the factory hands out clones of one
//! `MemoryBroker` per test: "two nodes" are two handles on the same in-process bus.

use std::future::{Ready, ready};

use sidecast_core::memory::DEFAULT_CAPACITY;
use sidecast_core::{HistoryRetention, MemoryBroker};
use sidecast_testkit::conformance::{Capabilities, HistoryBounds};

/// A factory of handles on one fresh in-memory backend, whose history keeps few entries and
/// bytes (the retention checks append more than that).
fn backend() -> impl Fn() -> Ready<MemoryBroker> {
    let retention = HistoryRetention {
        max_entries: 100,
        max_bytes: 64 << 10,
        ..HistoryRetention::default()
    };
    let broker = MemoryBroker::with_retention(DEFAULT_CAPACITY, retention);
    move || ready(broker.clone())
}

// The memory broker applies both size bounds exactly: both retention checks run.
sidecast_testkit::conformance_tests!(
    backend(),
    Capabilities::ALL.with_history_bounds(HistoryBounds::BOTH)
);
