//! python-socketio / Flask-SocketIO's message-queue format.
//!
//! python-socketio's `RedisManager` publishes on a Redis channel, its `KombuManager` sends to a
//! fanout exchange of the same name (`durable=False`, body as `text/plain`); Flask-SocketIO's
//! channel is `flask-socketio`. Since python-socketio 5.14 a message is JSON; an event is:
//!
//! ```json
//! {"method": "emit", "event": "message", "data": ["Hi"], "binary": false, "namespace": "/",
//!  "room": null, "skip_sid": null, "callback": null, "host_id": "8a4d0d19f2c24f369c50cbe950499ccd"}
//! ```
//!
//! # `data`: a bare value or a list of arguments
//!
//! python-socketio 5.14.0–5.15.0 wrote `data` as given (`"Hi"`, or a tuple of arguments as a JSON
//! list); 5.15.1 and later always write the list of arguments (`["Hi"]`). No field says which.
//! The rule here is python-socketio's own:
//!
//! * a message **without** the `binary` field (5.14.0 and 5.14.1, the only versions that lack it)
//!   carries a bare value: `data` is the one argument, whatever its type;
//! * otherwise a list is the list of arguments, and anything else one argument — exactly how a
//!   python-socketio ≥ 5.15.1 server reads messages of any version. The one case it cannot tell
//!   apart, a list given as the single argument by a 5.14.2–5.15.0 emitter, arrives as several
//!   arguments, as on such a server.
//!
//! As in python-socketio, `null` (or `[null]`) means an event without arguments.
//!
//! # What is not an event
//!
//! `enter_room`, `leave_room` and `disconnect` name one socket by its sid, and `close_room` a
//! room: [`decode`] returns them as [`Decoded::Control`] room operations, which nodes apply to
//! their own sockets (a Sidecast socket's sid is the client's `socket.id`, the room of its id).
//! `callback` concerns python-socketio servers only: [`Decoded::NotAnEvent`]. `skip_sid` names
//! python-socketio socket ids and is ignored; so is `callback` (acknowledgements cannot travel
//! back to a write-only emitter). Pickled messages (python-socketio ≤ 5.13) and `"binary": true`
//! are refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Decoded, EncodeError, IngressError};
use crate::codec::control::Control;
use crate::envelope::Envelope;

/// The format's name in configuration and metrics.
pub const FORMAT: &str = "python-socketio";

/// Flask-SocketIO's default channel (python-socketio's own managers default to `socketio`).
pub const DEFAULT_CHANNEL: &str = "flask-socketio";

/// The first byte of every pickle of protocol 2 or later (the `PROTO` opcode): what
/// python-socketio ≤ 5.13 published. JSON never starts with it.
const PICKLE_PROTO: u8 = 0x80;

/// A room: python-socketio accepts one name or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Room {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct WireIn {
    method: String,
    event: Option<String>,
    #[serde(default)]
    data: Value,
    /// Absent before 5.14.2; the marker of the bare-value era.
    binary: Option<bool>,
    namespace: Option<String>,
    room: Option<Room>,
    /// The socket of `enter_room`, `leave_room`, `disconnect`.
    sid: Option<String>,
    host_id: Option<String>,
}

/// Decodes a python-socketio message. `channel` is where it came from, for error messages only:
/// the format carries everything in the payload.
pub fn decode(channel: &str, payload: &[u8]) -> Result<Decoded, IngressError> {
    if payload.first() == Some(&PICKLE_PROTO) {
        return Err(IngressError::Pickle);
    }
    let malformed = |reason: String| IngressError::Malformed {
        format: FORMAT,
        reason: format!("{reason} (channel {channel})"),
    };
    // As in the native codec: no field-path tracking on the fast path; only a message that fails
    // is parsed again to name the field at fault.
    let wire: WireIn = match serde_json::from_slice(payload) {
        Ok(wire) => wire,
        Err(plain) => {
            let de = &mut serde_json::Deserializer::from_slice(payload);
            return Err(match serde_path_to_error::deserialize::<_, WireIn>(de) {
                Err(e) if e.path().to_string() != "." => {
                    let path = e.path().to_string();
                    malformed(format!("field \"{path}\": {}", e.into_inner()))
                }
                _ => malformed(plain.to_string()),
            });
        }
    };
    if wire.method != "emit" {
        return room_operation(wire).map_err(malformed);
    }
    if wire.binary == Some(true) {
        return Err(IngressError::Binary { format: FORMAT });
    }
    let event = wire
        .event
        .ok_or_else(|| malformed("an \"emit\" without \"event\"".to_owned()))?;
    let mut envelope = Envelope::with_args(event, arguments(wire.data, wire.binary.is_some()));
    if let Some(namespace) = wire.namespace {
        envelope.namespace = namespace;
    }
    envelope.rooms = match wire.room {
        None => Vec::new(),
        Some(Room::One(room)) => vec![room],
        Some(Room::Many(rooms)) => rooms,
    };
    envelope.origin = wire.host_id;
    envelope.validate()?;
    Ok(Decoded::Event(envelope))
}

/// `enter_room`, `leave_room`, `close_room` and `disconnect` as room operations; other methods
/// are not for Sidecast.
fn room_operation(wire: WireIn) -> Result<Decoded, String> {
    let namespace = wire.namespace.unwrap_or_else(|| "/".to_owned());
    let room = || match wire.room {
        Some(Room::One(room)) => Ok(vec![room]),
        Some(Room::Many(rooms)) => Ok(rooms),
        None => Err(format!("a \"{}\" without \"room\"", wire.method)),
    };
    let sid = || {
        wire.sid
            .clone()
            .map(|sid| vec![sid])
            .ok_or_else(|| format!("a \"{}\" without \"sid\"", wire.method))
    };
    let operation = match wire.method.as_str() {
        "enter_room" => Control::Join {
            rooms: sid()?,
            namespace,
            except: Vec::new(),
            join: room()?,
        },
        "leave_room" => Control::Leave {
            rooms: sid()?,
            namespace,
            except: Vec::new(),
            leave: room()?,
        },
        "close_room" => Control::CloseRoom {
            rooms: room()?,
            namespace,
        },
        "disconnect" => Control::Disconnect {
            rooms: sid()?,
            namespace,
            except: Vec::new(),
            reason: None,
        },
        _ => return Ok(Decoded::NotAnEvent { kind: wire.method }),
    };
    operation.validate().map_err(|e| e.to_string())?;
    Ok(Decoded::Control(operation))
}

/// The Socket.IO arguments of `data` (see the module documentation).
fn arguments(data: Value, list_of_arguments: bool) -> Vec<Value> {
    let one = |value: Value| if value.is_null() { vec![] } else { vec![value] };
    match data {
        Value::Array(args) if list_of_arguments => match <[Value; 1]>::try_from(args) {
            Ok([single]) => one(single),
            Err(args) => args,
        },
        other => one(other),
    }
}

/// A room as python-socketio writes it: one name, or a list (`null` for none).
#[derive(Serialize)]
#[serde(untagged)]
enum RoomOut<'a> {
    One(&'a str),
    Many(&'a [String]),
}

#[derive(Serialize)]
struct WireOut<'a> {
    method: &'static str,
    event: &'a str,
    data: &'a [Value],
    binary: bool,
    namespace: &'a str,
    room: Option<RoomOut<'a>>,
    skip_sid: Option<()>,
    callback: Option<()>,
    host_id: &'a str,
}

/// Encodes an event as python-socketio 5.15.1 and later publish it (`data` is the list of
/// arguments), with `host_id` as the publisher's id (python-socketio uses a UUID in hex; servers
/// skip messages carrying their own). The envelope's `origin`, `id` and `ts` have no place in the
/// format and are left out.
///
/// Servers on python-socketio 5.15.1 or later emit it exactly; older ones pass the list as a
/// single argument. An envelope with `except` rooms cannot be written: the format can only skip
/// socket ids.
pub fn encode(envelope: &Envelope, host_id: &str) -> Result<Vec<u8>, EncodeError> {
    if !envelope.except.is_empty() {
        return Err(EncodeError::ExceptUnsupported { format: FORMAT });
    }
    let room = match envelope.rooms.as_slice() {
        [] => None,
        [one] => Some(RoomOut::One(one)),
        many => Some(RoomOut::Many(many)),
    };
    let wire = WireOut {
        method: "emit",
        event: &envelope.event,
        data: &envelope.data,
        binary: false,
        namespace: &envelope.namespace,
        room,
        skip_sid: None,
        callback: None,
        host_id,
    };
    // Serializing strings and `Value`s into a Vec cannot fail.
    Ok(serde_json::to_vec(&wire).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A message captured from the real package (see core/tests/fixtures/ingress/README.md).
    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(
                "../../tests/fixtures/ingress/python-socketio/",
                $name
            ))
            .as_slice()
        };
    }

    fn event(payload: &[u8]) -> Envelope {
        match decode(DEFAULT_CHANNEL, payload) {
            Ok(Decoded::Event(envelope)) => envelope,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn the_original_external_script() {
        // SocketIO(message_queue='redis://…').emit('message', 'Hi'), Flask-SocketIO 5.7.0,
        // python-socketio 5.18.1; and the same sent by kombu to RabbitMQ.
        for payload in [
            fixture!("5.18.1-message-hi.json"),
            fixture!("5.18.1-kombu-amqp-message-hi.json"),
        ] {
            let e = event(payload);
            assert_eq!(e.event, "message");
            assert_eq!(e.data, vec![json!("Hi")]);
            assert_eq!(e.namespace, "/");
            assert!(e.rooms.is_empty());
            assert!(e.except.is_empty());
            assert_eq!(e.origin.as_deref().map(str::len), Some(32), "host_id");
        }
    }

    #[test]
    fn rooms_namespaces_and_arguments_of_5_18() {
        let e = event(fixture!("5.18.1-object-to-room.json"));
        assert_eq!(e.event, "news");
        assert_eq!(e.data, vec![json!({"title": "Release", "unread": 3})]);
        assert_eq!(e.rooms, vec!["user:alice".to_owned()]);

        // emit('move', (3, 4), namespace='/chat'): a tuple is several arguments.
        let e = event(fixture!("5.18.1-tuple-args-namespace.json"));
        assert_eq!(e.data, vec![json!(3), json!(4)]);
        assert_eq!(e.namespace, "/chat");

        // emit('list', [1, 2]): a list is one argument.
        let e = event(fixture!("5.18.1-list-one-argument.json"));
        assert_eq!(e.data, vec![json!([1, 2])]);

        // emit('ping'): no data, no argument (python-socketio sends none either).
        let e = event(fixture!("5.18.1-no-data.json"));
        assert_eq!(e.event, "ping");
        assert!(e.data.is_empty());

        // room=['a', 'b'], skip_sid='abc123': any of the rooms; skip_sid ignored.
        let e = event(fixture!("5.18.1-room-list-skip-sid.json"));
        assert_eq!(e.rooms, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(e.data, vec![json!({"k": null})]);
        assert!(e.except.is_empty());

        // An emit with a callback (from a server context): the event is emitted, without ack.
        let e = event(fixture!("5.18.1-emit-with-callback.json"));
        assert_eq!(e.event, "ask");
        assert_eq!(e.rooms, vec!["some-sid".to_owned()]);
    }

    #[test]
    fn bare_values_of_5_14_and_5_15_0() {
        // 5.14.0: no `binary` field; `data` is the one argument, whatever its type.
        let e = event(fixture!("5.14.0-message-hi.json"));
        assert_eq!(e.data, vec![json!("Hi")]);
        let e = event(fixture!("5.14.0-list.json"));
        assert_eq!(
            e.data,
            vec![json!([1, 2])],
            "emit('list', [1, 2]) in 5.14.0"
        );
        let e = event(fixture!("5.14.0-tuple-to-room.json"));
        assert_eq!(
            e.data,
            vec![json!([3, 4])],
            "a 5.14.0 server also emits a tuple as one list"
        );
        assert_eq!(e.rooms, vec!["user:alice".to_owned()]);

        // 5.15.0: `binary` present, data bare: read as python-socketio >= 5.15.1 reads it.
        let e = event(fixture!("5.15.0-message-hi.json"));
        assert_eq!(e.data, vec![json!("Hi")]);
        let e = event(fixture!("5.15.0-tuple-to-room.json"));
        assert_eq!(e.data, vec![json!(3), json!(4)]);
        let e = event(fixture!("5.15.0-list.json"));
        assert_eq!(
            e.data,
            vec![json!(1), json!(2)],
            "the documented ambiguity: as a python-socketio >= 5.15.1 server reads it"
        );
    }

    #[test]
    fn room_methods_are_room_operations() {
        let control = |payload: &[u8]| match decode(DEFAULT_CHANNEL, payload).unwrap() {
            Decoded::Control(c) => c,
            other => panic!("not a room operation: {other:?}"),
        };
        // manager.enter_room('sid1', '/', 'r1'): the socket sid1 joins r1.
        assert_eq!(
            control(fixture!("5.18.1-enter-room.json")),
            Control::Join {
                rooms: vec!["sid1".into()],
                namespace: "/".into(),
                except: vec![],
                join: vec!["r1".into()],
            }
        );
        assert_eq!(
            control(fixture!("5.18.1-leave-room.json")),
            Control::Leave {
                rooms: vec!["sid1".into()],
                namespace: "/".into(),
                except: vec![],
                leave: vec!["r1".into()],
            }
        );
        assert_eq!(
            control(fixture!("5.18.1-close-room.json")),
            Control::CloseRoom {
                rooms: vec!["r1".into()],
                namespace: "/".into(),
            }
        );
        assert_eq!(
            control(fixture!("5.18.1-disconnect.json")),
            Control::Disconnect {
                rooms: vec!["sid1".into()],
                namespace: "/".into(),
                except: vec![],
                reason: None,
            }
        );
        assert_eq!(
            decode(DEFAULT_CHANNEL, fixture!("5.18.1-callback.json")).unwrap(),
            Decoded::NotAnEvent {
                kind: "callback".to_owned()
            }
        );
        for bad in [
            r#"{"method":"enter_room","room":"r1"}"#,
            r#"{"method":"enter_room","sid":"s"}"#,
            r#"{"method":"leave_room","sid":"s","room":""}"#,
            r#"{"method":"disconnect"}"#,
            r#"{"method":"close_room","room":"r","namespace":"chat"}"#,
        ] {
            assert!(decode(DEFAULT_CHANNEL, bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn pickle_and_binary_are_refused_with_the_fix() {
        for payload in [
            fixture!("5.13.0-pickle-message-hi.bin"),
            fixture!("5.13.0-pickle-tuple-to-room.bin"),
        ] {
            let err = decode(DEFAULT_CHANNEL, payload).unwrap_err();
            assert!(matches!(err, IngressError::Pickle));
            assert_eq!(err.reason(), "pickle");
            assert!(err.to_string().contains("python-socketio>=5.14"), "{err}");
        }
        for payload in [
            fixture!("5.18.1-binary.json"),
            fixture!("5.15.0-binary.json"),
        ] {
            let err = decode(DEFAULT_CHANNEL, payload).unwrap_err();
            assert_eq!(err.reason(), "binary", "{err}");
        }
    }

    #[test]
    fn malformed_messages_name_the_problem() {
        let err = |p: &[u8]| {
            let e = decode("jobs", p).unwrap_err();
            assert_eq!(e.reason(), "undecodable");
            e.to_string()
        };
        assert!(err(b"nope").contains("channel jobs"));
        assert!(err(br#"{"event":"m"}"#).contains("method"));
        assert!(err(br#"{"method":"emit","data":1}"#).contains("without \"event\""));
        assert!(err(br#"{"method":"emit","event":"m","room":5}"#).contains("room"));
        assert!(err(br#"{"method":"emit","event":"disconnect"}"#).contains("reserved"));
        assert!(err(br#"{"method":"emit","event":"m","namespace":"chat"}"#).contains("namespace"));
        assert!(err(b"").contains("EOF"));
    }

    #[test]
    fn encodes_like_python_socketio_5_15_1() {
        let e = Envelope::new("message", json!("Hi"));
        let bytes = encode(&e, "0123abcd").unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"method":"emit","event":"message","data":["Hi"],"binary":false,"namespace":"/","room":null,"skip_sid":null,"callback":null,"host_id":"0123abcd"}"#
        );
        // The captured message of python-socketio itself, as a value.
        let ours: Value = serde_json::from_slice(&bytes).unwrap();
        let mut theirs: Value = serde_json::from_slice(fixture!("5.18.1-message-hi.json")).unwrap();
        theirs["host_id"] = json!("0123abcd");
        assert_eq!(ours, theirs);

        let e = Envelope::with_args("move", vec![json!(3), json!([4])])
            .to("a")
            .namespace("/chat");
        assert_eq!(event(&encode(&e, "h").unwrap()).rooms, vec!["a".to_owned()]);
        let round = event(&encode(&e.clone().to("b"), "h").unwrap());
        assert_eq!(round.data, e.data);
        assert_eq!(round.namespace, "/chat");
        assert_eq!(round.rooms, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(round.origin.as_deref(), Some("h"));
        let mut skip = e;
        skip.except.push("x".into());
        assert!(encode(&skip, "h").is_err());
    }
}
