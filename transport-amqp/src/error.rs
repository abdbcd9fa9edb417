//! Turning lapin errors into [`BrokerError`]s that say what to do.

use std::time::Duration;

use lapin::ErrorKind;
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use sidecast_core::{BrokerError, Explained};

pub(crate) const BACKEND: &str = "amqp";

/// What was being done when an error happened, for the hint in the message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Doing<'a> {
    /// Opening the connection (TCP, TLS, handshake, login, first channel).
    Connecting,
    /// Declaring the fanout exchange of this channel.
    Declaring(&'a str),
    /// Publishing or subscribing on this channel.
    Using(&'a str),
    /// Declaring, appending to or reading this history stream queue.
    History(&'a str),
}

/// RabbitMQ refused to declare a channel's exchange because it exists with other settings (a
/// durable exchange, or one of another type): the source of the [`BrokerError::Rejected`] that
/// publishing or subscribing on that channel fails with.
///
/// The message names the fix in this library's terms ([`AmqpOptions::durable_exchanges`]); an
/// application that configures the transport otherwise can find this error among the sources
/// (`downcast_ref`) and say it in its own terms.
///
/// [`AmqpOptions::durable_exchanges`]: crate::AmqpOptions::durable_exchanges
#[derive(Debug)]
pub struct ExchangeMismatch {
    exchange: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ExchangeMismatch {
    /// The exchange (the channel's name).
    pub fn exchange(&self) -> &str {
        &self.exchange
    }
}

impl std::fmt::Display for ExchangeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the exchange {:?} already exists with other settings than a fanout exchange with \
             the configured durability; if it is durable, set AmqpOptions::durable_exchanges = \
             true, otherwise delete it or use another channel name ({})",
            self.exchange, self.source
        )
    }
}

impl std::error::Error for ExchangeMismatch {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// RabbitMQ refused to declare a channel's history stream queue because it exists with other
/// arguments: another retention (`x-max-age`, `x-max-length-bytes`), another segment size, or a
/// queue of that name that is not a stream. The source of the [`BrokerError::Rejected`] that
/// appending to, reading or subscribing to that history fails with.
///
/// [`HistoryMismatch::setting`] names the option that differs in this library's terms (an
/// [`AmqpOptions`](crate::AmqpOptions) field); an application that configures the transport
/// otherwise can find this error among the sources (`downcast_ref`) and name its own key.
#[derive(Debug)]
pub struct HistoryMismatch {
    queue: String,
    setting: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl HistoryMismatch {
    /// The stream queue (`{history_queue_prefix}{channel}`).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The option whose value differs from the queue's: `"history.max_age"`,
    /// `"history.max_bytes"`, `"history_segment_bytes"`, or `"history_queue_prefix"` when the
    /// queue is not a stream queue (or differs otherwise) and another name is the fix.
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl std::fmt::Display for HistoryMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.setting == "history_queue_prefix" {
            write!(
                f,
                "the history queue {:?} already exists and is not a stream queue declared as \
                 this node declares it; delete it, or set AmqpOptions::history_queue_prefix to \
                 another prefix ({})",
                self.queue, self.source
            )
        } else {
            write!(
                f,
                "the history queue {:?} already exists with another AmqpOptions::{} than this \
                 node's; RabbitMQ fixes a stream's arguments when it is first declared, so every \
                 node must use the same value: set it to the queue's, or delete the queue (its \
                 history is lost) ({})",
                self.queue, self.setting, self.source
            )
        }
    }
}

impl std::error::Error for HistoryMismatch {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// The option behind the argument named in RabbitMQ's refusal (`inequivalent arg 'x-max-age'
/// for queue ...`).
fn history_setting(message: &str) -> &'static str {
    let argument = message
        .split_once("inequivalent arg '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(argument, _)| argument);
    // "current is none": the queue was declared without the argument, so not by a node.
    if message.contains("but current is none") {
        return "history_queue_prefix";
    }
    match argument {
        Some("x-max-age") => "history.max_age",
        Some("x-max-length-bytes") => "history.max_bytes",
        Some("x-stream-max-segment-size-bytes") => "history_segment_bytes",
        _ => "history_queue_prefix",
    }
}

/// The AMQP reply code of a protocol error (`403`, `406`, `320`, ...).
pub(crate) fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// Whether `error` means the connection as a whole is unusable (rather than one channel).
pub(crate) fn is_connection_error(error: &lapin::Error) -> bool {
    error.is_io_error()
        || error.is_amqp_hard_error()
        || matches!(
            error.kind(),
            ErrorKind::InvalidConnectionState(_) | ErrorKind::MissingHeartbeatError
        )
}

/// Maps an error from an operation on `url` (already redacted).
///
/// Connection trouble (I/O, a closed connection or channel, missed heartbeats, a server
/// shutting down: `CONNECTION_FORCED`) is [`BrokerError::Unavailable`]: transient. Refused
/// credentials, permissions and mismatched exchanges are [`BrokerError::Rejected`] with the fix
/// in the message.
pub(crate) fn map(error: lapin::Error, url: &str, doing: Doing<'_>) -> BrokerError {
    let kind = match error.kind() {
        ErrorKind::ProtocolError(e) => Some(e.kind().clone()),
        _ => None,
    };
    let hint = match (&kind, doing) {
        (Some(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)), Doing::History(queue)) => {
            let message = match error.kind() {
                ErrorKind::ProtocolError(e) => e.get_message().to_string(),
                _ => String::new(),
            };
            return BrokerError::rejected(
                BACKEND,
                HistoryMismatch {
                    queue: queue.to_owned(),
                    setting: history_setting(&message),
                    source: error.into(),
                },
            );
        }
        (Some(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)), Doing::History(queue)) => {
            Some(format!(
                "the user of {url} may not use the history queue {queue:?}: grant it configure, \
                 write and read permissions on it (rabbitmqctl set_permissions)"
            ))
        }
        (Some(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)), Doing::Connecting) => {
            Some(format!(
                "RabbitMQ at {url} refused the login: check the user and password in the URL \
                 (amqp://user:password@host:port/vhost)"
            ))
        }
        (Some(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)), _) => Some(format!(
            "the user of {url} may not use this exchange: grant it configure, \
             write and read permissions on the virtual host (rabbitmqctl set_permissions), and \
             note that names starting with `amq.` are reserved by RabbitMQ"
        )),
        (Some(AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)), _) => Some(format!(
            "RabbitMQ at {url} refused access to the virtual host: check that it exists and that \
             the user may use it (the vhost is the URL path, percent-encoded: `/` is `%2f`)"
        )),
        (
            Some(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)),
            Doing::Declaring(exchange) | Doing::Using(exchange),
        ) => {
            // Typed, so that a server layer can find it and name its own configuration key.
            return BrokerError::rejected(
                BACKEND,
                ExchangeMismatch {
                    exchange: exchange.to_owned(),
                    source: error.into(),
                },
            );
        }
        _ => None,
    };
    let hint = hint.or_else(|| match error.kind() {
        // What rustls reports when the handshake fails: an untrusted or mismatched certificate,
        // or a port that does not speak TLS. Retrying cannot help.
        ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::InvalidData => Some(format!(
            "the TLS handshake with {url} failed: the server's certificate must be trusted (the \
             system's store, or a CA file named by the SSL_CERT_FILE environment variable) and \
             valid for the URL's host, and the port must speak TLS (RabbitMQ's TLS port \
             is usually 5671)"
        )),
        _ => None,
    });
    if let Some(message) = hint {
        return BrokerError::rejected(BACKEND, Explained::new(message, error));
    }
    let transient = match &kind {
        Some(AMQPErrorKind::Hard(hard)) => matches!(
            hard,
            AMQPHardError::CONNECTIONFORCED
                | AMQPHardError::RESOURCEERROR
                | AMQPHardError::INTERNALERROR
                | AMQPHardError::CHANNELERROR
        ),
        // A queue locked by another connection, or the server refusing more work for now; a
        // durable queue whose home node is not up (yet): a stream queue while RabbitMQ boots,
        // or after a crash (decision 20).
        Some(AMQPErrorKind::Soft(soft)) => {
            matches!(soft, AMQPSoftError::RESOURCELOCKED)
                || (matches!(soft, AMQPSoftError::NOTFOUND) && home_node_down(&error))
        }
        None => matches!(
            error.kind(),
            ErrorKind::IOError(_)
                | ErrorKind::RuntimeShutdownError(_)
                | ErrorKind::InvalidConnectionState(_)
                | ErrorKind::InvalidChannelState(..)
                | ErrorKind::InvalidChannel(_)
                | ErrorKind::MissingHeartbeatError
                | ErrorKind::ChannelsLimitReached
        ),
    };
    BrokerError::classified(transient, BACKEND, url, error)
}

/// Whether RabbitMQ answered NOT_FOUND because the node that holds a durable queue is down or
/// not ready ("home node '...' of durable queue '...' is down or inaccessible"), rather than
/// because the queue does not exist.
pub(crate) fn home_node_down(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::ProtocolError(e) => e.get_message().as_str().contains("down or inaccessible"),
        _ => false,
    }
}

/// Whether RabbitMQ refused a stream consumer because the node the connection is on holds no
/// replica of the stream (3.10.8: PRECONDITION_FAILED, "queue '...' does not have a replica on
/// the local node"), rather than because of the queue's arguments.
pub(crate) fn no_local_replica(error: &lapin::Error) -> bool {
    match error.kind() {
        ErrorKind::ProtocolError(e) => {
            let message = e.get_message().as_str();
            e.get_id() == 406 && message.contains("replica") && message.contains("local node")
        }
        _ => false,
    }
}

/// The connection is down and the transport is reconnecting.
pub(crate) fn reconnecting(url: &str, attempt: u32) -> BrokerError {
    BrokerError::reconnecting(BACKEND, url, attempt)
}

/// A transient failure described in words.
pub(crate) fn unavailable(url: &str, message: String) -> BrokerError {
    BrokerError::unavailable(BACKEND, url, message)
}

pub(crate) fn timeout(after: Duration) -> BrokerError {
    BrokerError::timeout(BACKEND, after)
}

pub(crate) fn config(reason: impl Into<String>) -> BrokerError {
    BrokerError::Config {
        backend: BACKEND,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_argument_names_the_setting() {
        let refusal = |argument: &str| {
            format!(
                "PRECONDITION_FAILED - inequivalent arg '{argument}' for queue 'q' in vhost '/': \
                 received the value '1' of type 'long' but current is the value '2' of type 'long'"
            )
        };
        assert_eq!(history_setting(&refusal("x-max-age")), "history.max_age");
        assert_eq!(
            history_setting(&refusal("x-max-length-bytes")),
            "history.max_bytes"
        );
        assert_eq!(
            history_setting(&refusal("x-stream-max-segment-size-bytes")),
            "history_segment_bytes"
        );
        assert_eq!(
            history_setting(&refusal("x-queue-type")),
            "history_queue_prefix"
        );
        assert_eq!(history_setting("garbled"), "history_queue_prefix");
        assert_eq!(
            history_setting(
                "PRECONDITION_FAILED - inequivalent arg 'x-max-length-bytes' for queue 'q' in \
                 vhost '/': received the value '1' of type 'long' but current is none"
            ),
            "history_queue_prefix",
            "a queue declared without the argument is not a node's"
        );
    }

    /// A durable queue whose home node is down (a stream queue while RabbitMQ boots, or after a
    /// crash) is an outage: 503 over HTTP, retried by subscriptions; a queue that does not exist
    /// is not.
    #[test]
    fn a_queue_whose_home_node_is_down_is_transient() {
        let not_found = |message: &str| {
            lapin::Error::from(ErrorKind::ProtocolError(lapin::protocol::AMQPError::new(
                AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
                message.into(),
            )))
        };
        let down = not_found(
            "NOT_FOUND - home node 'n@localhost' of durable queue 'sidecast.history.s' in vhost              '/' is down or inaccessible",
        );
        assert!(home_node_down(&down));
        assert!(map(down, "amqp://h", Doing::History("sidecast.history.s")).is_transient());
        let missing = not_found("NOT_FOUND - no queue 'q' in vhost '/'");
        assert!(!home_node_down(&missing));
        assert!(!map(missing, "amqp://h", Doing::History("q")).is_transient());
    }
}
