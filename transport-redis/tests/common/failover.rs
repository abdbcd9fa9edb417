//! Following a failover (Sentinel or Cluster) in tests: retrying an operation, and publishing,
//! until the broker is back.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use sidecast_core::{Broker, BrokerError, Subscription};
use sidecast_transport_redis::RedisBroker;
use tokio::time::{Instant, sleep};

/// How long a failover may take to be followed: promotion, then the broker's move.
pub(crate) const FOLLOW: Duration = Duration::from_secs(30);

/// Between two tries of an operation that failed during the switch (no event tells when the new
/// master serves: the broker is polled).
pub(crate) const RETRY: Duration = Duration::from_millis(20);

/// Retries `operation` until it succeeds, asserting that every failure meanwhile is transient;
/// returns its value and when it succeeded.
pub(crate) async fn until_ok<T, F, Fut>(what: &str, operation: F) -> (T, Instant)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, BrokerError>>,
{
    let deadline = Instant::now() + FOLLOW;
    loop {
        match operation().await {
            Ok(value) => return (value, Instant::now()),
            Err(e) => {
                assert!(
                    e.is_transient(),
                    "{what}: a failover error must be transient: {e}"
                );
                assert!(
                    Instant::now() < deadline,
                    "{what}: nothing succeeded within {FOLLOW:?}: {e}"
                );
                sleep(RETRY).await;
            }
        }
    }
}

/// Publishes until one publish succeeds, returning when it did.
pub(crate) async fn publish_until_ok(
    broker: &RedisBroker,
    channel: &str,
    payload: &str,
) -> Instant {
    until_ok("publish", || {
        broker.publish(channel, Bytes::from(payload.to_owned()))
    })
    .await
    .1
}

/// Publishes `prefix-n` (n = 0, 1, ...) on `channel` until the subscription receives one of them
/// on `channel` (messages of other channels are skipped); returns the payload received.
pub(crate) async fn publish_until_received(
    broker: &RedisBroker,
    subscription: &mut Subscription,
    channel: &str,
    prefix: &str,
) -> String {
    let deadline = Instant::now() + FOLLOW;
    for n in 0.. {
        publish_until_ok(broker, channel, &format!("{prefix}-{n}")).await;
        let wait = Instant::now() + Duration::from_millis(200);
        while let Ok(Some(message)) = tokio::time::timeout_at(wait, subscription.recv()).await {
            if message.channel == channel {
                return String::from_utf8(message.payload.to_vec()).expect("a UTF-8 payload");
            }
        }
        assert!(
            Instant::now() < deadline,
            "the subscription received nothing on {channel} within {FOLLOW:?}"
        );
    }
    unreachable!()
}
