//! Node's `@socket.io/redis-emitter` format (also what socket.io servers' Redis adapter
//! publishes for their broadcasts).
//!
//! The emitter `PUBLISH`es a msgpack array `[uid, packet, opts]` on `<key>#<namespace>#`, or on
//! `<key>#<namespace>#<room>#` when it targets exactly one room (`key` is the emitter's `key`
//! option, `socket.io` by default):
//!
//! ```text
//! ["emitter", {"type": 2, "data": ["news", {"unread": 3}], "nsp": "/"},
//!  {"rooms": ["user:alice"], "except": [], "flags": {}}]
//! ```
//!
//! Servers subscribe with a pattern, `<key>#*` for every namespace ([`pattern`]). `packet.data` is
//! the event name and its arguments; `opts.rooms` (empty: everyone) and `opts.except` target
//! sockets; `flags` (`volatile`, `compress`) do not change who receives the event and are ignored.
//! msgpack values become JSON as socket.io's JSON encoder would write them: a `Date` (msgpack
//! timestamp) becomes its ISO 8601 text, `undefined` and non-finite numbers `null`. Binary data
//! (a `Buffer`) and packets other than events are refused.
//!
//! # Requests
//!
//! `socketsJoin`, `socketsLeave` and `disconnectSockets` (and `serverSideEmit`) are JSON requests
//! on `<key>-request#<namespace>#` ([`request_pattern`]), decoded by [`decode_request`]:
//!
//! ```text
//! {"type": 2, "opts": {"rooms": ["user:alice"], "except": []}, "rooms": ["game:1"]}
//! ```
//!
//! `type` 2 joins `rooms`, 3 leaves them, 4 disconnects (`close` is ignored: a Sidecast socket
//! has one namespace per connection); `opts` addresses sockets as an event's options do.
//! `serverSideEmit` (6) and the requests servers send each other (0, 1, 5: `fetchSockets`,
//! `allRooms`) are refused as unsupported; so is a `disconnectSockets()` that names no room.

use rmpv::Value as Msgpack;
use serde_json::{Map, Number, Value};

use super::{Decoded, IngressError};
use crate::codec::control::Control;
use crate::envelope::Envelope;

/// The format's name in configuration and metrics.
pub const FORMAT: &str = "node-emitter";

/// The emitter's default `key`: the prefix of its channels.
pub const DEFAULT_KEY: &str = "socket.io";

/// The Socket.IO packet type of an event.
const EVENT: i64 = 2;
/// The Socket.IO packet type of an event with binary attachments.
const BINARY_EVENT: i64 = 5;

/// How deeply msgpack values may nest (as deep as serde_json allows JSON to).
const MAX_DEPTH: usize = 128;

/// The Redis pattern matching every channel of the emitter with `key` (the `key` option of
/// `@socket.io/redis-emitter`, `socket.io` by default): `socket.io#*`. Glob characters in the key
/// are escaped.
pub fn pattern(key: &str) -> String {
    let mut pattern = String::with_capacity(key.len() + 2);
    for c in key.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("#*");
    pattern
}

/// The Redis pattern matching every request channel of the emitter with `key`:
/// `socket.io-request#*`. Glob characters in the key are escaped.
pub fn request_pattern(key: &str) -> String {
    pattern(&format!("{key}-request"))
}

/// A request of `@socket.io/redis-emitter` (or a socket.io server's Redis adapter).
#[derive(serde::Deserialize)]
struct RequestIn {
    #[serde(rename = "type")]
    request_type: i64,
    #[serde(default)]
    opts: RequestOpts,
    #[serde(default)]
    rooms: Vec<String>,
}

#[derive(Default, serde::Deserialize)]
struct RequestOpts {
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
}

/// The request types (socket.io-adapter's `RequestType`).
const REMOTE_JOIN: i64 = 2;
const REMOTE_LEAVE: i64 = 3;
const REMOTE_DISCONNECT: i64 = 4;

/// Decodes a request published on `channel` (`<key>-request#<namespace>#`) into a room operation.
pub fn decode_request(channel: &str, payload: &[u8]) -> Result<Decoded, IngressError> {
    let request: RequestIn =
        serde_json::from_slice(payload).map_err(|e| malformed(format!("request: {e}")))?;
    let namespace = channel_namespace(channel).unwrap_or("/").to_owned();
    let RequestOpts { rooms, except } = request.opts;
    let unsupported = |kind, why| IngressError::UnsupportedRequest {
        format: FORMAT,
        kind,
        why,
    };
    let operation = match request.request_type {
        REMOTE_JOIN => Control::Join {
            rooms,
            namespace,
            except,
            join: request.rooms,
        },
        REMOTE_LEAVE => Control::Leave {
            rooms,
            namespace,
            except,
            leave: request.rooms,
        },
        REMOTE_DISCONNECT if rooms.is_empty() => {
            return Err(unsupported(
                "disconnect_everyone",
                "Sidecast disconnects the sockets of named rooms only; add .in(room)",
            ));
        }
        REMOTE_DISCONNECT => Control::Disconnect {
            rooms,
            namespace,
            except,
            reason: None,
        },
        6 => {
            return Err(unsupported(
                "server_side_emit",
                "Sidecast nodes run no server-side handlers; emit to clients instead",
            ));
        }
        0 | 1 | 5 => {
            return Err(unsupported(
                "fetch_sockets",
                "a write-only emitter gets no answers from Sidecast nodes",
            ));
        }
        other => {
            return Err(malformed(format!("request: unknown type {other}")));
        }
    };
    operation
        .validate()
        .map_err(|e| malformed(format!("request: {e}")))?;
    Ok(Decoded::Control(operation))
}

/// Decodes an emitter message published on `channel`. The namespace is the packet's `nsp`, or
/// the one the channel names when the packet has none.
pub fn decode(channel: &str, payload: &[u8]) -> Result<Envelope, IngressError> {
    let mut reader = payload;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH)
        .map_err(|e| malformed(format!("not msgpack: {e}")))?;
    if !reader.is_empty() {
        return Err(malformed(format!(
            "{} bytes after the msgpack value",
            reader.len()
        )));
    }
    let Msgpack::Array(parts) = value else {
        return Err(malformed(
            "expected an array [uid, packet, opts]".to_owned(),
        ));
    };
    let mut parts = parts.into_iter();
    let uid = parts.next();
    let packet = parts
        .next()
        .ok_or_else(|| malformed("expected an array [uid, packet, opts]".to_owned()))?;
    let opts = parts.next();

    let mut packet = fields(packet, "packet")?;
    let packet_type = packet
        .remove("type")
        .and_then(|t| t.as_i64())
        .ok_or_else(|| malformed("packet.type: expected an integer".to_owned()))?;
    match packet_type {
        EVENT => {}
        BINARY_EVENT => return Err(IngressError::Binary { format: FORMAT }),
        other => {
            return Err(IngressError::PacketType {
                format: FORMAT,
                packet_type: other,
            });
        }
    }
    let Some(Msgpack::Array(data)) = packet.remove("data") else {
        return Err(malformed(
            "packet.data: expected an array [event, ...args]".to_owned(),
        ));
    };
    let mut data = data.into_iter();
    let event = match data.next() {
        Some(Msgpack::String(s)) => s
            .into_str()
            .ok_or_else(|| malformed("packet.data[0]: invalid UTF-8".to_owned()))?,
        _ => {
            return Err(malformed(
                "packet.data[0]: expected the event name".to_owned(),
            ));
        }
    };
    let args = data.map(to_json).collect::<Result<Vec<_>, _>>()?;
    let mut envelope = Envelope::with_args(event, args);
    envelope.namespace = match packet.remove("nsp") {
        Some(nsp) => string(nsp, "packet.nsp")?,
        None => channel_namespace(channel).unwrap_or("/").to_owned(),
    };
    if let Some(opts) = opts.filter(|o| !o.is_nil()) {
        let mut opts = fields(opts, "opts")?;
        envelope.rooms = rooms(opts.remove("rooms"), "opts.rooms")?;
        envelope.except = rooms(opts.remove("except"), "opts.except")?;
    }
    envelope.origin = uid.and_then(|uid| uid.as_str().map(str::to_owned));
    envelope.validate()?;
    Ok(envelope)
}

fn malformed(reason: String) -> IngressError {
    IngressError::Malformed {
        format: FORMAT,
        reason,
    }
}

/// The fields of a msgpack map with string keys.
fn fields(
    value: Msgpack,
    what: &str,
) -> Result<std::collections::HashMap<String, Msgpack>, IngressError> {
    let Msgpack::Map(pairs) = value else {
        return Err(malformed(format!("{what}: expected a map")));
    };
    Ok(pairs
        .into_iter()
        .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v)))
        .collect())
}

fn string(value: Msgpack, what: &str) -> Result<String, IngressError> {
    match value {
        Msgpack::String(s) => s
            .into_str()
            .ok_or_else(|| malformed(format!("{what}: invalid UTF-8"))),
        _ => Err(malformed(format!("{what}: expected a string"))),
    }
}

/// A list of room names; absent or `nil` is none.
fn rooms(value: Option<Msgpack>, what: &str) -> Result<Vec<String>, IngressError> {
    match value {
        None | Some(Msgpack::Nil) => Ok(Vec::new()),
        Some(Msgpack::Array(rooms)) => rooms.into_iter().map(|r| string(r, what)).collect(),
        Some(_) => Err(malformed(format!("{what}: expected a list of rooms"))),
    }
}

/// The namespace in `<key>#<namespace>#...`, when the channel names one.
fn channel_namespace(channel: &str) -> Option<&str> {
    let start = channel.find("#/")? + 1;
    let len = channel[start..].find('#')?;
    Some(&channel[start..start + len])
}

/// A msgpack value as the JSON socket.io would send to clients.
fn to_json(value: Msgpack) -> Result<Value, IngressError> {
    Ok(match value {
        Msgpack::Nil => Value::Null,
        Msgpack::Boolean(b) => Value::Bool(b),
        Msgpack::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => Value::from(n),
            (None, Some(n)) => Value::from(n),
            (None, None) => Value::Null,
        },
        // JSON.stringify writes NaN and the infinities as null.
        Msgpack::F32(f) => Number::from_f64(f64::from(f)).map_or(Value::Null, Value::Number),
        Msgpack::F64(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Msgpack::String(s) => Value::String(
            s.into_str()
                .ok_or_else(|| malformed("a string is not valid UTF-8".to_owned()))?,
        ),
        Msgpack::Binary(_) => return Err(IngressError::Binary { format: FORMAT }),
        Msgpack::Array(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Msgpack::Map(pairs) => {
            let mut map = Map::with_capacity(pairs.len());
            for (key, value) in pairs {
                let key = match key {
                    Msgpack::String(s) => s
                        .into_str()
                        .ok_or_else(|| malformed("a key is not valid UTF-8".to_owned()))?,
                    // JavaScript object keys are strings; notepack writes nothing else.
                    Msgpack::Integer(_) | Msgpack::Boolean(_) | Msgpack::Nil => key.to_string(),
                    _ => return Err(malformed("a map key is not a string".to_owned())),
                };
                map.insert(key, to_json(value)?);
            }
            Value::Object(map)
        }
        Msgpack::Ext(TIMESTAMP, bytes) => Value::String(timestamp(&bytes)?),
        Msgpack::Ext(kind, _) => {
            return Err(malformed(format!(
                "msgpack extension type {kind} is not supported"
            )));
        }
    })
}

/// The msgpack extension type of timestamps (notepack writes `Date`s as them).
const TIMESTAMP: i8 = -1;

/// A msgpack timestamp as JavaScript's `Date.prototype.toISOString` writes it (millisecond
/// precision, UTC): what `JSON.stringify` makes of a `Date`.
fn timestamp(bytes: &[u8]) -> Result<String, IngressError> {
    let bad = || malformed("invalid msgpack timestamp".to_owned());
    let (seconds, nanos): (i64, u32) = match bytes.len() {
        4 => (
            i64::from(u32::from_be_bytes(bytes.try_into().map_err(|_| bad())?)),
            0,
        ),
        8 => {
            let v = u64::from_be_bytes(bytes.try_into().map_err(|_| bad())?);
            let nanos = u32::try_from(v >> 34).map_err(|_| bad())?;
            (i64::try_from(v & 0x3_ffff_ffff).map_err(|_| bad())?, nanos)
        }
        12 => {
            let nanos = u32::from_be_bytes(bytes[..4].try_into().map_err(|_| bad())?);
            let seconds = i64::from_be_bytes(bytes[4..].try_into().map_err(|_| bad())?);
            (seconds, nanos)
        }
        _ => return Err(bad()),
    };
    if nanos >= 1_000_000_000 {
        return Err(bad());
    }
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        // toISOString's expanded years.
        format!(
            "{}{:06}",
            if year < 0 { '-' } else { '+' },
            year.unsigned_abs()
        )
    };
    Ok(format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60,
        nanos / 1_000_000
    ))
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // day is 1..=31 and month 1..=12 by construction.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A message captured from the real package (see core/tests/fixtures/ingress/README.md).
    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/ingress/node-emitter/", $name)).as_slice()
        };
    }

    #[test]
    fn emit_to_everyone() {
        // new Emitter(redis).emit("message", "Hi")
        let e = decode("socket.io#/#", fixture!("message-hi.msgpack")).unwrap();
        assert_eq!(e.event, "message");
        assert_eq!(e.data, vec![json!("Hi")]);
        assert_eq!(e.namespace, "/");
        assert!(e.rooms.is_empty() && e.except.is_empty());
        assert_eq!(e.origin.as_deref(), Some("emitter"));
        // The custom key changes the channel only.
        let e = decode("custom#/#", fixture!("custom-key.msgpack")).unwrap();
        assert_eq!(e.data, vec![json!("custom key")]);
    }

    #[test]
    fn rooms_except_namespaces_and_arguments() {
        // .to("user:alice").emit("news", {...}), on socket.io#/#user:alice#
        let e = decode(
            "socket.io#/#user:alice#",
            fixture!("object-to-one-room.msgpack"),
        )
        .unwrap();
        assert_eq!(e.event, "news");
        assert_eq!(e.data, vec![json!({"title": "Release", "unread": 3})]);
        assert_eq!(e.rooms, vec!["user:alice".to_owned()]);

        // .to(["a", "b"]).except("user:bot").emit("move", 3, 4)
        let e = decode("socket.io#/#", fixture!("args-rooms-except.msgpack")).unwrap();
        assert_eq!(e.data, vec![json!(3), json!(4)]);
        assert_eq!(e.rooms, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(e.except, vec!["user:bot".to_owned()]);

        // .to("room1").to("room2"): two rooms, published on the namespace channel.
        let e = decode("socket.io#/#", fixture!("two-rooms.msgpack")).unwrap();
        assert_eq!(e.rooms, vec!["room1".to_owned(), "room2".to_owned()]);

        // .of("/chat").emit("hello", null)
        let e = decode("socket.io#/chat#", fixture!("namespace-null-arg.msgpack")).unwrap();
        assert_eq!(e.namespace, "/chat");
        assert_eq!(e.data, vec![Value::Null]);

        // .except("x").volatile.compress(false).emit("noargs"): flags ignored.
        let e = decode("socket.io#/#", fixture!("no-args-flags-except.msgpack")).unwrap();
        assert_eq!(e.event, "noargs");
        assert!(e.data.is_empty());
        assert_eq!(e.except, vec!["x".to_owned()]);
    }

    #[test]
    fn values_become_what_socket_io_would_send() {
        // emit("types", 1.5, -7, true, [1, "two"], undefined, new Date(1732550000123), "é")
        let e = decode("socket.io#/#", fixture!("types.msgpack")).unwrap();
        assert_eq!(
            e.data,
            vec![
                json!(1.5),
                json!(-7),
                json!(true),
                json!([1, "two"]),
                Value::Null,
                json!("2024-11-25T15:53:20.123Z"),
                json!("é"),
            ]
        );
    }

    #[test]
    fn binary_and_other_packets_are_refused() {
        // emit("bin", Buffer.from([1, 2, 255]))
        let err = decode("socket.io#/#", fixture!("binary.msgpack")).unwrap_err();
        assert_eq!(err.reason(), "binary", "{err}");
        assert!(err.to_string().contains("base64"), "{err}");

        // The same message with another packet type (0: CONNECT; 5: BINARY_EVENT).
        let mut connect = fixture!("message-hi.msgpack").to_vec();
        let at = connect
            .windows(5)
            .position(|w| w == [0xa4, b't', b'y', b'p', b'e'])
            .unwrap();
        assert_eq!(connect[at + 5], 2);
        connect[at + 5] = 0;
        let err = decode("socket.io#/#", &connect).unwrap_err();
        assert_eq!(err.reason(), "unsupported_packet", "{err}");
        connect[at + 5] = 5;
        assert_eq!(
            decode("socket.io#/#", &connect).unwrap_err().reason(),
            "binary"
        );
    }

    #[test]
    fn malformed_messages_never_panic() {
        let full = fixture!("message-hi.msgpack");
        for end in 0..full.len() {
            assert!(decode("socket.io#/#", &full[..end]).is_err(), "{end}");
        }
        let mut trailing = full.to_vec();
        trailing.push(0);
        assert!(decode("socket.io#/#", &trailing).is_err());
        for junk in [
            &b"{\"type\":2}"[..],
            &[0x90],                         // []
            &[0x92, 0xa1, b'x', 0xc0],       // ["x", nil]
            &[0xdc, 0xff, 0xff],             // array 16 claiming 65535 items
            &[0xdd, 0xff, 0xff, 0xff, 0xff], // array 32 claiming 4 billion items
        ] {
            let err = decode("socket.io#/#", junk).unwrap_err();
            assert_eq!(err.reason(), "undecodable", "{err}");
        }
        // Deeply nested arrays stop at the depth limit instead of overflowing the stack.
        let deep = vec![0x91; 100_000];
        assert!(decode("socket.io#/#", &deep).is_err());
    }

    #[test]
    fn patterns_and_channel_namespaces() {
        assert_eq!(pattern("socket.io"), "socket.io#*");
        assert_eq!(pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\#*");
        let spec = crate::ChannelSpec::pattern(pattern("socket.io"));
        assert!(spec.matches("socket.io#/#"));
        assert!(spec.matches("socket.io#/chat#room#"));
        assert!(!spec.matches("socket.io-request#/#"));
        assert_eq!(channel_namespace("socket.io#/chat#r#"), Some("/chat"));
        assert_eq!(channel_namespace("socket.io#/#"), Some("/"));
        assert_eq!(channel_namespace("nothing"), None);
    }

    #[test]
    fn timestamps_in_every_width() {
        assert_eq!(
            timestamp(&[0, 0, 0, 0]).unwrap(),
            "1970-01-01T00:00:00.000Z"
        );
        let s32 = 1_732_550_000_u32.to_be_bytes();
        assert_eq!(timestamp(&s32).unwrap(), "2024-11-25T15:53:20.000Z");
        let v64 = (123_000_000_u64 << 34) | 951_868_800; // 2000-03-01, after a leap day
        assert_eq!(
            timestamp(&v64.to_be_bytes()).unwrap(),
            "2000-03-01T00:00:00.123Z"
        );
        assert_eq!(
            timestamp(&951_782_400_u32.to_be_bytes()).unwrap(),
            "2000-02-29T00:00:00.000Z"
        );
        let mut b96 = 0_u32.to_be_bytes().to_vec();
        b96.extend((-86_400_i64).to_be_bytes());
        assert_eq!(timestamp(&b96).unwrap(), "1969-12-31T00:00:00.000Z");
        assert!(timestamp(&[1, 2, 3]).is_err());
    }

    #[test]
    fn requests_are_room_operations() {
        let control = |channel: &str, payload: &[u8]| match decode_request(channel, payload) {
            Ok(Decoded::Control(c)) => c,
            other => panic!("not a room operation: {other:?}"),
        };
        // io.in("user:alice").socketsJoin("game:1")
        assert_eq!(
            control("socket.io-request#/#", fixture!("request-join.json")),
            Control::Join {
                rooms: vec!["user:alice".into()],
                namespace: "/".into(),
                except: vec![],
                join: vec!["game:1".into()],
            }
        );
        // io.in(["user:alice", "user:bob"]).except("user:bot").socketsJoin(["game:1", "game:2"])
        assert_eq!(
            control(
                "socket.io-request#/#",
                fixture!("request-join-rooms-except.json")
            ),
            Control::Join {
                rooms: vec!["user:alice".into(), "user:bob".into()],
                namespace: "/".into(),
                except: vec!["user:bot".into()],
                join: vec!["game:1".into(), "game:2".into()],
            }
        );
        // io.socketsJoin("everyone"): every socket of the namespace.
        assert_eq!(
            control(
                "socket.io-request#/#",
                fixture!("request-join-everyone.json")
            ),
            Control::Join {
                rooms: vec![],
                namespace: "/".into(),
                except: vec![],
                join: vec!["everyone".into()],
            }
        );
        assert_eq!(
            control("socket.io-request#/#", fixture!("request-leave.json")).name(),
            "leave"
        );
        // io.in("game:1").disconnectSockets(true)
        assert_eq!(
            control(
                "socket.io-request#/#",
                fixture!("request-disconnect-close.json")
            ),
            Control::Disconnect {
                rooms: vec!["game:1".into()],
                namespace: "/".into(),
                except: vec![],
                reason: None,
            }
        );
        // io.of("/chat").in("user:alice").disconnectSockets(): the namespace is the channel's.
        assert_eq!(
            control(
                "socket.io-request#/chat#",
                fixture!("request-disconnect-chat.json")
            )
            .namespace(),
            "/chat"
        );
    }

    #[test]
    fn unsupported_and_malformed_requests_are_refused() {
        let reason = |payload: &[u8]| {
            decode_request("socket.io-request#/#", payload)
                .unwrap_err()
                .reason()
        };
        // io.serverSideEmit("hello", "world", 1)
        assert_eq!(
            reason(fixture!("request-server-side-emit.json")),
            "unsupported_request"
        );
        // io.disconnectSockets(): nothing disconnects everybody.
        assert_eq!(
            reason(fixture!("request-disconnect-everyone.json")),
            "unsupported_request"
        );
        assert_eq!(
            reason(br#"{"type":5,"requestId":"x","opts":{}}"#),
            "unsupported_request"
        );
        for bad in [
            &b"not json"[..],
            br#"{"type":2,"opts":{"rooms":[]},"rooms":[]}"#,
            br#"{"type":2,"rooms":[""]}"#,
            br#"{"type":9}"#,
            br#"{"opts":{}}"#,
        ] {
            assert_eq!(
                reason(bad),
                "undecodable",
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(request_pattern("socket.io"), "socket.io-request#*");
        assert_eq!(request_pattern("a*b"), "a\\*b-request#*");
    }
}
