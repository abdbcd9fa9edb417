//! [`Envelope`]: one event to emit to Socket.IO clients, whatever format carried it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Event names that Socket.IO reserves for itself; clients never receive them as events.
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// One event for the Socket.IO clients of every node: what to emit and to whom.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The event name the clients listen to (`socket.on(event, ...)`).
    pub event: String,
    /// The Socket.IO arguments of the event; `["Hi"]` for `emit("message", "Hi")`.
    pub data: Vec<Value>,
    /// The namespace, `"/"` by default.
    pub namespace: String,
    /// The rooms to reach; empty means every socket of the namespace.
    pub rooms: Vec<String>,
    /// Rooms whose sockets must not receive the event.
    pub except: Vec<String>,
    /// The node or program that published it, when known.
    pub origin: Option<String>,
    /// A unique id, when the publisher set one.
    pub id: Option<String>,
    /// When it was published, in milliseconds since the Unix epoch, when the publisher set it.
    pub ts: Option<u64>,
}

impl Envelope {
    /// An event with one argument, to every socket of the default namespace.
    pub fn new(event: impl Into<String>, data: Value) -> Self {
        Self::with_args(event, vec![data])
    }

    /// An event with any number of arguments, to every socket of the default namespace.
    pub fn with_args(event: impl Into<String>, data: Vec<Value>) -> Self {
        Self {
            event: event.into(),
            data,
            namespace: "/".to_owned(),
            rooms: Vec::new(),
            except: Vec::new(),
            origin: None,
            id: None,
            ts: None,
        }
    }

    /// Restricts the event to a room (may be called several times: any of the rooms).
    pub fn to(mut self, room: impl Into<String>) -> Self {
        self.rooms.push(room.into());
        self
    }

    /// Sets the namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Stamps the current time into [`Envelope::ts`].
    pub fn stamped(mut self) -> Self {
        self.ts = Some(now_millis());
        self
    }

    /// Checks what every format requires: a non-empty event name that Socket.IO does not
    /// reserve, and a namespace that starts with `/`.
    pub fn validate(&self) -> Result<(), InvalidEnvelope> {
        if self.event.is_empty() {
            return Err(InvalidEnvelope::EmptyEvent);
        }
        if RESERVED_EVENTS.contains(&self.event.as_str()) {
            return Err(InvalidEnvelope::ReservedEvent(self.event.clone()));
        }
        if !self.namespace.starts_with('/') {
            return Err(InvalidEnvelope::Namespace(self.namespace.clone()));
        }
        Ok(())
    }
}

/// Why an [`Envelope`] cannot be emitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEnvelope {
    /// The event name is empty.
    #[error("event name is empty; give the event clients listen to, such as \"message\"")]
    EmptyEvent,
    /// The event name is reserved by Socket.IO.
    #[error("event name `{0}` is reserved by Socket.IO; choose another name")]
    ReservedEvent(String),
    /// The namespace does not start with `/`.
    #[error("namespace `{0}` must start with `/`, such as \"/\" or \"/chat\"")]
    Namespace(String),
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builder_and_validation() {
        let e = Envelope::new("message", json!("Hi"))
            .to("a")
            .namespace("/chat");
        assert_eq!(e.data, vec![json!("Hi")]);
        assert_eq!(e.rooms, vec!["a".to_owned()]);
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(
            Envelope::new("connect", json!(1)).validate(),
            Err(InvalidEnvelope::ReservedEvent("connect".into()))
        );
        assert_eq!(
            Envelope::new("", json!(1)).validate(),
            Err(InvalidEnvelope::EmptyEvent)
        );
        assert!(
            Envelope::new("m", json!(1))
                .namespace("chat")
                .validate()
                .is_err()
        );
    }
}
