//! [`Parts`]: a broker's parts in one place: the [`HealthBoard`] their outages add up on, the
//! [`OutageLog`] that tells of each outage once, and the ids of new parts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{HealthBoard, OutageLog, PartId};

/// The parts of one broker (its connections, its subscriptions' queues) and their outages: what
/// a transport with several parts keeps next to its connections, so that each part reports a
/// loss or a recovery in one call, on the board and in the log.
///
/// ```
/// use sidecast_core::BrokerUrl;
/// use sidecast_core::supervision::{AttemptCount, HealthBoard, OutageLog, Parts};
///
/// const CONNECTION: u64 = 0;
/// let parts = Parts::new(
///     HealthBoard::new(AttemptCount::Highest),
///     OutageLog::new(
///         sidecast_core::outage_log_target!(),
///         "mybroker",
///         &BrokerUrl::new("mybroker://host"),
///     ),
///     CONNECTION + 1,
/// );
/// let subscription = parts.next_id();
/// parts.lost(CONNECTION, &"connection reset"); // warn: "mybroker connection lost, reconnecting"
/// parts.lost(subscription, &"connection reset"); // debug: the same outage
/// parts.restored(subscription);
/// parts.restored(CONNECTION); // info: "mybroker connection restored"
/// assert!(parts.board().health().is_connected());
/// ```
pub struct Parts {
    board: HealthBoard,
    log: OutageLog,
    /// The id [`Parts::next_id`] hands out next.
    next: AtomicU64,
}

impl fmt::Debug for Parts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parts")
            .field("board", &self.board)
            .field("url", &self.log.url())
            .finish_non_exhaustive()
    }
}

impl Parts {
    /// Parts reported on `board` and logged to `log`. [`Parts::next_id`] hands out ids from
    /// `first_id` on: the ids below it name the transport's own fixed parts (its main
    /// connection, say).
    pub fn new(board: HealthBoard, log: OutageLog, first_id: PartId) -> Self {
        Self {
            board,
            log,
            next: AtomicU64::new(first_id),
        }
    }

    /// The board the parts report on: the broker's health, whether it is closed.
    pub fn board(&self) -> &HealthBoard {
        &self.board
    }

    /// A new id for a part (a subscription), never handed out before by these parts.
    pub fn next_id(&self) -> PartId {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Part `id` broke with `error`: reports it on the board and logs the outage once (further
    /// parts lost during it at debug level), see [`OutageLog::lost`].
    pub fn lost(&self, id: PartId, error: &dyn fmt::Display) {
        self.log.lost(&self.board, id, error);
    }

    /// Part `id` is up again: reports it on the board and logs the end of the outage once, see
    /// [`OutageLog::restored`].
    pub fn restored(&self, id: PartId) {
        self.log.restored(&self.board, id);
    }
}
