//! [`Jwks`]: the public keys of a JWKS URL, fetched at start and cached for the `jwt` policy.
//!
//! - Keys are used for `refresh` after a fetch, then fetched again on the next token.
//! - A token whose `kid` is unknown causes a fetch (the issuer rotated its keys), but fetches
//!   happen at most once per `min_interval`, whatever tokens arrive: a flood of made-up `kid`s
//!   cannot turn Sidecast into a load generator against the issuer.
//! - While the endpoint is down, the keys last fetched stay in use (stale), with one warning per
//!   outage; only when no fetch ever succeeded are tokens refused as "keys unavailable"
//!   (retryable).
//! - One fetch at a time (single flight), bounded by a time-out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    /// No fetch ever succeeded.
    #[error("the issuer's keys (auth.jwt.jwks_url) could not be fetched yet")]
    Unavailable,
    /// The keys are there, but none has this `kid`.
    #[error("no key with this kid")]
    UnknownKid,
}

/// The keys of one JWKS URL.
pub(crate) struct Jwks {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    min_interval: Duration,
    state: RwLock<State>,
    /// Held while fetching: concurrent callers wait for the one fetch.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Keys by `kid`; keys without one under "".
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    /// Whether the current outage was logged.
    failing: bool,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &sidecast_core::broker::redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A cache of the keys at `url`; nothing is fetched until [`Jwks::prefetch`] or a token.
    pub(crate) fn new(
        url: &str,
        timeout: Duration,
        refresh: Duration,
        min_interval: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            url: url.to_owned(),
            client,
            refresh,
            min_interval,
            state: RwLock::new(State::default()),
            fetching: Mutex::new(()),
        })
    }

    /// Fetches the keys now (at start), logging the outcome.
    pub(crate) async fn prefetch(&self) {
        let _guard = self.fetching.lock().await;
        self.fetch().await;
    }

    /// Fetches the keys once, without caching them: how many are usable, or why none is.
    pub(crate) async fn check(&self) -> Result<usize, String> {
        self.download().await.map(|keys| keys.len())
    }

    /// The keys a token with `kid` may be signed with: the one with that `kid`, or all of them
    /// for a token without one.
    pub(crate) async fn keys(&self, kid: Option<&str>) -> Result<Vec<DecodingKey>, JwksError> {
        if let Some(found) = self.lookup(kid, false).await {
            return Ok(found);
        }
        if self.may_fetch().await {
            let _guard = self.fetching.lock().await;
            // Another caller may have fetched while this one waited.
            if self.lookup(kid, false).await.is_none() && self.may_fetch().await {
                self.fetch().await;
            }
        }
        match self.lookup(kid, true).await {
            Some(found) => Ok(found),
            None if self.state.read().await.fetched_at.is_none() => Err(JwksError::Unavailable),
            None => Err(JwksError::UnknownKid),
        }
    }

    /// Keys for `kid` from the cache: fresh ones only, unless `stale_ok`.
    async fn lookup(&self, kid: Option<&str>, stale_ok: bool) -> Option<Vec<DecodingKey>> {
        let state = self.state.read().await;
        let fresh = state
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.refresh);
        if !fresh && !stale_ok {
            return None;
        }
        let found: Vec<DecodingKey> = match kid {
            Some(kid) => state.keys.get(kid).cloned().into_iter().collect(),
            None => state.keys.values().cloned().collect(),
        };
        (!found.is_empty()).then_some(found)
    }

    /// Whether the rate bound allows a fetch now.
    async fn may_fetch(&self) -> bool {
        self.state
            .read()
            .await
            .attempted_at
            .is_none_or(|at| at.elapsed() >= self.min_interval)
    }

    /// One fetch; the caller holds `fetching`.
    async fn fetch(&self) {
        self.state.write().await.attempted_at = Some(Instant::now());
        let result = self.download().await;
        let mut state = self.state.write().await;
        match result {
            Ok(keys) => {
                if state.failing {
                    tracing::info!(url = %sidecast_core::broker::redact_url(&self.url), keys = keys.len(), "JWKS endpoint reachable again");
                } else {
                    tracing::debug!(keys = keys.len(), "JWKS fetched");
                }
                state.keys = keys;
                state.fetched_at = Some(Instant::now());
                state.failing = false;
            }
            Err(e) => {
                if !state.failing {
                    if state.fetched_at.is_some() {
                        tracing::warn!(url = %sidecast_core::broker::redact_url(&self.url), error = %e, "JWKS endpoint unreachable; verifying tokens with the keys fetched before (stale) until it is back");
                    } else {
                        tracing::warn!(url = %sidecast_core::broker::redact_url(&self.url), error = %e, "JWKS endpoint unreachable and no keys fetched yet; jwt tokens are refused (retryable) until it answers");
                    }
                }
                state.failing = true;
            }
        }
    }

    /// GET the URL and decode its keys; keys that cannot be used are skipped with a warning.
    async fn download(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("unreadable: {}", e.without_url()))?;
        parse_keys(&body)
    }
}

/// The keys of a JWKS document, by `kid` (`""` for a key without one); keys for encryption, or of
/// kinds this build cannot verify with, are skipped with a warning. An error names what is wrong
/// with the document (not JSON, no `keys` array, no usable key).
pub fn parse_keys(body: &[u8]) -> Result<HashMap<String, DecodingKey>, String> {
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Some(entries) = body.get("keys").and_then(Value::as_array) else {
        return Err("no \"keys\" array".to_owned());
    };
    let mut keys = HashMap::new();
    for entry in entries {
        let kid = entry
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Keys for encryption, or of kinds this build cannot verify with, are left out.
        if entry.get("use").and_then(Value::as_str) == Some("enc") {
            continue;
        }
        let key = serde_json::from_value::<Jwk>(entry.clone())
            .map_err(|e| e.to_string())
            .and_then(|jwk| DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string()));
        match key {
            Ok(key) => {
                keys.insert(kid, key);
            }
            Err(e) => tracing::warn!(kid = %kid, error = %e, "JWKS key skipped"),
        }
    }
    if keys.is_empty() {
        return Err("no usable key".to_owned());
    }
    Ok(keys)
}
