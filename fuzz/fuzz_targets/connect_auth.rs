//! The `offset` of a Socket.IO CONNECT packet's `auth`, as recovery reads it
//! (`sidecast_web::fuzzing::requested`, on the JSON the client sent). Invariants: only a
//! non-empty string asks to recover, and from exactly the offset it names (`"0"`, the start of
//! the history as written to clients, from the start); `""` and `null` ask for new offsets;
//! another type is malformed (reported `unknown`, never a replay); no `offset` key asks for
//! nothing, so the socket sees what the original application would send it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sidecast_core::Offset;
use sidecast_web::fuzzing::{Requested, requested};

fuzz_target!(|data: &[u8]| {
    let Ok(auth) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let asked = requested(Some(&auth));
    let expected = match auth.get("offset") {
        None => Requested::Nothing,
        Some(Value::Null) => Requested::New,
        Some(Value::String(s)) if s.is_empty() => Requested::New,
        Some(Value::String(s)) if s == "0" => Requested::From(Offset::START),
        Some(Value::String(s)) => {
            assert_ne!(Offset::new(s.as_str()), Offset::START);
            Requested::From(Offset::new(s.as_str()))
        }
        Some(_) => Requested::Malformed,
    };
    assert_eq!(asked, expected, "auth {auth}");
    assert_eq!(requested(None), Requested::Nothing);
});
