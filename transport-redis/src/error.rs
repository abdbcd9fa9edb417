//! Turning redis-rs errors into [`BrokerError`]s that say what to do.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use sidecast_core::{BrokerError, Explained};

pub(crate) const BACKEND: &str = "redis";

/// Whether the server refused our credentials or permissions: retrying cannot help.
fn is_auth_failure(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm)
    ) || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// Whether the server (or, in a transaction, any command of it) answered that it refuses writes
/// until an operator or a fail-over acts: over `maxmemory`, unable to persist, a replica.
fn refuses_writes_for_now(error: &RedisError) -> bool {
    // And on a Redis Cluster, a slot without a serving primary yet (during a failover) or one
    // that moved while the transaction was queued.
    const CODES: [&str; 7] = [
        "OOM",
        "MISCONF",
        "READONLY",
        "CLUSTERDOWN",
        "TRYAGAIN",
        "MOVED",
        "ASK",
    ];
    // A MULTI/EXEC transaction reports EXECABORT with the commands' own errors inside.
    error.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, server)| CODES.contains(&server.code()))
    })
}

/// Maps an error of an operation on `url` (already redacted).
///
/// Connection trouble (I/O, dropped connections, time-outs, a server still loading) and a server
/// that refuses writes for now (`OOM` over `maxmemory`, `MISCONF` when it cannot persist,
/// `READONLY` on a replica after a fail-over) are [`BrokerError::Unavailable`]: transient, so
/// that `POST /api/` answers 503 with `Retry-After` rather than 500. Refused credentials or permissions are
/// [`BrokerError::Rejected`] with the fix in the message; a bad URL is [`BrokerError::Config`];
/// any other server error is `Rejected`.
pub(crate) fn map(error: RedisError, url: &str) -> BrokerError {
    if is_auth_failure(&error) {
        return BrokerError::rejected(
            BACKEND,
            Explained::new(
                format!(
                    "authentication or permission failure at {url}: check the user and password \
                     in the URL (redis://user:password@host:port) and that the ACL user may \
                     PUBLISH/SUBSCRIBE/PSUBSCRIBE on the channels"
                ),
                error,
            ),
        );
    }
    if error.kind() == ErrorKind::InvalidClientConfig {
        return BrokerError::Config {
            backend: BACKEND,
            reason: format!(
                "{error}; the URL must look like redis://[user:password@]host[:port][/db] or \
                 rediss://... for TLS"
            ),
        };
    }
    let transient = error.is_io_error()
        || error.is_unrecoverable_error()
        || error.is_connection_dropped()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
            )
        )
        // A Redis Cluster moving a slot or promoting a replica: the slot is served again soon.
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ClusterDown | ServerErrorKind::Moved | ServerErrorKind::Ask
                )
        )
        || refuses_writes_for_now(&error);
    BrokerError::classified(transient, BACKEND, url, error)
}

/// A connection that is down, while the transport reconnects.
pub(crate) fn reconnecting(url: &str, attempt: u32) -> BrokerError {
    BrokerError::reconnecting(BACKEND, url, attempt)
}

pub(crate) fn timeout(after: Duration) -> BrokerError {
    BrokerError::timeout(BACKEND, after)
}
