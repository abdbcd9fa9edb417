//! [`NatsOptions`]: how [`crate::NatsBroker`] connects, and the checks of those options.

use std::time::Duration;

use sidecast_core::{BrokerError, BrokerUrl};

use crate::error::BACKEND;

/// How a [`crate::NatsBroker`] connects and behaves. Build it with [`NatsOptions::new`] and
/// override fields with struct update syntax:
///
/// ```
/// use std::time::Duration;
/// use sidecast_example_nats::NatsOptions;
///
/// let options = NatsOptions {
///     publish_timeout: Duration::from_millis(500),
///     ..NatsOptions::new("nats://127.0.0.1:4222")
/// };
/// assert_eq!(options.subscription_capacity, 4096);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// The server, `nats://[user:password@]host[:port]` (port 4222 when omitted) or `tls://...`
    /// for TLS. Passwords never reach logs or errors: the URL shows redacted, in `Debug` too.
    pub url: BrokerUrl,
    /// Bound on connecting, the TLS and NATS handshake included (each attempt, the first one and
    /// every reconnect). Default 3 s.
    pub connect_timeout: Duration,
    /// Bound on [`sidecast_core::Broker::publish`] (handing the message to the connection and
    /// flushing it to the socket) and on the flush that ends [`sidecast_core::Broker::subscribe`].
    /// Default 2 s.
    pub publish_timeout: Duration,
    /// Messages a subscription buffers for a consumer that lags; more are dropped and counted
    /// ([`sidecast_core::Subscription::dropped`]). Default 4096.
    pub subscription_capacity: usize,
    /// Delay before the second reconnect attempt of an outage (the first is immediate); it
    /// doubles with each attempt, with jitter, up to [`NatsOptions::backoff_max`]. Default 100 ms.
    pub backoff_min: Duration,
    /// Longest delay between two reconnect attempts. Default 5 s.
    pub backoff_max: Duration,
    /// How often the client pings an idle server. Two unanswered pings mark the connection dead,
    /// so a server that vanished without closing the TCP connection is noticed within about twice
    /// this. Default 10 s.
    pub ping_interval: Duration,
    /// The client name the server shows in its monitoring (`/connz`). Default `sidecast`.
    pub name: String,
}

impl NatsOptions {
    /// Default options for the server at `url`.
    pub fn new(url: impl Into<BrokerUrl>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: Duration::from_secs(3),
            publish_timeout: Duration::from_secs(2),
            subscription_capacity: 4096,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            name: "sidecast".to_owned(),
        }
    }
}

impl NatsOptions {
    /// Refuses options that would make the transport misbehave rather than fail: zero time-outs
    /// fail every call, a zero backoff reconnects in a busy loop, a zero ping interval panics
    /// tokio's interval.
    pub(crate) fn validate(&self) -> Result<(), BrokerError> {
        BrokerError::require_nonzero(
            BACKEND,
            [
                ("connect_timeout", self.connect_timeout.is_zero()),
                ("publish_timeout", self.publish_timeout.is_zero()),
                ("backoff_min", self.backoff_min.is_zero()),
                ("ping_interval", self.ping_interval.is_zero()),
                ("subscription_capacity", self.subscription_capacity == 0),
            ],
        )?;
        if self.backoff_max < self.backoff_min {
            return Err(BrokerError::Config {
                backend: BACKEND,
                reason: "backoff_max must not be smaller than backoff_min".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_password() {
        let options = NatsOptions::new("nats://node:hunter2@127.0.0.1:4222");
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("nats://node:***@127.0.0.1:4222"), "{shown}");
        assert_eq!(options.url, "nats://node:hunter2@127.0.0.1:4222");
    }
}
