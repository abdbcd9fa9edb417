//! Flask session cookies (`FlaskSessionAuth::session`, then `principal`, as the `flask-session`
//! policy reads them). The first byte picks the mode: 0, the rest is a cookie value as a client
//! sends it (the fuzzer cannot sign, so nothing may be accepted); otherwise the rest is the
//! cookie's payload part, signed here as itsdangerous signs it, so that the fuzzer reaches the
//! base64, zlib and JSON decoding behind the signature. No panic either way.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha1::Sha1;
use sidecast_auth::FlaskSessionAuth;
use sidecast_core::config::{FlaskSessionConfig, Secret};

const SECRET: &str = "fuzz-flask-secret-key";
const NOW: u64 = 1_765_000_000;
/// The session of the seeds in fuzz/corpus/flask_cookie signed with `SECRET` (plain and
/// compressed).
const SIGNED_SESSION: &str = r#"{"user":"ada","rooms":["game:1"]}"#;

fn sign(payload: &str, signed_at: u64) -> String {
    let mut kdf = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    kdf.update(b"cookie-session");
    let derived = kdf.finalize().into_bytes();
    let stamp = signed_at.to_be_bytes();
    let first = stamp.iter().position(|b| *b != 0).unwrap_or(7);
    let signed = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&stamp[first..]));
    let mut mac = Hmac::<Sha1>::new_from_slice(&derived).expect("any key length");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let policy = FlaskSessionAuth::new(&FlaskSessionConfig {
        secret_key: Secret::new(SECRET),
        rooms_key: "rooms".to_owned(),
        ..FlaskSessionConfig::default()
    });
    let text = String::from_utf8_lossy(rest);
    if mode == 0 {
        if let Ok(session) = policy.session(&text, NOW) {
            let signed: serde_json::Value =
                serde_json::from_str(SIGNED_SESSION).expect("the seeds' session is JSON");
            assert_eq!(
                serde_json::Value::Object(session),
                signed,
                "accepted a session the key never signed"
            );
        }
    } else {
        let cookie = sign(&text, NOW - u64::from(mode));
        if let Ok(session) = policy.session(&cookie, NOW) {
            let _ = policy.principal(&session);
        }
    }
});
