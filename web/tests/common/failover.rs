//! A node following a Redis failover (Sentinel or Cluster) in tests: its configuration and the
//! publisher that retries through the switch.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use serde_json::json;
use sidecast_core::config::{BrokerKind, Config, PolicyKind, PolicyList, SessionStoreKind};

use super::{TestServer, post_api_with};

/// How long a switch may take: detection and promotion, then the node's move.
pub const FOLLOW: Duration = Duration::from_secs(30);

/// The publishing service's token.
pub const TOKEN: &str = "s3cret";

/// A node on the Redis at `url` with sessions in Redis too, and a publisher that is a service
/// with a token: its requests do not depend on the session store, which, like the broker, is
/// unreachable until the new primary is known.
pub fn config(url: &str) -> Config {
    let mut config = super::broker_config(BrokerKind::Redis, url);
    config.session.store = SessionStoreKind::Redis;
    config.auth.policy = PolicyList::Any(vec![PolicyKind::Session, PolicyKind::Token]);
    config.auth.tokens.insert("cron".into(), TOKEN.into());
    config
}

/// Posts events with the token until `POST /api/` answers 200, checking that every answer
/// meanwhile is 503 with `Retry-After` (never a 500) and that one comes within [`FOLLOW`] of
/// `promoted`; returns when the 200 came.
pub async fn post_until_accepted(server: &TestServer, promoted: Instant) -> Instant {
    for n in 0.. {
        let response = post_api_with(
            &server.base,
            &[("authorization", &format!("Bearer {TOKEN}"))],
            json!({"channel": "message", "body": format!("switch-{n}")}),
        )
        .await;
        match response.status().as_u16() {
            200 => return Instant::now(),
            503 => assert!(response.headers().contains_key("retry-after")),
            status => panic!("POST /api/ answered {status} during the switch"),
        }
        assert!(
            promoted.elapsed() < FOLLOW,
            "no 200 within {FOLLOW:?} of the promotion"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!()
}
