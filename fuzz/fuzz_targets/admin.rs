//! Admin messages: the stats channel (`sidecast_web::fuzzing::decode_admin_stats`, what every
//! node does with `<channel>:admin`) and the Admin UI's session ids (`admin_session_valid`, the
//! `sessionId` of an admin connect's `auth`). The first byte picks: 0, a stats message on an
//! unsigned bus: taken only as a version-1 `server_stats` message whose stats are an object;
//! 1, on a signed bus: only the seed signed with the target's key is taken; 2, a session id as a
//! client sends it: the fuzzer does not know the key, so only the seed's expiry (signed with it)
//! is ever accepted; 3, eight bytes as an expiry signed here: accepted exactly while it lies in
//! the future.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sidecast_core::Signer;
use sidecast_core::config::{AdminConfig, Secret};
use sidecast_web::fuzzing::{admin_session_valid, decode_admin_stats};

const KEY: &[u8] = b"fuzz-admin-key";
const NOW_MS: u64 = 1_732_550_000_000;
/// The stats message of the seed fuzz/corpus/admin/stats-signed, signed with `KEY` at `NOW_MS`.
const SIGNED: &str = r#"{"v":1,"kind":"server_stats","stats":{"serverId":"n1","clientsCount":1}}"#;
const HASH: &str = "$2b$04$fuzzfuzzfuzzfuzzfuzzfuUm8tOGk0uxmSBpwTGJgk0hS6kM2fQJYW";
const USER: &str = "admin";
/// The expiry of the session id in the seed fuzz/corpus/admin/session (2100-01-01).
const SEED_EXPIRY: u64 = 4_102_444_800;

/// A session id for `expiry`, signed as the node signs them (decision 39).
fn session(expiry: u64) -> String {
    let key = Sha256::new()
        .chain_update(b"sidecast admin session\0")
        .chain_update(HASH.as_bytes())
        .finalize();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(USER.as_bytes());
    mac.update(b"\0");
    mac.update(&expiry.to_be_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{expiry}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let config = AdminConfig {
        username: USER.to_owned(),
        password_hash: Secret::new(HASH),
        ..AdminConfig::default()
    };
    let now = UNIX_EPOCH + Duration::from_millis(NOW_MS);
    match mode % 4 {
        0 => {
            if let Some(stats) = decode_admin_stats(rest, None, NOW_MS) {
                assert!(stats.is_object());
                // serde_json skips an ignored key's text without checking its UTF-8, so the
                // message as a whole may not parse as a value; what is forwarded is checked.
                if let Ok(message) = serde_json::from_slice::<Value>(rest) {
                    assert_eq!(message["v"], 1);
                    assert_eq!(message["kind"], "server_stats");
                    assert_eq!(message["stats"], stats);
                }
            }
        }
        1 => {
            let signer = Signer::new(KEY, Duration::from_secs(60));
            if let Some(stats) = decode_admin_stats(rest, Some(&signer), NOW_MS) {
                let signed: Value = serde_json::from_str(SIGNED).expect("the seed is JSON");
                assert_eq!(
                    stats, signed["stats"],
                    "accepted stats the key never signed"
                );
            }
        }
        2 => {
            let text = String::from_utf8_lossy(rest);
            if admin_session_valid(&config, &text, now) {
                let (expiry, _) = text.split_once('.').expect("accepted, so <expiry>.<sig>");
                assert_eq!(
                    expiry.parse::<u64>().ok(),
                    Some(SEED_EXPIRY),
                    "accepted a session id the key never signed: {text}"
                );
            }
        }
        _ => {
            let Some(bytes) = rest.first_chunk::<8>() else {
                return;
            };
            let expiry = u64::from_le_bytes(*bytes) % (2 * SEED_EXPIRY);
            let valid = admin_session_valid(&config, &session(expiry), now);
            let now_secs = NOW_MS / 1_000;
            assert_eq!(valid, expiry > now_secs, "expiry {expiry} at {now_secs}");
            assert!(!admin_session_valid(
                &config,
                &session(expiry),
                SystemTime::UNIX_EPOCH + Duration::from_secs(expiry)
            ));
        }
    }
});
