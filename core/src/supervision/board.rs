//! [`HealthBoard`]: which parts of a broker are down, folded into one [`BrokerHealth`], and which
//! transitions to log so that each outage is logged once.
//!
//! A transport gives each of its parts (a connection, or a subscription's queue) a [`PartId`],
//! and reports that part's transitions: [`HealthBoard::lost`] when it breaks,
//! [`HealthBoard::attempt`] before each reconnect attempt, [`HealthBoard::restored`] when it is
//! back, [`HealthBoard::forget`] when it is gone for good (or holds the [`Part`] guard of
//! [`HealthBoard::part`], which forgets it when dropped). [`Broker::health`] can then return
//! [`HealthBoard::health`], which takes a lock but does no I/O.
//!
//! ```
//! use sidecast_core::BrokerHealth;
//! use sidecast_core::supervision::{AttemptCount, HealthBoard, Lost};
//!
//! let board = HealthBoard::new(AttemptCount::OldestOutage);
//! if board.lost(0) == Lost::Outage {
//!     tracing::warn!("mybroker connection lost, reconnecting");
//! }
//! board.attempt(0, 2);
//! assert!(matches!(board.health(), BrokerHealth::Reconnecting { attempt: 2, .. }));
//! if board.restored(0).is_some_and(|restored| restored.all_up) {
//!     tracing::info!("mybroker connection restored");
//! }
//! assert_eq!(board.health(), BrokerHealth::Connected);
//! ```
//!
//! [`Broker::health`]: crate::Broker::health

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::{BrokerError, BrokerHealth};

/// Identifies one part of a broker (a connection, a subscription's queue...) on a
/// [`HealthBoard`]. The transport chooses the ids; they only need to be distinct.
pub type PartId = u64;

/// Which attempt count [`HealthBoard::health`] reports while parts are down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptCount {
    /// The attempt count of the oldest outage: for parts that each reconnect by themselves (the
    /// Redis transport: the publisher, and one connection per subscription).
    OldestOutage,
    /// The highest attempt count of any part: for one connection that reconnects while the
    /// other parts (the AMQP transport: every subscription's queue and consumer) only wait for
    /// it, without attempts of their own.
    Highest,
}

/// What [`HealthBoard::lost`] changed, for the transport to log.
#[must_use = "the transport logs the transition"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The first part down: the broker's outage starts. Log it (once per outage, e.g. `warn`
    /// "redis connection lost, reconnecting").
    Outage,
    /// Another part is down (or this one still is) during an outage already reported.
    AlsoDown,
    /// The board is closed: nothing changed.
    Closed,
}

/// A part back up, from [`HealthBoard::restored`], for the transport to log.
#[must_use = "the transport logs the transition"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// How long the part was down.
    pub down_for: Duration,
    /// The part's last reconnect attempt (1 if it never reported one).
    pub attempts: u32,
    /// No part is down any more (and the board is not closed): the broker's outage is over. Log
    /// it (once per outage, e.g. `info` "redis connection restored").
    pub all_up: bool,
}

/// Which parts of a broker are down.
///
/// Every part reports its own transitions here; [`HealthBoard::health`] folds them into one
/// [`BrokerHealth`]: `Closed` once [closed](HealthBoard::close), else `Reconnecting` while any part
/// is down, else `Connected`. So "connected" means every part is back, not just the first one.
///
/// The board does not log: it tells which transitions are the broker's, [`Lost::Outage`] when the
/// first part goes down and [`Restored::all_up`] when the last one comes back, however many parts
/// an outage hits, so that the transport logs each outage once, under its own tracing target.
#[derive(Debug)]
pub struct HealthBoard {
    count: AttemptCount,
    closed: AtomicBool,
    down: Mutex<HashMap<PartId, Outage>>,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    attempt: u32,
    since: SystemTime,
    /// For the "restored after" figure (monotonic, unlike `since`).
    started: Instant,
}

/// Part `id` of a [`HealthBoard`], from [`HealthBoard::part`]: forgets the part when dropped.
#[derive(Debug)]
#[must_use = "dropping the guard forgets the part at once"]
pub struct Part<'a> {
    board: &'a HealthBoard,
    id: PartId,
}

impl Part<'_> {
    /// The part's id on the board.
    pub fn id(&self) -> PartId {
        self.id
    }
}

impl Drop for Part<'_> {
    fn drop(&mut self) {
        self.board.forget(self.id);
    }
}

impl HealthBoard {
    /// A board with every part up, whose health reports attempts as `count` says.
    pub fn new(count: AttemptCount) -> Self {
        Self {
            count,
            closed: AtomicBool::new(false),
            down: Mutex::new(HashMap::new()),
        }
    }

    fn down(&self) -> MutexGuard<'_, HashMap<PartId, Outage>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map stays valid.
        self.down.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the broker closed; returns whether it already was. A closed board reports
    /// [`BrokerHealth::Closed`] and records no more outages.
    pub fn close(&self) -> bool {
        self.closed.swap(true, Ordering::AcqRel)
    }

    /// Whether [`HealthBoard::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// `Err(`[`BrokerError::Closed`]`)` once [`HealthBoard::close`] was called: the first check
    /// of every broker call, which must fail that way after [`Broker::close`].
    ///
    /// [`Broker::close`]: crate::Broker::close
    pub fn check_open(&self) -> Result<(), BrokerError> {
        if self.is_closed() {
            Err(BrokerError::Closed)
        } else {
            Ok(())
        }
    }

    /// Part `id` broke; its outage starts at attempt 1 (an outage already recorded for it is
    /// kept).
    pub fn lost(&self, id: PartId) -> Lost {
        if self.is_closed() {
            return Lost::Closed;
        }
        let mut down = self.down();
        let first = down.is_empty();
        down.entry(id).or_insert(Outage {
            attempt: 1,
            since: SystemTime::now(),
            started: Instant::now(),
        });
        if first { Lost::Outage } else { Lost::AlsoDown }
    }

    /// Part `id` is about to make reconnect attempt `attempt` (1 for the first). Ignored unless
    /// the part is down.
    pub fn attempt(&self, id: PartId, attempt: u32) {
        if let Some(outage) = self.down().get_mut(&id) {
            outage.attempt = attempt;
        }
    }

    /// Part `id` is up again: its outage, or `None` if it was not down.
    pub fn restored(&self, id: PartId) -> Option<Restored> {
        let mut down = self.down();
        let outage = down.remove(&id)?;
        let last = down.is_empty();
        drop(down);
        Some(Restored {
            down_for: outage.started.elapsed(),
            attempts: outage.attempt,
            all_up: last && !self.is_closed(),
        })
    }

    /// Part `id` is gone for good (its subscription was dropped): it no longer counts, and its
    /// outage, if any, ends unreported.
    pub fn forget(&self, id: PartId) {
        self.down().remove(&id);
    }

    /// A guard for part `id` that [forgets](HealthBoard::forget) it when dropped: held by the task
    /// that runs the part, so that the part stops counting however the task ends (a subscription
    /// dropped during an outage must not keep the broker "reconnecting").
    pub fn part(&self, id: PartId) -> Part<'_> {
        Part { board: self, id }
    }

    /// The reconnect attempt [`HealthBoard::health`] reports while parts are down, else 1: for
    /// the error of a call refused during an outage ("reconnecting, attempt 3").
    pub fn reconnect_attempt(&self) -> u32 {
        match self.health() {
            BrokerHealth::Reconnecting { attempt, .. } => attempt,
            _ => 1,
        }
    }

    /// The broker's health: `Closed` once closed, else `Reconnecting` while any part is down
    /// (`since` the oldest outage; the attempt count as [`AttemptCount`] says), else `Connected`.
    pub fn health(&self) -> BrokerHealth {
        if self.is_closed() {
            return BrokerHealth::Closed;
        }
        let down = self.down();
        let Some(oldest) = down.values().min_by_key(|o| o.started) else {
            return BrokerHealth::Connected;
        };
        let attempt = match self.count {
            AttemptCount::OldestOutage => oldest.attempt,
            AttemptCount::Highest => down
                .values()
                .map(|o| o.attempt)
                .max()
                .unwrap_or(oldest.attempt),
        };
        BrokerHealth::Reconnecting {
            attempt,
            since: oldest.since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A board of `count` on which part `first` went down, then part `second`: one outage.
    fn two_parts_down(count: AttemptCount, first: PartId, second: PartId) -> HealthBoard {
        let board = HealthBoard::new(count);
        assert_eq!(board.health(), BrokerHealth::Connected);
        assert_eq!(board.lost(first), Lost::Outage);
        assert_eq!(board.lost(second), Lost::AlsoDown);
        board
    }

    /// The attempt that `health()` reports while reconnecting, `None` in any other state.
    fn reconnecting_attempt(board: &HealthBoard) -> Option<u32> {
        match board.health() {
            BrokerHealth::Reconnecting { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    /// From the Redis transport: the publisher (0) and a subscription's connection (7).
    #[test]
    fn oldest_outage_health_reports_the_longest_outage_until_all_recover() {
        let board = two_parts_down(AttemptCount::OldestOutage, 0, 7);
        board.attempt(0, 3);
        assert_eq!(reconnecting_attempt(&board), Some(3));
        let restored = board.restored(0).expect("was down");
        assert_eq!((restored.attempts, restored.all_up), (3, false));
        assert_eq!(reconnecting_attempt(&board), Some(1));
        board.forget(7);
        assert_eq!(board.health(), BrokerHealth::Connected);
        assert_eq!(board.restored(7), None, "forgotten, not restored");
        assert_eq!(board.lost(0), Lost::Outage);
        board.close();
        assert_eq!(board.health(), BrokerHealth::Closed);
        assert_eq!(board.lost(7), Lost::Closed);
        assert!(!board.restored(0).expect("was down").all_up, "closed");
    }

    /// The oldest outage's attempt count, not the highest.
    #[test]
    fn oldest_outage_health_counts_the_oldest_outages_attempts() {
        let board = two_parts_down(AttemptCount::OldestOutage, 0, 7);
        board.attempt(7, 5);
        assert_eq!(reconnecting_attempt(&board), Some(1));
    }

    /// From the AMQP transport: the connection (0) and subscriptions' queues (7, 9).
    #[test]
    fn highest_attempt_health_is_connected_only_when_every_part_is_back() {
        let board = two_parts_down(AttemptCount::Highest, 7, 0);
        board.attempt(0, 3);
        assert_eq!(reconnecting_attempt(&board), Some(3));
        assert!(!board.restored(0).expect("was down").all_up);
        assert!(
            matches!(board.health(), BrokerHealth::Reconnecting { .. }),
            "a subscription still without its queue"
        );
        let restored = board.restored(7).expect("was down");
        assert_eq!((restored.attempts, restored.all_up), (1, true));
        assert_eq!(board.health(), BrokerHealth::Connected);
        assert_eq!(board.lost(9), Lost::Outage);
        board.forget(9);
        assert_eq!(board.health(), BrokerHealth::Connected);
        assert_eq!(board.lost(0), Lost::Outage);
        board.close();
        assert_eq!(board.health(), BrokerHealth::Closed);
    }

    #[test]
    fn a_part_guard_forgets_its_part_when_dropped() {
        let board = HealthBoard::new(AttemptCount::OldestOutage);
        let part = board.part(4);
        assert_eq!(part.id(), 4);
        assert_eq!(board.lost(4), Lost::Outage);
        assert!(matches!(board.health(), BrokerHealth::Reconnecting { .. }));
        drop(part);
        assert_eq!(board.health(), BrokerHealth::Connected);
        assert_eq!(board.restored(4), None, "forgotten, not restored");
    }
}
