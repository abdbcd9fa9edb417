//! What the Socket.IO connect path knows of the node's start: whether it has started (its
//! subscription is active), and connection state recovery once it has. Set by the node's start
//! (`crate::node::start`), read by every connect; kept here so that the delivery side does not
//! depend on how a node starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::delivery::recovery::Recovery;

/// Whether the node serves sockets yet, and its recovery.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    started: AtomicBool,
    /// Connection state recovery (`None` when off or the broker has no history), once started.
    recovery: OnceLock<Option<Arc<Recovery>>>,
}

impl Readiness {
    /// Whether the node started: its broker answered and its subscription is active.
    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Connection state recovery, when the node started with it.
    pub(crate) fn recovery(&self) -> Option<Arc<Recovery>> {
        self.recovery.get().cloned().flatten()
    }

    /// Marks the node started, with its recovery; recovery is set before the flag, so that a
    /// connect that sees the node started also sees its recovery.
    pub(crate) fn started(&self, recovery: Option<Arc<Recovery>>) {
        let _ = self.recovery.set(recovery);
        self.started.store(true, Ordering::Release);
    }
}
