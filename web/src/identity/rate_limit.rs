//! The per-principal rate limit of `POST /api/` (`server.api_rate_limit`, `server.api_rate_burst`).

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use sidecast_core::Principal;
use sidecast_core::config::ServerConfig;

use crate::error::ApiError;

/// Above this many principals, those that stopped publishing are forgotten, so that the map
/// cannot grow forever.
const MAX_REMEMBERED: usize = 10_000;

/// A keyed limiter: one quota per principal id.
pub(crate) struct RateLimiter(governor::DefaultKeyedRateLimiter<String>);

impl RateLimiter {
    /// The limiter `server.api_rate_limit` asks for; `None` when it is 0 (no limit).
    pub(crate) fn from_config(server: &ServerConfig) -> Option<Self> {
        let rate = NonZeroU32::new(server.api_rate_limit)?;
        let burst = NonZeroU32::new(server.api_rate_burst).unwrap_or(rate);
        Some(Self(governor::RateLimiter::dashmap(
            governor::Quota::per_second(rate).allow_burst(burst),
        )))
    }

    /// Counts one publish of `principal`; refuses with the time to wait when over the quota.
    pub(crate) fn check(&self, principal: &Principal) -> Result<(), ApiError> {
        if self.0.len() > MAX_REMEMBERED {
            self.0.retain_recent();
        }
        self.0.check_key(&principal.id).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }
}
