//! History entries as the node reads them (`sidecast_web::fuzzing::open_entry`: verified with
//! `Signer::open_entry` on a signed bus, then told apart as a room operation or an event and
//! decoded, as the relay and every replay do). The first byte picks the bus: even, unsigned; odd,
//! signed with a key the fuzzer does not know, so that the only entries accepted are the seeds
//! signed with it (`SIGNED`); and, whatever it picks, the rest signed here too, so that the
//! decoding behind a valid signature is reached. Invariants: an operation is a control entry
//! (`is_control`) and validates; an event is not one, validates and round-trips; signing does
//! not change what an entry opens to.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sidecast_core::Signer;
use sidecast_core::codec::{control, native};
use sidecast_web::fuzzing::{Opened, open_entry};

const KEY: &[u8] = b"fuzz-history-key";
/// The signing time of the seeds, and the clock the target reads them at.
const NOW_MS: u64 = 1_732_550_000_000;
/// How old an entry may be (the history's retention and the clock skew allowed).
const MAX_AGE: Duration = Duration::from_secs(3_600);
/// The texts of the signed seeds in fuzz/corpus/history_entry, signed with `KEY` at `NOW_MS`.
const SIGNED: &[&str] = &[
    r#"{"v":1,"event":"message","data":"Hi","rooms":["game:1"]}"#,
    r#"{"v":1,"control":"leave","rooms":["user:alice"],"leave":["game:1"]}"#,
];

/// Checks what an entry whose (verified) text is `text` opened to.
fn check(text: &[u8], opened: &Opened) {
    match opened {
        Opened::Control(operation) => {
            assert!(control::is_control(text), "an operation not told as one");
            assert!(operation.validate().is_ok(), "invalid {operation:?}");
        }
        Opened::Event(envelope) => {
            assert!(!control::is_control(text), "an event told as an operation");
            assert!(envelope.validate().is_ok(), "invalid {envelope:?}");
            let again = native::decode(&native::encode(envelope));
            assert_eq!(again.as_ref().ok(), Some(envelope));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let signer = Signer::new(KEY, Duration::from_secs(60));
    if mode % 2 == 1 {
        if let Ok(opened) = open_entry(payload, Some((&signer, MAX_AGE)), NOW_MS) {
            let inner = signer
                .open_entry(payload, NOW_MS, MAX_AGE)
                .expect("opened, so verified");
            let text = String::from_utf8_lossy(&inner);
            assert!(
                SIGNED.contains(&text.as_ref()),
                "accepted an entry the key never signed: {text}"
            );
            check(&inner, &opened);
        }
        return;
    }
    let unsigned = open_entry(payload, None, NOW_MS);
    if let Ok(opened) = &unsigned {
        check(payload, opened);
    }
    // The same text signed: it opens to the same thing (the signer carries UTF-8 text).
    if std::str::from_utf8(payload).is_ok() {
        let sealed = signer.seal(payload, NOW_MS - 1_000);
        let signed = open_entry(&sealed, Some((&signer, MAX_AGE)), NOW_MS);
        assert_eq!(
            format!("{:?}", signed.as_ref().ok()),
            format!("{:?}", unsigned.as_ref().ok()),
            "signing changed what the entry opens to"
        );
        // Older than the history keeps: refused.
        let stale = NOW_MS - 1_000 + u64::try_from(MAX_AGE.as_millis()).unwrap_or(0) + 1_001;
        assert!(open_entry(&sealed, Some((&signer, MAX_AGE)), stale).is_err());
    }
});
