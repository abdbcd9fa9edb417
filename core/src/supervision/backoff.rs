//! [`Backoff`]: the capped, jittered delays between reconnect attempts.

use std::time::Duration;

use rand::Rng;

/// Capped exponential backoff with jitter: the delays between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay ceiling of the first attempt, doubled for each further one.
    pub min: Duration,
    /// The largest delay ceiling (taken as `min` if smaller).
    pub max: Duration,
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (1 for the first): `min * 2^(attempt-1)`
    /// capped at `max`, then jittered to between half and all of it ("equal jitter": never
    /// hammering, never synchronised).
    pub fn delay(&self, attempt: u32) -> Duration {
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
}
