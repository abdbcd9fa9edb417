//! Sidecast's own session cookies (the `cookie` store: `sidecast_web::fuzzing`'s
//! `session_from_cookie_header`, the unquoting middleware then the signed cookie's check and
//! decoding, as every request and Socket.IO handshake is read). The first byte picks: even, the
//! rest is a `Cookie` header as a client sends it: the fuzzer does not know the secret, so the
//! only session ever read is the seed's, signed with it (`SEED_USER`); odd, the rest is session
//! data (a JSON object) that the node writes (`session_set_cookie`, signed and percent-encoded)
//! and a client sends back, plain or in double quotes: it reads back exactly.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sidecast_core::config::{Secret, SessionConfig};
use sidecast_web::fuzzing::{session_from_cookie_header, session_set_cookie};

const SECRET: &str = "fuzz-session-secret-of-at-least-32-bytes!";
/// The user of the session in the seed fuzz/corpus/session_cookie/cookie, signed with `SECRET`.
const SEED_USER: &str = "Gonzalo";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let config = SessionConfig {
        secret: Secret::new(SECRET),
        ..SessionConfig::default()
    };
    if mode % 2 == 0 {
        let header = String::from_utf8_lossy(rest);
        if let Some(session) = session_from_cookie_header(&header, &config) {
            assert_eq!(
                session,
                HashMap::from([("user".to_owned(), Value::from(SEED_USER))]),
                "read a session the secret never signed"
            );
        }
        return;
    }
    let Ok(data) = serde_json::from_slice::<HashMap<String, Value>>(rest) else {
        return;
    };
    let set_cookie = session_set_cookie(&data, &config);
    let pair = set_cookie.split(';').next().unwrap_or_default();
    let (name, value) = pair.split_once('=').expect("a name=value pair");
    assert_eq!(name, config.cookie_name);
    for header in [
        format!("{name}={value}"),
        format!("other=1; {name}=\"{value}\"; x=y"),
    ] {
        assert_eq!(
            session_from_cookie_header(&header, &config).as_ref(),
            Some(&data),
            "{header}"
        );
    }
});
