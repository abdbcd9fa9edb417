//! The messages of the presence channel (`<broker.channel>:presence`): JSON, one object per
//! message, `{"v": 1, "kind": ..., ...}`, signed like every bus message when `broker.signing_key`
//! is set. docs/protocol.md describes them for backends that follow joins and leaves.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Signer;
use crate::envelope::now_millis;

/// The version of the presence messages.
pub const VERSION: u32 = 1;

/// One socket as its node announces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The socket's namespace.
    pub nsp: String,
    /// The socket's id.
    pub sid: String,
    /// The user its auth policy named.
    #[serde(default)]
    pub user: Option<String>,
    /// The `info` its auth policy attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
    /// The tracked rooms it is in.
    #[serde(default)]
    pub rooms: BTreeSet<String>,
    /// When it connected, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub connected_at_ms: u64,
    /// `"websocket"` or `"polling"`.
    #[serde(default)]
    pub transport: String,
    /// Its handshake as the Socket.IO Admin UI shows it (full directory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<Value>,
}

/// One change to a node's sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Change {
    /// A socket connected, in the tracked rooms its entry lists.
    Connect {
        /// The socket.
        socket: Entry,
    },
    /// A socket disconnected (and so left its rooms).
    Disconnect {
        /// Its namespace.
        nsp: String,
        /// Its id.
        sid: String,
        /// Its user.
        #[serde(default)]
        user: Option<String>,
        /// The Socket.IO disconnect reason.
        reason: String,
    },
    /// A socket joined a tracked room.
    Join {
        /// Its namespace.
        nsp: String,
        /// Its id.
        sid: String,
        /// Its user.
        #[serde(default)]
        user: Option<String>,
        /// The room.
        room: String,
    },
    /// A socket left a tracked room.
    Leave {
        /// Its namespace.
        nsp: String,
        /// Its id.
        sid: String,
        /// Its user.
        #[serde(default)]
        user: Option<String>,
        /// The room.
        room: String,
    },
    /// A socket's transport changed (polling upgraded to websocket).
    Transport {
        /// Its namespace.
        nsp: String,
        /// Its id.
        sid: String,
        /// The new transport.
        transport: String,
    },
}

/// A message of the presence channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// Node `node` is alive; `seq` is the sequence number of its last change.
    Heartbeat {
        /// The node's id.
        node: String,
        /// Its last change's sequence number.
        seq: u64,
        /// How many sockets it owns.
        #[serde(default)]
        sockets: usize,
    },
    /// Changes to node `node`'s sockets; `seq` is one more than its previous message's.
    Delta {
        /// The node's id.
        node: String,
        /// This message's sequence number.
        seq: u64,
        /// The changes, in order.
        changes: Vec<Change>,
    },
    /// `node` asks for the state of node `to` (every node when absent).
    SnapshotRequest {
        /// Who asks (a node, or a reader such as `sidecast presence`).
        node: String,
        /// The node asked; every node when `None`.
        #[serde(default)]
        to: Option<String>,
    },
    /// Node `node`'s whole state, as of its change `seq`.
    Snapshot {
        /// The node's id.
        node: String,
        /// The sequence number of its last change.
        seq: u64,
        /// Its sockets.
        sockets: Vec<Entry>,
    },
    /// Node `node` stops: its sockets are gone.
    Stop {
        /// The node's id.
        node: String,
    },
}

/// What travels: the version and the message.
#[derive(Serialize, Deserialize)]
struct Frame<M> {
    v: u32,
    #[serde(flatten)]
    message: M,
}

/// The bytes of `message`, sealed when the bus is signed.
pub fn encode(message: &Message, signer: Option<&Signer>) -> Bytes {
    let json = serde_json::to_vec(&Frame {
        v: VERSION,
        message,
    })
    // A Message holds strings and JSON values only: it always serializes.
    .unwrap_or_default();
    match signer {
        Some(signer) => Bytes::from(signer.seal(&json, now_millis())),
        None => Bytes::from(json),
    }
}

/// The message in `payload`, verified when the bus is signed; `None` when it is unreadable,
/// badly signed or of another version.
pub fn decode(payload: &[u8], signer: Option<&Signer>) -> Option<Message> {
    let frame: Frame<Message> = match signer {
        None => serde_json::from_slice(payload).ok()?,
        Some(signer) => serde_json::from_slice(&signer.open(payload, now_millis()).ok()?).ok()?,
    };
    (frame.v == VERSION).then_some(frame.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_their_version() {
        let message = Message::Delta {
            node: "n1".into(),
            seq: 7,
            changes: vec![Change::Join {
                nsp: "/".into(),
                sid: "s1".into(),
                user: Some("ada".into()),
                room: "chat:1".into(),
            }],
        };
        let bytes = encode(&message, None);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.contains(r#""v":1"#) && text.contains(r#""kind":"delta""#),
            "{text}"
        );
        assert!(text.contains(r#""op":"join""#), "{text}");
        assert_eq!(decode(&bytes, None), Some(message));
        assert_eq!(decode(br#"{"v":2,"kind":"stop","node":"n"}"#, None), None);
        assert_eq!(decode(b"nonsense", None), None);
    }

    #[test]
    fn signed_messages_need_the_key() {
        let signer = Signer::new("k", std::time::Duration::from_secs(60));
        let message = Message::Stop { node: "n".into() };
        let bytes = encode(&message, Some(&signer));
        assert_eq!(decode(&bytes, Some(&signer)), Some(message));
        assert_eq!(decode(&bytes, None), None);
        let other = Signer::new("other", std::time::Duration::from_secs(60));
        assert_eq!(decode(&bytes, Some(&other)), None);
    }
}
