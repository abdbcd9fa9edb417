//! Control messages between nodes, on the control channel `<broker.channel>:control`.
//!
//! ```json
//! {"v": 1, "control": "disconnect", "rooms": ["user:Gonzalo"], "namespace": "/"}
//! ```

use serde::{Deserialize, Serialize};

use super::DecodeError;

/// The control channel that goes with an event channel.
pub fn channel(event_channel: &str) -> String {
    format!("{event_channel}:control")
}

/// An instruction to every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "control", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Control {
    /// Disconnect the sockets in any of `rooms` (a user's sockets after `/logout`).
    Disconnect {
        /// The rooms whose sockets are disconnected; never empty.
        rooms: Vec<String>,
        /// The namespace.
        #[serde(default = "root")]
        namespace: String,
    },
}

fn root() -> String {
    "/".to_owned()
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u8,
    #[serde(flatten)]
    control: &'a Control,
}

/// Encodes a control message.
pub fn encode(control: &Control) -> Vec<u8> {
    serde_json::to_vec(&Versioned { v: 1, control }).unwrap_or_default()
}

/// Decodes a control message; a disconnect must name at least one room, so that a malformed
/// message can never disconnect everybody.
pub fn decode(payload: &[u8]) -> Result<Control, DecodeError> {
    let control: Control =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?;
    match &control {
        Control::Disconnect { rooms, .. }
            if rooms.is_empty() || rooms.iter().any(String::is_empty) =>
        {
            Err(DecodeError::Json(
                "a disconnect names at least one room, and no empty room".to_owned(),
            ))
        }
        _ => Ok(control),
    }
}

#[cfg(test)]
mod tests {
    use crate::codec::control::{self, Control};

    #[test]
    fn control_messages() {
        let c = Control::Disconnect {
            rooms: vec!["user:a".into()],
            namespace: "/".into(),
        };
        let bytes = control::encode(&c);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"v":1,"control":"disconnect","rooms":["user:a"],"namespace":"/"}"#
        );
        assert_eq!(control::decode(&bytes).unwrap(), c);
        assert!(control::decode(br#"{"control":"disconnect","rooms":[]}"#).is_err());
        assert!(control::decode(br#"{"control":"explode"}"#).is_err());
        assert_eq!(control::channel("sidecast"), "sidecast:control");
    }
}
