//! Presence channel messages (`presence::wire::decode`, unsigned and signed): no panic; a decoded
//! message re-encodes to bytes that decode to the same message.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sidecast_core::Signer;
use sidecast_core::presence::wire;

fuzz_target!(|payload: &[u8]| {
    if let Some(message) = wire::decode(payload, None) {
        let encoded = wire::encode(&message, None);
        assert_eq!(
            wire::decode(&encoded, None).as_ref(),
            Some(&message),
            "re-encoded as {}",
            String::from_utf8_lossy(&encoded)
        );
    }
    // A signer with a key the fuzzer does not know: nothing it writes is accepted.
    let signer = Signer::new(b"fuzz-presence-key", Duration::from_secs(60));
    assert!(
        wire::decode(payload, Some(&signer)).is_none(),
        "accepted an unsigned presence message"
    );
});
