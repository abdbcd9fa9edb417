//! JWTs (`JwtAuth::claims`, as the `jwt` policy verifies a token; HS256 with a static secret).
//! The first byte picks the mode: 0, the rest is a token as a client sends it: the fuzzer does
//! not know the secret, so the only claims accepted are those of the seed signed with it
//! (`SIGNED_CLAIMS`); 1, the rest is the claims JSON and 2, the header JSON, of a
//! token signed here with the secret, so that the fuzzer reaches the header, claims and expiry
//! checks behind the signature. No panic either way.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use sidecast_auth::JwtAuth;
use sidecast_core::config::{JwtConfig, Secret};

const SECRET: &str = "fuzz-jwt-secret-of-at-least-32-bytes!";
/// The claims of the token in fuzz/corpus/jwt signed with `SECRET`.
const SIGNED_CLAIMS: &str = r#"{"sub":"ada","exp":4102444800}"#;
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn sign(header: &[u8], claims: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// Runs a future that never waits (a static key: no JWKS fetch).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("verifying with a static key waited"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(policy) = JwtAuth::from_config(&JwtConfig {
        secret: Secret::new(SECRET),
        ..JwtConfig::default()
    }) else {
        panic!("the fuzz configuration is refused");
    };
    match mode {
        0 => {
            let token = String::from_utf8_lossy(rest);
            if let Ok(claims) = now(policy.claims(&token)) {
                let signed: serde_json::Value =
                    serde_json::from_str(SIGNED_CLAIMS).expect("the seed's claims are JSON");
                assert_eq!(
                    serde_json::Value::Object(claims),
                    signed,
                    "accepted claims the secret never signed"
                );
            }
        }
        1 => {
            let _ = now(policy.claims(&sign(HEADER.as_bytes(), rest)));
        }
        _ => {
            let _ = now(policy.claims(&sign(rest, SIGNED_CLAIMS.as_bytes())));
        }
    }
});
