//! async-nats errors as [`BrokerError`]s.

use std::time::Duration;

use async_nats::{ConnectError, ConnectErrorKind};
use sidecast_core::BrokerError;

/// The `backend` of every error of this transport.
pub(crate) const BACKEND: &str = "nats";

/// A failed first connection.
pub(crate) fn connect(error: ConnectError, url: &str, after: Duration) -> BrokerError {
    match error.kind() {
        ConnectErrorKind::ServerParse => BrokerError::Config {
            backend: BACKEND,
            reason: format!(
                "{url} is not a NATS server address ({error}); use nats://host:port or tls://host:port"
            ),
        },
        ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
            BrokerError::rejected(BACKEND, error)
        }
        ConnectErrorKind::TimedOut => timeout(after),
        ConnectErrorKind::Dns
        | ConnectErrorKind::Tls
        | ConnectErrorKind::Io
        | ConnectErrorKind::MaxReconnects => unavailable(url, error),
    }
}

/// The server cannot be reached (transient).
pub(crate) fn unavailable(
    url: &str,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> BrokerError {
    BrokerError::unavailable(BACKEND, url, source)
}

/// The connection is down and the client is reconnecting: fail fast.
pub(crate) fn reconnecting(url: &str, attempt: u32) -> BrokerError {
    BrokerError::reconnecting(BACKEND, url, attempt)
}

/// An operation bounded by `after` did not finish.
pub(crate) fn timeout(after: Duration) -> BrokerError {
    BrokerError::timeout(BACKEND, after)
}
