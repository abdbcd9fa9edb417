//! Control messages, on the control channel `<broker.channel>:control`: room operations that
//! every node applies to its own sockets.
//!
//! ```json
//! {"v": 1, "control": "join", "rooms": ["user:alice"], "join": ["game:1"]}
//! {"v": 1, "control": "leave", "rooms": ["user:alice"], "leave": ["game:1"]}
//! {"v": 1, "control": "disconnect", "rooms": ["user:Gonzalo"], "reason": "logged out"}
//! {"v": 1, "control": "close_room", "rooms": ["game:1"]}
//! ```
//!
//! `rooms` (alias `to`) and `except` address sockets as they address an event's receivers (a
//! string or a list; a socket's id is a room too, see [`crate::rooms`]); `namespace` defaults to
//! `"/"`.

use serde::{Deserialize, Deserializer, Serialize};

use super::{DecodeError, OneOrMany};
use crate::rooms::{self, InvalidRoom, MAX_REASON_LEN};

/// The control channel that goes with an event channel.
pub fn channel(event_channel: &str) -> String {
    format!("{event_channel}:control")
}

/// A room operation, applied by every node to its own sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "control", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Control {
    /// Disconnect the sockets in any of `rooms` (a user's sockets after `/logout`).
    Disconnect {
        /// The rooms whose sockets are disconnected; never empty, so that a malformed message
        /// cannot disconnect everybody.
        #[serde(alias = "to", deserialize_with = "one_or_many")]
        rooms: Vec<String>,
        /// The namespace.
        #[serde(default = "root")]
        namespace: String,
        /// Sockets in these rooms stay connected.
        #[serde(
            default,
            deserialize_with = "one_or_many",
            skip_serializing_if = "Vec::is_empty"
        )]
        except: Vec<String>,
        /// A reason the client receives as the event [`rooms::DISCONNECT_REASON_EVENT`] just
        /// before it is disconnected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The sockets in any of `rooms` (everyone in the namespace when empty) join `join`.
    Join {
        /// Whose sockets join; empty means every socket of the namespace.
        #[serde(
            default,
            alias = "to",
            deserialize_with = "one_or_many",
            skip_serializing_if = "Vec::is_empty"
        )]
        rooms: Vec<String>,
        /// The namespace.
        #[serde(default = "root")]
        namespace: String,
        /// Sockets in these rooms do not join.
        #[serde(
            default,
            deserialize_with = "one_or_many",
            skip_serializing_if = "Vec::is_empty"
        )]
        except: Vec<String>,
        /// The rooms to join; never empty.
        #[serde(deserialize_with = "one_or_many")]
        join: Vec<String>,
    },
    /// The sockets in any of `rooms` (everyone in the namespace when empty) leave `leave`.
    Leave {
        /// Whose sockets leave; empty means every socket of the namespace.
        #[serde(
            default,
            alias = "to",
            deserialize_with = "one_or_many",
            skip_serializing_if = "Vec::is_empty"
        )]
        rooms: Vec<String>,
        /// The namespace.
        #[serde(default = "root")]
        namespace: String,
        /// Sockets in these rooms do not leave.
        #[serde(
            default,
            deserialize_with = "one_or_many",
            skip_serializing_if = "Vec::is_empty"
        )]
        except: Vec<String>,
        /// The rooms to leave; never empty.
        #[serde(deserialize_with = "one_or_many")]
        leave: Vec<String>,
    },
    /// Every socket in `rooms` leaves them: the rooms no longer exist.
    CloseRoom {
        /// The rooms to close; never empty.
        #[serde(alias = "to", deserialize_with = "one_or_many")]
        rooms: Vec<String>,
        /// The namespace.
        #[serde(default = "root")]
        namespace: String,
    },
}

impl Control {
    /// The operation's name on the wire: `join`, `leave`, `disconnect` or `close_room`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Disconnect { .. } => "disconnect",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::CloseRoom { .. } => "close_room",
        }
    }

    /// The namespace whose sockets the operation concerns.
    pub fn namespace(&self) -> &str {
        match self {
            Self::Disconnect { namespace, .. }
            | Self::Join { namespace, .. }
            | Self::Leave { namespace, .. }
            | Self::CloseRoom { namespace, .. } => namespace,
        }
    }

    /// Checks the rules every node applies before acting (see [`crate::rooms`]): room lists
    /// within bounds, the lists that must not be empty are not, the namespace starts with `/`.
    /// Every node checks the same message the same way, so none applies what another refuses.
    pub fn validate(&self) -> Result<(), InvalidControl> {
        let rooms_of = |field: &'static str, names: &[String], required: bool| {
            if required && names.is_empty() {
                return Err(InvalidControl::new(field, "name at least one room"));
            }
            rooms::validate_rooms(names).map_err(|e| InvalidControl::room(field, &e))
        };
        if !self.namespace().starts_with('/') {
            return Err(InvalidControl::new(
                "namespace",
                "a namespace starts with `/`, such as \"/\" or \"/chat\"",
            ));
        }
        match self {
            Self::Disconnect {
                rooms,
                except,
                reason,
                ..
            } => {
                rooms_of("rooms", rooms, true)?;
                rooms_of("except", except, false)?;
                if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_LEN) {
                    return Err(InvalidControl::new(
                        "reason",
                        format!("at most {MAX_REASON_LEN} bytes"),
                    ));
                }
            }
            Self::Join {
                rooms,
                except,
                join: operand,
                ..
            }
            | Self::Leave {
                rooms,
                except,
                leave: operand,
                ..
            } => {
                rooms_of("rooms", rooms, false)?;
                rooms_of("except", except, false)?;
                rooms_of(self.name(), operand, true)?;
            }
            Self::CloseRoom { rooms, .. } => rooms_of("rooms", rooms, true)?,
        }
        Ok(())
    }
}

/// Why a control message is refused: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field \"{field}\": {message}")]
pub struct InvalidControl {
    /// The offending field of the control message.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl InvalidControl {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    fn room(field: &'static str, error: &InvalidRoom) -> Self {
        Self::new(field, error.to_string())
    }
}

fn root() -> String {
    "/".to_owned()
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    OneOrMany::deserialize(de).map(Vec::from)
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

/// Whether `payload` (unsigned) is a control message rather than an event: it has a `"control"`
/// field. With recovery on, room operations are appended to the channel's history next to the
/// events as control messages; the readers of the history tell the two apart with this, and
/// never deliver a control entry to sockets as an event.
pub fn is_control(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        control: Option<serde::de::IgnoredAny>,
    }
    matches!(
        serde_json::from_slice::<Probe>(payload),
        Ok(Probe { control: Some(_) })
    )
}

/// Decodes a control message and checks it ([`Control::validate`]); a disconnect must name at
/// least one room, so that a malformed message can never disconnect everybody.
pub fn decode(payload: &[u8]) -> Result<Control, DecodeError> {
    #[derive(Deserialize)]
    struct Version {
        v: Option<u64>,
    }
    if let Ok(Version { v: Some(v) }) = serde_json::from_slice::<Version>(payload)
        && v != super::native::VERSION
    {
        return Err(DecodeError::Version(v));
    }
    let control: Control =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Json(e.to_string()))?;
    control
        .validate()
        .map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(control)
}

#[cfg(test)]
mod tests {
    use crate::codec::control::{self, Control};
    use crate::rooms::MAX_ROOMS;

    #[test]
    fn control_messages() {
        let c = Control::Disconnect {
            rooms: vec!["user:a".into()],
            namespace: "/".into(),
            except: Vec::new(),
            reason: None,
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

    #[test]
    fn control_entries_are_told_from_events() {
        let join = Control::Join {
            rooms: vec!["user:a".into()],
            namespace: "/".into(),
            except: Vec::new(),
            join: vec!["game:1".into()],
        };
        assert!(control::is_control(&control::encode(&join)));
        assert!(!control::is_control(br#"{"v":1,"event":"move","data":1}"#));
        // An event whose data has a "control" key is still an event.
        assert!(!control::is_control(
            br#"{"event":"move","data":{"control":"join"}}"#
        ));
        assert!(!control::is_control(b"not json"));
    }

    #[test]
    fn room_operations_round_trip() {
        let ops = [
            Control::Join {
                rooms: vec!["user:alice".into()],
                namespace: "/".into(),
                except: vec!["user:bot".into()],
                join: vec!["game:1".into(), "game:2".into()],
            },
            Control::Leave {
                rooms: Vec::new(),
                namespace: "/chat".into(),
                except: Vec::new(),
                leave: vec!["game:1".into()],
            },
            Control::Disconnect {
                rooms: vec!["game:1".into()],
                namespace: "/".into(),
                except: Vec::new(),
                reason: Some("game over".into()),
            },
            Control::CloseRoom {
                rooms: vec!["game:1".into()],
                namespace: "/".into(),
            },
        ];
        for op in ops {
            assert_eq!(control::decode(&control::encode(&op)).unwrap(), op);
        }
    }

    #[test]
    fn hand_written_room_operations() {
        let join =
            control::decode(br#"{"control":"join","to":"user:alice","join":"game:1"}"#).unwrap();
        assert_eq!(
            join,
            Control::Join {
                rooms: vec!["user:alice".into()],
                namespace: "/".into(),
                except: Vec::new(),
                join: vec!["game:1".into()],
            }
        );
        let close = control::decode(br#"{"v":1,"control":"close_room","rooms":"game:1"}"#).unwrap();
        assert_eq!(close.name(), "close_room");
    }

    #[test]
    fn malformed_room_operations_are_refused() {
        let too_many = serde_json::json!({
            "control": "join",
            "join": (0..=MAX_ROOMS).map(|i| format!("r{i}")).collect::<Vec<_>>(),
        })
        .to_string();
        for bad in [
            r#"{"control":"join","rooms":["user:a"]}"#,
            r#"{"control":"join","rooms":["user:a"],"join":[]}"#,
            r#"{"control":"join","join":[""]}"#,
            r#"{"control":"leave","rooms":"user:a","leave":"a\u0000b"}"#,
            r#"{"control":"close_room","rooms":[]}"#,
            r#"{"control":"disconnect","to":"user:a","namespace":"chat"}"#,
            r#"{"control":"disconnect","rooms":5}"#,
            r#"{"v":2,"control":"disconnect","rooms":["user:a"]}"#,
            too_many.as_str(),
        ] {
            assert!(control::decode(bad.as_bytes()).is_err(), "{bad}");
        }
        let Err(e) = control::decode(br#"{"control":"join","join":[""]}"#) else {
            panic!("accepted");
        };
        assert!(e.to_string().contains("\"join\""), "{e}");
    }
}
