//! The native bus format (`codec::native::decode`, what the relay decodes for every message):
//! no panic, and a decoded envelope re-encodes to bytes that decode to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidecast_core::codec::native;

fuzz_target!(|payload: &[u8]| {
    let Ok(envelope) = native::decode(payload) else {
        return;
    };
    assert!(
        envelope.validate().is_ok(),
        "decoded but invalid: {envelope:?}"
    );
    let encoded = native::encode(&envelope);
    match native::decode(&encoded) {
        Ok(again) => assert_eq!(
            again,
            envelope,
            "re-encoded as {}",
            String::from_utf8_lossy(&encoded)
        ),
        Err(e) => panic!(
            "{envelope:?} re-encoded to undecodable {}: {e}",
            String::from_utf8_lossy(&encoded)
        ),
    }
});
