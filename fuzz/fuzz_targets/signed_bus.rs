//! Signed bus messages (`Signer::open`, then the native or control decoder, as the relay does on a
//! signed bus). Invariant: nothing is accepted that the key did not sign. The fuzzer does not
//! know the key; the seeds are messages signed with it (`SIGNED`), so whatever `open` accepts
//! must carry one of their texts. Then: what `seal` signs, `open` gives back exactly, once (a
//! second copy is a replay), and a signer with another key refuses it.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sidecast_core::codec::{control, native};
use sidecast_core::{SignatureError, Signer};

const KEY: &[u8] = b"fuzz-signing-key";
/// The signing time of the seeds, and the clock the target opens them at.
const NOW_MS: u64 = 1_732_550_000_000;
/// The texts of the seeds in fuzz/corpus/signed_bus, signed with `KEY` at `NOW_MS`.
const SIGNED: &[&str] = &[
    r#"{"v":1,"event":"message","data":"Hi"}"#,
    r#"{"v":1,"control":"join","rooms":["user:alice"],"join":["game:1"]}"#,
];

fuzz_target!(|payload: &[u8]| {
    let signer = Signer::new(KEY, Duration::from_secs(60));
    if let Ok(inner) = signer.open(payload, NOW_MS) {
        let text = String::from_utf8_lossy(&inner);
        assert!(
            SIGNED.contains(&text.as_ref()),
            "accepted a message the key never signed: {text}"
        );
        let _ = native::decode(&inner);
        let _ = control::decode(&inner);
    }

    let sealed = signer.seal(payload, NOW_MS);
    let opened = signer.open(&sealed, NOW_MS + 1);
    assert_eq!(
        opened.as_deref(),
        Ok(String::from_utf8_lossy(payload).as_bytes())
    );
    assert_eq!(
        signer.open(&sealed, NOW_MS + 2),
        Err(SignatureError::Replayed)
    );
    let other = Signer::new(b"another-key", Duration::from_secs(60));
    assert_eq!(other.open(&sealed, NOW_MS), Err(SignatureError::Invalid));
});
