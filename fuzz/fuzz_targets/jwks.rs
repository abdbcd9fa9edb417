//! JWKS documents (`sidecast_auth::fuzzing::parse_keys`, what the `jwt` policy does with what
//! its `jwks_url` serves). Invariants: no panic; keys only from a JSON object's `keys` array, at
//! least one, each under the `kid` of an entry of it that is not marked for encryption.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sidecast_auth::fuzzing::parse_keys;

fuzz_target!(|body: &[u8]| {
    let Ok(keys) = parse_keys(body) else {
        return;
    };
    assert!(!keys.is_empty(), "Ok without a key");
    let document: Value = serde_json::from_slice(body).expect("keys from JSON");
    let entries = document["keys"].as_array().expect("keys from a keys array");
    for kid in keys.keys() {
        assert!(
            entries.iter().any(|entry| {
                entry.get("kid").and_then(Value::as_str).unwrap_or_default() == kid
                    && entry.get("use").and_then(Value::as_str) != Some("enc")
            }),
            "a key under {kid:?} that no usable entry has"
        );
    }
});
