//! Sidecast's own JSON format, version 1: what publishers write and every node relays.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DecodeError, OneOrMany};
use crate::envelope::Envelope;

#[derive(Deserialize)]
struct WireIn {
    v: Option<u64>,
    event: Option<String>,
    data: Option<Value>,
    args: Option<Vec<Value>>,
    namespace: Option<String>,
    #[serde(alias = "to")]
    rooms: Option<OneOrMany>,
    except: Option<OneOrMany>,
    origin: Option<String>,
    id: Option<String>,
    ts: Option<u64>,
}

#[derive(Serialize)]
struct WireOut<'a> {
    v: u8,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a [Value]>,
    #[serde(skip_serializing_if = "is_default_namespace")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rooms: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    except: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<u64>,
}

fn is_default_namespace(ns: &&str) -> bool {
    *ns == "/"
}

/// The version this node writes and reads.
pub const VERSION: u64 = 1;

/// Decodes a native message. Unknown fields are ignored; a missing or invalid `event` is an
/// error.
pub fn decode(payload: &[u8]) -> Result<Envelope, DecodeError> {
    // The relay decodes every message: the fast path tracks no field path (which allocates a
    // string per field); only a message that fails is parsed again to name the bad field.
    let de = &mut serde_json::Deserializer::from_slice(payload);
    let wire = match WireIn::deserialize(de) {
        Ok(wire) => wire,
        Err(plain) => return Err(located_error(payload, plain)),
    };
    if let Some(v) = wire.v.filter(|&v| v != VERSION) {
        return Err(DecodeError::Version(v));
    }
    let event = wire.event.ok_or(DecodeError::MissingEvent)?;
    let data = match (wire.data, wire.args) {
        (Some(_), Some(_)) => return Err(DecodeError::DataAndArgs),
        (Some(one), None) => vec![one],
        (None, Some(args)) => args,
        (None, None) => Vec::new(),
    };
    let envelope = Envelope {
        event,
        data,
        namespace: wire.namespace.unwrap_or_else(|| "/".to_owned()),
        rooms: wire.rooms.map(Into::into).unwrap_or_default(),
        except: wire.except.map(Into::into).unwrap_or_default(),
        origin: wire.origin,
        id: wire.id,
        ts: wire.ts,
    };
    envelope.validate()?;
    Ok(envelope)
}

/// The error of a payload that did not deserialize, naming the field at fault.
fn located_error(payload: &[u8], plain: serde_json::Error) -> DecodeError {
    let de = &mut serde_json::Deserializer::from_slice(payload);
    match serde_path_to_error::deserialize::<_, WireIn>(de) {
        Err(e) => {
            let path = e.path().to_string();
            if path == "." {
                DecodeError::Json(e.into_inner().to_string())
            } else {
                DecodeError::Json(format!("field \"{path}\": {}", e.into_inner()))
            }
        }
        Ok(_) => DecodeError::Json(plain.to_string()),
    }
}

/// Encodes an envelope; one argument is written as `data`, any other count as `args`, and so is
/// one `null` argument: `"data": null` reads as no argument.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let single = matches!(envelope.data.as_slice(), [one] if !one.is_null());
    let wire = WireOut {
        v: 1,
        event: &envelope.event,
        data: if single { envelope.data.first() } else { None },
        args: if single { None } else { Some(&envelope.data) },
        namespace: &envelope.namespace,
        rooms: &envelope.rooms,
        except: &envelope.except,
        origin: envelope.origin.as_deref(),
        id: envelope.id.as_deref(),
        ts: envelope.ts,
    };
    // Serializing plain strings and `Value`s into a Vec cannot fail.
    serde_json::to_vec(&wire).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::native;
    use serde_json::json;

    #[test]
    fn accepts_the_hand_typed_form() {
        let e = native::decode(br#"{"v":1,"event":"message","data":"Hi"}"#).unwrap();
        assert_eq!(e.event, "message");
        assert_eq!(e.data, vec![json!("Hi")]);
        assert_eq!(e.namespace, "/");
        assert!(e.rooms.is_empty());
    }

    #[test]
    fn args_rooms_and_unknown_fields() {
        let e = native::decode(
            br#"{"event":"m","args":[1,{"a":2}],"to":"r1","except":["r2"],"future":true,"namespace":"/chat","ts":5}"#,
        )
        .unwrap();
        assert_eq!(e.data, vec![json!(1), json!({"a":2})]);
        assert_eq!(e.rooms, vec!["r1".to_owned()]);
        assert_eq!(e.except, vec!["r2".to_owned()]);
        assert_eq!(e.namespace, "/chat");
        assert_eq!(e.ts, Some(5));
        let none = native::decode(br#"{"event":"ping"}"#).unwrap();
        assert!(none.data.is_empty());
    }

    #[test]
    fn rejects_bad_messages_with_reasons() {
        let err = |p: &[u8]| native::decode(p).unwrap_err().to_string();
        assert!(err(b"nope").contains("not a valid Sidecast message"));
        assert!(err(br#"{"data":"x"}"#).contains("missing \"event\""));
        assert!(err(br#"{"event":5}"#).contains("field \"event\""));
        assert!(err(br#"{"v":2,"event":"m"}"#).contains("version 2"));
        assert!(err(br#"{"event":"m","data":1,"args":[]}"#).contains("not both"));
        assert!(err(br#"{"event":"disconnect"}"#).contains("reserved"));
        assert!(err(br#"[1,2]"#).contains("not a valid"));
    }

    #[test]
    fn numbers_cross_the_bus_unchanged() {
        // Found by fuzzing (fuzz/fuzz_targets/api_body.rs): serde_json's default float parsing
        // may land one unit in the last place away from the nearest double, so a number could
        // change on its way from a publisher through the bus to a socket.
        let published = br#"{"event":"m","data":-4.4444444404444446e+58}"#;
        let e = native::decode(published).unwrap();
        assert_eq!(e.data, vec![json!(-4.4444444404444446e58_f64)]);
        assert_eq!(native::decode(&native::encode(&e)).unwrap(), e);
    }

    #[test]
    fn one_null_argument_stays_one_argument() {
        // A round trip the native_decode fuzz target checks: `"data": null` reads as no
        // argument, so one `null` argument must be written as `"args": [null]`.
        let e = Envelope::new("m", Value::Null);
        assert_eq!(native::decode(&native::encode(&e)).unwrap(), e);
        assert!(
            native::decode(br#"{"event":"m","data":null}"#)
                .unwrap()
                .data
                .is_empty()
        );
    }

    #[test]
    fn round_trips() {
        let mut e = Envelope::with_args("m", vec![json!("a"), json!(2)]).to("room");
        e.except = vec!["x".into()];
        e.origin = Some("node".into());
        e.id = Some("id1".into());
        e.ts = Some(42);
        assert_eq!(native::decode(&native::encode(&e)).unwrap(), e);
        let one = Envelope::new("message", json!({"k": [1, 2]}));
        let bytes = native::encode(&one);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"v":1,"event":"message","data":{"k":[1,2]}}"#
        );
        assert_eq!(native::decode(&bytes).unwrap(), one);
        let zero = Envelope::with_args("ping", vec![]);
        assert_eq!(native::decode(&native::encode(&zero)).unwrap(), zero);
    }
}
