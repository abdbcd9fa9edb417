//! [`BrokerError`], the error type of every [`Broker`](super::Broker), with the constructors every
//! transport's error mapping uses, and [`Explained`] for a cause that needs words.

use std::fmt;
use std::time::Duration;

/// The error type of every [`Broker`](super::Broker).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The backend cannot be reached right now. Transient.
    #[error(
        "{backend} broker at {url} is unavailable: {source}; check that it is running and reachable at that URL, the request can be retried"
    )]
    Unavailable {
        /// The transport (`"redis"`, `"amqp"`, ...).
        backend: &'static str,
        /// The backend address, with any password redacted.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Fewer replicas than asked acknowledged a write within the time allowed
    /// (`broker.min_replicas`). Transient: the write is on the primary and may still be
    /// delivered, but a failover now could lose it.
    #[error(
        "{backend} broker: only {acknowledged} of the {asked} replicas that broker.min_replicas asks for acknowledged the write within {after:?} (broker.replica_timeout_ms); the primary holds it, so it may still be delivered, but a failover now could lose it. The request can be retried; check the replicas"
    )]
    Unreplicated {
        /// The transport.
        backend: &'static str,
        /// Replicas that acknowledged the write.
        acknowledged: u64,
        /// Replicas asked for.
        asked: u32,
        /// How long the transport waited for them.
        after: Duration,
    },
    /// The backend did not answer in time. Transient.
    #[error(
        "{backend} broker did not answer within {after:?}; it may be overloaded or unreachable, the request can be retried"
    )]
    Timeout {
        /// The transport.
        backend: &'static str,
        /// The time-out that expired.
        after: Duration,
    },
    /// The broker was closed with [`Broker::close`](super::Broker::close).
    #[error("broker is closed; create a new one to publish or subscribe again")]
    Closed,
    /// The transport cannot do what was asked (for example a pattern subscription over AMQP).
    #[error("{backend} broker does not support {what}")]
    Unsupported {
        /// The transport.
        backend: &'static str,
        /// What was asked, with the alternative where there is one.
        what: String,
    },
    /// The broker configuration is invalid.
    #[error("invalid {backend} broker configuration: {reason}")]
    Config {
        /// The transport.
        backend: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The backend refused the operation (permissions, protocol error). Not transient.
    #[error("{backend} broker refused the operation: {source}")]
    Rejected {
        /// The transport.
        backend: &'static str,
        /// The backend's answer.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BrokerError {
    /// Whether retrying later can succeed (outages, time-outs, too few replicas).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::Unreplicated { .. }
        )
    }

    /// [`BrokerError::Unavailable`]: `backend` at `url` (its password already redacted) cannot
    /// be reached, because of `source` (an error, or words: a `String` works too).
    pub fn unavailable(
        backend: &'static str,
        url: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            backend,
            url: url.into(),
            source: source.into(),
        }
    }

    /// [`BrokerError::Rejected`]: `backend` refused, with `source` as its answer.
    pub fn rejected(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Rejected {
            backend,
            source: source.into(),
        }
    }

    /// A backend error the transport has classified: [`BrokerError::unavailable`] when
    /// `transient`, else [`BrokerError::rejected`].
    pub fn classified(
        transient: bool,
        backend: &'static str,
        url: &str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        if transient {
            Self::unavailable(backend, url, source)
        } else {
            Self::rejected(backend, source)
        }
    }

    /// What an operation fails fast with while the transport reconnects: unavailable, at
    /// reconnect attempt `attempt`.
    pub fn reconnecting(backend: &'static str, url: &str, attempt: u32) -> Self {
        Self::unavailable(
            backend,
            url,
            format!("the connection is down, reconnecting (attempt {attempt})"),
        )
    }

    /// [`BrokerError::Timeout`] after `after`.
    pub fn timeout(backend: &'static str, after: Duration) -> Self {
        Self::Timeout { backend, after }
    }

    /// Checks a transport's options that must not be zero (a zero time-out fails every call, a
    /// zero backoff reconnects in a busy loop): [`BrokerError::Config`] "`name` must be greater
    /// than zero" for the first `(name, is_zero)` pair that is zero.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sidecast_core::BrokerError;
    ///
    /// let timeout = Duration::ZERO;
    /// let error = BrokerError::require_nonzero("mybroker", [("publish_timeout", timeout.is_zero())]);
    /// assert!(error.unwrap_err().to_string().contains("publish_timeout must be greater than zero"));
    /// ```
    pub fn require_nonzero<'a>(
        backend: &'static str,
        options: impl IntoIterator<Item = (&'a str, bool)>,
    ) -> Result<(), Self> {
        match options.into_iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(Self::Config {
                backend,
                reason: format!("{name} must be greater than zero"),
            }),
            None => Ok(()),
        }
    }
}

/// Words with the backend's error underneath: the `source` a transport gives a [`BrokerError`]
/// whose cause needs explaining (the fix to make, or what the transport was doing). Displays as
/// `message (backend error)`; [`std::error::Error::source`] is the backend's error.
#[derive(Debug)]
pub struct Explained {
    message: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Explained {
    /// `message` over the backend's `source` error.
    pub fn new(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: source.into(),
        }
    }
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.source)
    }
}

impl std::error::Error for Explained {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_constructors_classify_and_explain() {
        let io = || std::io::Error::other("connection refused");
        let down = BrokerError::classified(true, "redis", "redis://h:1", io());
        assert!(down.is_transient());
        assert!(
            down.to_string()
                .contains("redis broker at redis://h:1 is unavailable: connection refused"),
            "{down}"
        );
        let refused = BrokerError::classified(false, "redis", "redis://h:1", io());
        assert!(
            matches!(
                refused,
                BrokerError::Rejected {
                    backend: "redis",
                    ..
                }
            ),
            "{refused}"
        );
        assert!(!refused.is_transient());

        let reconnecting = BrokerError::reconnecting("amqp", "amqp://h:1", 3);
        assert!(reconnecting.is_transient());
        assert!(
            reconnecting
                .to_string()
                .contains("reconnecting (attempt 3)"),
            "{reconnecting}"
        );
        assert!(BrokerError::timeout("nats", Duration::from_secs(2)).is_transient());

        let explained = Explained::new("check the password in the URL", io());
        assert_eq!(
            explained.to_string(),
            "check the password in the URL (connection refused)"
        );
        let source = std::error::Error::source(&explained).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection refused"));
        let error = BrokerError::rejected("redis", explained);
        assert!(error.to_string().contains("check the password"), "{error}");
    }
}
