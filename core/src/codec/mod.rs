//! Codecs between broker payloads and [`Envelope`](crate::Envelope)s.
//!
//! [`native`] is Sidecast's own format, JSON version 1:
//!
//! ```json
//! {"v": 1, "event": "message", "data": "Hi"}
//! ```
//!
//! Fields: `v` (1; may be left out), `event` (required), `data` (one argument) or `args` (a list of
//! arguments; neither means no argument), `namespace` (default `"/"`), `rooms` (alias `to`; a string
//! or a list; default everyone), `except` (a string or a list), `origin`, `id`, `ts` (milliseconds
//! since the Unix epoch). Unknown fields are ignored so that newer publishers can add fields.
//!
//! [`control`] carries the instructions nodes send each other on `<broker.channel>:control`.

use serde::Deserialize;

use crate::envelope::InvalidEnvelope;

pub mod control;
pub mod native;

/// A string or a list of strings: how the wire formats accept a list of rooms (`rooms`, `to`,
/// `except`), so that a single room needs no list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

impl From<OneOrMany> for Vec<String> {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Why a payload could not be turned into an [`Envelope`](crate::Envelope).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON, or a field has the wrong type.
    #[error("not a valid Sidecast message: {0}")]
    Json(String),
    /// A version this node does not understand.
    #[error("unsupported message version {0}; this node understands \"v\": 1")]
    Version(u64),
    /// No `event` field.
    #[error(
        "missing \"event\": give the event name clients listen to, e.g. {{\"v\":1,\"event\":\"message\",\"data\":\"Hi\"}}"
    )]
    MissingEvent,
    /// Both `data` and `args`.
    #[error("give either \"data\" (one argument) or \"args\" (a list of arguments), not both")]
    DataAndArgs,
    /// The envelope is not emittable.
    #[error(transparent)]
    Invalid(#[from] InvalidEnvelope),
}
