//! How soon a history subscription resumes after an outage: its reconnect backoff, and the
//! connection's while one runs, is capped at [`RESUME_WITHIN`], so that it resumes within that
//! long of RabbitMQ answering again.

use std::time::Duration;

use sidecast_core::supervision::Backoff;

/// The reconnect backoff cap of a history subscription (and of the connection while one runs):
/// it retries at least this often, so that it resumes within this long of RabbitMQ answering.
pub(crate) const RESUME_WITHIN: Duration = Duration::from_secs(1);

/// `backoff` capped at [`RESUME_WITHIN`].
pub(crate) fn resume_backoff(backoff: Backoff) -> Backoff {
    Backoff {
        min: backoff.min.min(RESUME_WITHIN),
        max: backoff.max.min(RESUME_WITHIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_backoff_is_capped() {
        let backoff = resume_backoff(Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
        });
        assert_eq!(backoff.max, RESUME_WITHIN);
        assert_eq!(backoff.min, Duration::from_millis(100));
    }
}
