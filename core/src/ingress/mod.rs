//! Ingress codecs: the message-queue formats of existing Socket.IO emitters, turned into
//! [`Envelope`]s, so that the cron jobs, Celery workers and services that emit through Redis or
//! RabbitMQ today reach Sidecast's clients without a line changed.
//!
//! * [`python_socketio`]: python-socketio / Flask-SocketIO (python-socketio 5.14 or later, JSON) on
//!   the Redis channel or kombu fanout exchange `flask-socketio`; also its encoder, so that new
//!   programs can drive Flask-SocketIO servers during a migration.
//! * [`node_emitter`]: Node's `@socket.io/redis-emitter` (and socket.io servers' Redis adapter),
//!   msgpack on the Redis channels `socket.io#<namespace>#` and `socket.io#<namespace>#<room>#`.
//!
//! Both decoders are pure functions of `(channel, payload)`: no I/O, no state, never a panic on
//! bad input. What they refuse comes back as an [`IngressError`] whose text says what to change,
//! and whose [`IngressError::reason`] is the metrics label. Wire formats in full:
//! `docs/protocol.md`; the captured messages the tests decode: `core/tests/fixtures/ingress/`.
//!
//! [`Envelope`]: crate::Envelope

pub mod node_emitter;
pub mod python_socketio;

use crate::codec::control::Control;
use crate::envelope::{Envelope, InvalidEnvelope};

/// What one ingress message asks of Sidecast.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decoded {
    /// An event to emit to the clients.
    Event(Envelope),
    /// A room operation (python-socketio's `enter_room`, `leave_room`, `close_room`, `disconnect`;
    /// the Node emitter's `socketsJoin`, `socketsLeave`, `disconnectSockets`), which the node
    /// applies to its own sockets.
    Control(Control),
    /// A message of the format that is not an event for clients, such as python-socketio's
    /// `enter_room` or `disconnect` between its own servers: nothing to emit.
    NotAnEvent {
        /// What the message was (python-socketio's `method`).
        kind: String,
    },
}

/// Why an ingress message was refused. Nothing is emitted for it; the relay logs the text and
/// counts [`IngressError::reason`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngressError {
    /// A pickled message: python-socketio 5.13 and older pickle what they publish. Sidecast never
    /// unpickles (unpickling runs code chosen by whoever can publish).
    #[error(
        "pickled message refused (python-socketio 5.13 or older publishes pickle, which Sidecast \
         never unpickles); upgrade the emitting program to python-socketio 5.14 or later \
         (pip install -U \"python-socketio>=5.14\" flask-socketio), which publishes JSON"
    )]
    Pickle,
    /// The event carries binary data (bytes, Buffers): Sidecast relays JSON arguments only.
    #[error(
        "binary attachments are not supported ({format} message with binary data); send the \
         bytes as base64 text or as a URL to fetch"
    )]
    Binary {
        /// The format of the message.
        format: &'static str,
    },
    /// A Socket.IO packet other than an event (`@socket.io/redis-emitter` publishes events only).
    #[error(
        "unsupported Socket.IO packet type {packet_type} on {format}; only events (type 2) are relayed"
    )]
    PacketType {
        /// The format of the message.
        format: &'static str,
        /// The packet's `type`.
        packet_type: i64,
    },
    /// A request Sidecast does not serve: the Node emitter's `serverSideEmit`, a socket.io
    /// server's `fetchSockets`, or a `disconnectSockets()` that names no room.
    #[error("unsupported {format} request `{kind}`: {why}")]
    UnsupportedRequest {
        /// The format of the message.
        format: &'static str,
        /// The request, such as `server_side_emit`.
        kind: &'static str,
        /// Why, and what to do instead.
        why: &'static str,
    },
    /// Not a message of the format: bad JSON or msgpack, a field of the wrong type.
    #[error("not a valid {format} message: {reason}")]
    Malformed {
        /// The format that was expected.
        format: &'static str,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// A well-formed message whose event cannot be emitted (reserved or empty name, bad namespace).
    #[error(transparent)]
    Invalid(#[from] InvalidEnvelope),
}

impl IngressError {
    /// The `reason` label of `sidecast_events_dropped_total` for this refusal: `pickle`, `binary`,
    /// `unsupported_packet`, `unsupported_request` or `undecodable`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Pickle => "pickle",
            Self::Binary { .. } => "binary",
            Self::PacketType { .. } => "unsupported_packet",
            Self::UnsupportedRequest { .. } => "unsupported_request",
            Self::Malformed { .. } | Self::Invalid(_) => "undecodable",
        }
    }
}

/// Why an envelope cannot be written in another emitter's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The format has no way to leave rooms out.
    #[error(
        "{format}'s format cannot leave rooms out (`except`); target rooms instead, or publish in \
         Sidecast's own format"
    )]
    ExceptUnsupported {
        /// The format.
        format: &'static str,
    },
}
