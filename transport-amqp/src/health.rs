//! The broker-wide view of its connection's and subscriptions' health, and the reconnect
//! backoff.
//!
//! The same shape as the Redis transport's: each part (the AMQP connection, and every
//! subscription's queue and consumer) reports its own outages here, and [`Board::health`] folds
//! them into one [`BrokerHealth`] without I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use sidecast_core::BrokerHealth;

/// Identifies one part of a broker on the [`Board`].
pub(crate) type PartId = u64;

/// The AMQP connection's id; subscriptions count up from 1.
pub(crate) const CONNECTION: PartId = 0;

/// Which parts of a broker are down.
///
/// A RabbitMQ restart takes the connection down and, with it, every subscription's queue. The
/// broker is `Connected` again only once the connection is back *and* every subscription
/// consumes from a new queue, so that "connected" really means "receiving". The board logs the
/// broker-level transitions, each once: "lost" when the first part goes down, "restored" when
/// the last one comes back, however many parts the outage hit.
#[derive(Debug)]
pub(crate) struct Board {
    /// The URL with the password redacted, for the logs.
    url: String,
    closed: AtomicBool,
    down: Mutex<HashMap<PartId, Outage>>,
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

    fn down(&self) -> std::sync::MutexGuard<'_, HashMap<PartId, Outage>> {
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

    /// Part `id` broke with `error`.
    pub(crate) fn lost(&self, id: PartId, error: &dyn std::fmt::Display) {
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
            tracing::warn!(url = %self.url, error = %error, "amqp connection lost, reconnecting");
        } else {
            tracing::debug!(url = %self.url, part = id, error = %error, "amqp connection part lost");
        }
    }

    /// Part `id` is about to make reconnect attempt `attempt` (1 for the first).
    pub(crate) fn attempt(&self, id: PartId, attempt: u32) {
        if let Some(outage) = self.down().get_mut(&id) {
            outage.attempt = attempt;
        }
    }

    /// Part `id` is up again.
    pub(crate) fn restored(&self, id: PartId) {
        let mut down = self.down();
        let Some(outage) = down.remove(&id) else {
            return;
        };
        let last = down.is_empty();
        drop(down);
        if last && !self.is_closed() {
            tracing::info!(
                url = %self.url,
                down_for_ms = u64::try_from(outage.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "amqp connection restored"
            );
        } else {
            tracing::debug!(url = %self.url, part = id, "amqp connection part restored");
        }
    }

    /// Part `id` is gone for good (its subscription was dropped): it no longer counts.
    pub(crate) fn forget(&self, id: PartId) {
        self.down().remove(&id);
    }

    /// The broker's health: `Closed`, else `Reconnecting` while any part is down (since the
    /// oldest outage, with the highest attempt count: the connection's, which is the part that
    /// actually retries), else `Connected`.
    pub(crate) fn health(&self) -> BrokerHealth {
        if self.is_closed() {
            return BrokerHealth::Closed;
        }
        let down = self.down();
        let Some(oldest) = down.values().min_by_key(|o| o.started) else {
            return BrokerHealth::Connected;
        };
        BrokerHealth::Reconnecting {
            attempt: down.values().map(|o| o.attempt).max().unwrap_or(1),
            since: oldest.since,
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
    fn health_is_connected_only_when_every_part_is_back() {
        let board = Board::new("amqp://h".to_owned());
        assert_eq!(board.health(), BrokerHealth::Connected);
        board.lost(7, &"consumer cancelled");
        board.lost(CONNECTION, &"connection reset");
        board.attempt(CONNECTION, 3);
        assert!(matches!(
            board.health(),
            BrokerHealth::Reconnecting { attempt: 3, .. }
        ));
        board.restored(CONNECTION);
        assert!(
            matches!(board.health(), BrokerHealth::Reconnecting { .. }),
            "a subscription still without its queue"
        );
        board.restored(7);
        assert_eq!(board.health(), BrokerHealth::Connected);
        board.lost(9, &"boom");
        board.forget(9);
        assert_eq!(board.health(), BrokerHealth::Connected);
        board.lost(CONNECTION, &"boom");
        board.close();
        assert_eq!(board.health(), BrokerHealth::Closed);
    }
}
