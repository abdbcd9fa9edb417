//! The `http` policy's reading of the application's answers (`sidecast_auth::fuzzing::read_answer`,
//! what `HttpAuth` does with every status and body). The first two bytes are the status (mostly
//! 200, 401, 403), the rest the body. Invariants: a principal only from a 200 whose `user` is a
//! non-empty string, with that user and the `rooms` strings; a refusal only from a 401 or 403,
//! its reason without control characters and cut short; anything else is the
//! endpoint failing, never a principal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sidecast_auth::fuzzing::{Answer, read_answer};

fuzz_target!(|data: &[u8]| {
    let Some((status, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = match u16::from_le_bytes(*status) % 8 {
        0..=3 => 200,
        4 => 401,
        5 => 403,
        _ => u16::from_le_bytes(*status) % 600,
    };
    let json = serde_json::from_slice::<Value>(body).ok();
    match read_answer(status, body) {
        Answer::Principal(principal) => {
            assert_eq!(status, 200);
            let json = json.expect("a principal from a JSON body");
            assert_eq!(
                json.get("user").and_then(Value::as_str),
                Some(principal.id.as_str())
            );
            assert!(!principal.id.is_empty());
            let rooms: Vec<&str> = json
                .get("rooms")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert_eq!(principal.rooms, rooms);
        }
        Answer::Refused(refusal) => {
            assert!(matches!(status, 401 | 403), "refused on {status}");
            let reason = refusal.to_string();
            assert!(!reason.chars().any(char::is_control), "reason {reason:?}");
            // The application's reason is cut at 200 characters; the rest is the kind's prefix.
            assert!(
                reason.chars().count() <= 260,
                "reason of {} characters",
                reason.len()
            );
        }
        Answer::Unusable { .. } => {}
    }
});
