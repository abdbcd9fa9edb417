//! The broker-wide view of its connections' health, and the reconnect backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use sidecast_core::BrokerHealth;

/// Identifies one connection of a broker on the [`Board`].
pub(crate) type ConnId = u64;

/// The publish connection's id; subscriptions count up from 1.
pub(crate) const PUBLISHER: ConnId = 0;

/// Which of a broker's connections are down.
///
/// Every connection (the publisher and one per subscription) reports its own transitions here;
/// [`Board::health`] folds them into one [`BrokerHealth`] without I/O. The board also logs the
/// broker-level transitions, each once: "lost" when the first connection goes down, "restored"
/// when the last one comes back, however many connections the outage hit.
#[derive(Debug)]
pub(crate) struct Board {
    /// The URL with the password redacted, for the logs.
    url: String,
    closed: AtomicBool,
    down: Mutex<HashMap<ConnId, Outage>>,
}

#[derive(Debug, Clone, Copy)]
struct Outage {
    attempt: u32,
    since: SystemTime,
    /// For the "restored after" figure in the log (monotonic, unlike `since`).
    started: Instant,
}

impl Board {
    pub(crate) fn new(redacted_url: String) -> Self {
        Self {
            url: redacted_url,
            closed: AtomicBool::new(false),
            down: Mutex::new(HashMap::new()),
        }
    }

    fn down(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Outage>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map stays valid.
        self.down.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the broker closed; returns whether it already was.
    pub(crate) fn close(&self) -> bool {
        self.closed.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Connection `id` broke with `error`; the first reconnect attempt follows.
    pub(crate) fn lost(&self, id: ConnId, error: &dyn std::fmt::Display) {
        if self.is_closed() {
            return;
        }
        let mut down = self.down();
        let first = down.is_empty();
        down.entry(id).or_insert(Outage {
            attempt: 1,
            since: SystemTime::now(),
            started: Instant::now(),
        });
        drop(down);
        if first {
            tracing::warn!(url = %self.url, error = %error, "redis connection lost, reconnecting");
        } else {
            tracing::debug!(url = %self.url, connection = id, error = %error, "redis connection lost");
        }
    }

    /// Connection `id` is about to make reconnect attempt `attempt` (1 for the first).
    pub(crate) fn attempt(&self, id: ConnId, attempt: u32) {
        if let Some(outage) = self.down().get_mut(&id) {
            outage.attempt = attempt;
        }
    }

    /// Connection `id` is up again.
    pub(crate) fn restored(&self, id: ConnId) {
        let mut down = self.down();
        let Some(outage) = down.remove(&id) else {
            return;
        };
        let last = down.is_empty();
        drop(down);
        let down_for = outage.started.elapsed();
        if last && !self.is_closed() {
            tracing::info!(
                url = %self.url,
                down_for_ms = u64::try_from(down_for.as_millis()).unwrap_or(u64::MAX),
                attempts = outage.attempt,
                "redis connection restored"
            );
        } else {
            tracing::debug!(url = %self.url, connection = id, "redis connection restored");
        }
    }

    /// Connection `id` is gone for good (its subscription was dropped): it no longer counts.
    pub(crate) fn forget(&self, id: ConnId) {
        self.down().remove(&id);
    }

    /// The broker's health: `Closed`, else `Reconnecting` while any connection is down (the
    /// longest outage is reported), else `Connected`.
    pub(crate) fn health(&self) -> BrokerHealth {
        if self.is_closed() {
            return BrokerHealth::Closed;
        }
        match self.down().values().min_by_key(|o| o.started) {
            None => BrokerHealth::Connected,
            Some(outage) => BrokerHealth::Reconnecting {
                attempt: outage.attempt,
                since: outage.since,
            },
        }
    }
}

/// Capped exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (1 for the first): `min * 2^(attempt-1)`
    /// capped at `max`, then jittered to between half and all of it ("equal jitter": never
    /// hammering, never synchronised).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let max = self.max.max(self.min);
        let exponent = attempt.saturating_sub(1).min(31);
        let ceiling = self
            .min
            .checked_mul(1u32 << exponent)
            .map_or(max, |d| d.min(max));
        let half = ceiling / 2;
        half + rand::rng().random_range(Duration::ZERO..=ceiling - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let backoff = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let fourth = backoff.delay(4);
            assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(800));
            let late = backoff.delay(1_000);
            assert!(late >= Duration::from_millis(2_500) && late <= Duration::from_secs(5));
        }
    }

    #[test]
    fn health_reports_the_longest_outage_until_all_recover() {
        let board = Board::new("redis://h".to_owned());
        assert_eq!(board.health(), BrokerHealth::Connected);
        board.lost(PUBLISHER, &"boom");
        board.lost(7, &"boom");
        board.attempt(PUBLISHER, 3);
        assert!(matches!(
            board.health(),
            BrokerHealth::Reconnecting { attempt: 3, .. }
        ));
        board.restored(PUBLISHER);
        assert!(matches!(
            board.health(),
            BrokerHealth::Reconnecting { attempt: 1, .. }
        ));
        board.forget(7);
        assert_eq!(board.health(), BrokerHealth::Connected);
        board.lost(PUBLISHER, &"boom");
        board.close();
        assert_eq!(board.health(), BrokerHealth::Closed);
    }
}
