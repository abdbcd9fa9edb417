//! Signed bus messages (opt-in with `broker.signing_key`).
//!
//! A signed message wraps the unsigned one as a string, so that any language can sign it without
//! canonicalizing JSON:
//!
//! ```json
//! {"v": 1, "ts": 1732550000000, "msg": "{\"event\":\"message\",\"data\":\"Hi\"}", "sig": "<hex>"}
//! ```
//!
//! `sig` is the lower-case hex HMAC-SHA256, keyed with the signing key, of the bytes
//! `"<ts>.<msg>"` (the decimal timestamp, a dot, the `msg` string). `ts` is the signing time in
//! milliseconds since the Unix epoch. A node accepts a message only when the signature verifies,
//! `ts` is within `max_age` of its clock, and it has not seen the same signature within that
//! window (replay).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a message was not accepted as signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The message carries no signature although the node requires one.
    #[error(
        "message is not signed (broker.signing_key is set on this node); sign it as docs/protocol.md shows"
    )]
    Unsigned,
    /// The signature does not match: wrong key or altered message.
    #[error("message signature does not verify: it was altered or signed with another key")]
    Invalid,
    /// `ts` is too far from this node's clock.
    #[error(
        "signed message is stale: signed {age_ms} ms away from this node's clock (limit {max_ms} ms); check clocks or broker.signing_max_age_ms"
    )]
    Stale {
        /// Distance between `ts` and now, in milliseconds.
        age_ms: u64,
        /// The limit in milliseconds.
        max_ms: u64,
    },
    /// The same signed message was received before.
    #[error("signed message was already received (replay)")]
    Replayed,
}

#[derive(Serialize, Deserialize)]
struct Sealed<'a> {
    v: u8,
    ts: u64,
    #[serde(borrow)]
    msg: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sig: std::borrow::Cow<'a, str>,
}

/// Signs and verifies bus messages with one key.
pub struct Signer {
    key: Vec<u8>,
    max_age: Duration,
    /// Signatures seen within `max_age`, with their `ts`, to refuse replays.
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key", &"***")
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl Signer {
    /// A signer with `key`, accepting messages signed at most `max_age` away from now.
    pub fn new(key: impl AsRef<[u8]>, max_age: Duration) -> Self {
        Self {
            key: key.as_ref().to_vec(),
            max_age,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, ts: u64, msg: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(ts.to_string().as_bytes());
        mac.update(b".");
        mac.update(msg);
        mac
    }

    /// Wraps `message` (an unsigned native message) into a signed one, stamped `now_ms`.
    pub fn seal(&self, message: &[u8], now_ms: u64) -> Vec<u8> {
        let msg = String::from_utf8_lossy(message);
        let sig = hex::encode(self.mac(now_ms, msg.as_bytes()).finalize().into_bytes());
        let sealed = Sealed {
            v: 1,
            ts: now_ms,
            msg,
            sig: sig.into(),
        };
        serde_json::to_vec(&sealed).unwrap_or_default()
    }

    /// Verifies a signed message received at `now_ms` and returns the unsigned message inside.
    pub fn open(&self, payload: &[u8], now_ms: u64) -> Result<Vec<u8>, SignatureError> {
        let (sealed, sig) = self.verified(payload, now_ms, self.max_age)?;
        let max_ms = u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget signatures older than the window: a replay of those is refused as stale.
        if seen.len() > 1024 {
            seen.retain(|_, ts| now_ms.abs_diff(*ts) <= max_ms);
        }
        if seen.insert(sig, sealed.ts).is_some() {
            return Err(SignatureError::Replayed);
        }
        Ok(sealed.msg.into_owned().into_bytes())
    }

    /// Verifies a signed history entry, read at `now_ms`, that may be up to `max_age` old (the
    /// history's retention plus the clock skew allowed), and returns the message inside.
    ///
    /// Unlike [`Signer::open`], it keeps no record of the signatures seen: a history entry is
    /// read again on purpose (a node catching up, a client recovering), and its offset, unique
    /// in the history, is what keeps it from being delivered twice.
    pub fn open_entry(
        &self,
        payload: &[u8],
        now_ms: u64,
        max_age: Duration,
    ) -> Result<Vec<u8>, SignatureError> {
        let (sealed, _) = self.verified(payload, now_ms, max_age)?;
        Ok(sealed.msg.into_owned().into_bytes())
    }

    /// Checks the signature and the age (at most `max_age`) of a signed message.
    fn verified<'p>(
        &self,
        payload: &'p [u8],
        now_ms: u64,
        max_age: Duration,
    ) -> Result<(Sealed<'p>, [u8; 32]), SignatureError> {
        let sealed: Sealed<'p> =
            serde_json::from_slice(payload).map_err(|_| SignatureError::Unsigned)?;
        let mut sig = [0u8; 32];
        hex::decode_to_slice(sealed.sig.as_bytes(), &mut sig)
            .map_err(|_| SignatureError::Invalid)?;
        // verify_slice compares in constant time.
        self.mac(sealed.ts, sealed.msg.as_bytes())
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Invalid)?;
        let max_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        let age_ms = now_ms.abs_diff(sealed.ts);
        if age_ms > max_ms {
            return Err(SignatureError::Stale { age_ms, max_ms });
        }
        Ok((sealed, sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn seal_then_open() {
        let signer = Signer::new("k", MIN);
        let sealed = signer.seal(br#"{"v":1,"event":"m","data":"Hi"}"#, 1_000);
        assert_eq!(
            signer.open(&sealed, 2_000).unwrap(),
            br#"{"v":1,"event":"m","data":"Hi"}"#
        );
    }

    #[test]
    fn refusals() {
        let signer = Signer::new("k", MIN);
        let sealed = signer.seal(br#"{"event":"m"}"#, 1_000);
        assert_eq!(
            signer.open(br#"{"v":1,"event":"m"}"#, 1_000),
            Err(SignatureError::Unsigned)
        );
        assert_eq!(
            Signer::new("other", MIN).open(&sealed, 1_000),
            Err(SignatureError::Invalid)
        );
        let tampered = String::from_utf8(sealed.clone())
            .unwrap()
            .replace("\\\"m\\\"", "\\\"x\\\"");
        assert_ne!(tampered.as_bytes(), &sealed[..]);
        assert_eq!(
            signer.open(tampered.as_bytes(), 1_000),
            Err(SignatureError::Invalid)
        );
        assert!(matches!(
            signer.open(&sealed, 1_000 + 61_000),
            Err(SignatureError::Stale { .. })
        ));
        assert!(signer.open(&sealed, 1_500).is_ok());
        assert_eq!(signer.open(&sealed, 1_600), Err(SignatureError::Replayed));
    }

    /// History entries are read again on purpose, so a second read is no replay; the age bound
    /// is the caller's (the history's retention), and the signature is checked as for `open`.
    #[test]
    fn history_entries_open_more_than_once_within_their_own_age() {
        let signer = Signer::new("k", MIN);
        let sealed = signer.seal(br#"{"event":"m"}"#, 1_000);
        let retention = Duration::from_secs(120);
        assert!(signer.open(&sealed, 1_000).is_ok());
        assert_eq!(
            signer.open_entry(&sealed, 2_000, retention).unwrap(),
            br#"{"event":"m"}"#
        );
        assert!(signer.open_entry(&sealed, 100_000, retention).is_ok());
        assert!(matches!(
            signer.open_entry(&sealed, 1_000 + 121_000, retention),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            Signer::new("other", MIN).open_entry(&sealed, 2_000, retention),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.open_entry(br#"{"event":"m"}"#, 2_000, retention),
            Err(SignatureError::Unsigned)
        );
    }

    /// The worked example of docs/protocol.md, so that other languages can check their code.
    #[test]
    fn documented_example() {
        let signer = Signer::new("change-me", MIN);
        let sealed = signer.seal(br#"{"v":1,"event":"message","data":"Hi"}"#, 1732550000000);
        assert_eq!(
            String::from_utf8(sealed).unwrap(),
            r#"{"v":1,"ts":1732550000000,"msg":"{\"v\":1,\"event\":\"message\",\"data\":\"Hi\"}","sig":"SIG"}"#
                .replace("SIG", "278f7dfd79a3d4ec82fc0947aeaa2046855c546da30e05d809a80c957c7daec2")
        );
    }
}
