//! Following a Sentinel failover in tests: publishing until the broker is back.

use std::time::Duration;

use bytes::Bytes;
use sidecast_core::{Broker, Subscription};
use sidecast_transport_redis::RedisBroker;
use tokio::time::{Instant, sleep, timeout};

/// How long a failover may take to be followed: promotion, then the broker's move.
pub(crate) const FOLLOW: Duration = Duration::from_secs(20);

/// Between two tries of a publish that failed during the switch (no event tells when the new
/// master is reachable: the broker is polled).
pub(crate) const RETRY: Duration = Duration::from_millis(20);

/// Publishes until one publish succeeds, returning when it did.
pub(crate) async fn publish_until_ok(
    broker: &RedisBroker,
    channel: &str,
    payload: &str,
) -> Instant {
    let deadline = Instant::now() + FOLLOW;
    loop {
        match broker
            .publish(channel, Bytes::from(payload.to_owned()))
            .await
        {
            Ok(()) => return Instant::now(),
            Err(e) => {
                assert!(e.is_transient(), "a failover error must be transient: {e}");
                assert!(
                    Instant::now() < deadline,
                    "no publish succeeded within {FOLLOW:?}: {e}"
                );
                sleep(RETRY).await;
            }
        }
    }
}

/// Publishes `prefix-n` (n = 0, 1, ...) until the subscription receives one of them; returns the
/// message received.
pub(crate) async fn publish_until_received(
    broker: &RedisBroker,
    subscription: &mut Subscription,
    channel: &str,
    prefix: &str,
) -> String {
    let deadline = Instant::now() + FOLLOW;
    for n in 0.. {
        let payload = format!("{prefix}-{n}");
        publish_until_ok(broker, channel, &payload).await;
        if let Ok(Some(message)) = timeout(Duration::from_millis(200), subscription.recv()).await {
            return String::from_utf8(message.payload.to_vec()).expect("a UTF-8 payload");
        }
        assert!(
            Instant::now() < deadline,
            "the subscription received nothing within {FOLLOW:?}"
        );
    }
    unreachable!()
}
