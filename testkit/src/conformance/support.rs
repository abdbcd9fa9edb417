//! What every check leans on: waiting for what a backend does within [`DEADLINE`] instead of
//! hanging, knowing when a new subscription receives ([`await_subscribed`], with probe messages
//! that [`next_message`] skips), and subscribing and publishing that panic with the error.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, timeout, timeout_at};

use sidecast_core::broker::{Broker, BrokerMessage, ChannelSpec, Subscription};

use super::MakeBroker;
use crate::unique_channel;

/// How long a check waits for anything the backend should do (a message, the end of a stream).
/// Generous, because CI machines are slow and shared; a healthy run takes milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Payload prefix of the probe messages sent by [`await_subscribed`]. It starts with a NUL byte so
/// that no JSON or text payload a test publishes can be mistaken for a probe.
pub const PROBE_PREFIX: &[u8] = b"\0sidecast-conformance-probe:";

/// Probes are re-sent with growing intervals, from this...
const PROBE_FIRST_WAIT: Duration = Duration::from_millis(10);
/// ...up to this.
const PROBE_MAX_WAIT: Duration = Duration::from_millis(250);

/// Whether `message` is one of [`await_subscribed`]'s probes.
pub fn is_probe(message: &BrokerMessage) -> bool {
    message.payload.starts_with(PROBE_PREFIX)
}

/// Waits until `subscription` receives what `publisher` publishes on `channel`.
///
/// Subscribing is asynchronous on real servers: `subscribe` may return before the server routes
/// messages to the new subscription, and a message published in that window is lost (Redis
/// pub/sub is at-most-once). This publishes a probe on `channel` (which must be covered by the
/// subscription), waits a little for it, and repeats with a new probe until the *latest* probe
/// arrives. Because order is kept per publisher, every earlier probe has then either arrived
/// (and was discarded here) or was lost for good, so none can show up later from this publisher.
/// Other subscriptions on the same channel do receive the probes: read them with
/// [`next_message`], which skips probes. Any other message arriving meanwhile is discarded.
///
/// Panics if the subscription is not active within [`DEADLINE`], if it ends, or if publishing
/// fails.
pub async fn await_subscribed<P: Broker + ?Sized>(
    publisher: &P,
    subscription: &mut Subscription,
    channel: &str,
) {
    let deadline = Instant::now() + DEADLINE;
    let mut wait = PROBE_FIRST_WAIT;
    for n in 1u64.. {
        let probe = Bytes::from([PROBE_PREFIX, n.to_string().as_bytes()].concat());
        if let Err(e) = publisher.publish(channel, probe.clone()).await {
            panic!("publishing probe {n} on {channel:?} failed: {e}");
        }
        let window_end = (Instant::now() + wait).min(deadline);
        loop {
            match timeout_at(window_end, subscription.recv()).await {
                Ok(Some(message)) if message.payload == probe => return,
                // An earlier probe (or unrelated traffic): keep waiting for the latest one.
                Ok(Some(_)) => {}
                Ok(None) => {
                    panic!("the subscription ended while waiting for it to receive on {channel:?}")
                }
                Err(_) => break,
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "the subscription did not receive anything published on {channel:?} within \
                 {DEADLINE:?} ({n} probes sent)"
            );
        }
        wait = (wait * 2).min(PROBE_MAX_WAIT);
    }
}

/// The next message that is not a probe, within [`DEADLINE`].
///
/// Panics if none arrives in time or the subscription ends.
pub async fn next_message(subscription: &mut Subscription) -> BrokerMessage {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match timeout_at(deadline, subscription.recv()).await {
            Ok(Some(message)) if is_probe(&message) => {}
            Ok(Some(message)) => return message,
            Ok(None) => panic!("the subscription ended while a message was expected"),
            Err(_) => panic!("no message arrived within {DEADLINE:?}"),
        }
    }
}

/// Waits until the subscription's stream ends (`recv` returns `None`), discarding whatever was
/// still queued. Panics if it does not end within [`DEADLINE`].
pub async fn assert_ends(subscription: &mut Subscription) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match timeout_at(deadline, subscription.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(_) => panic!("the subscription stream did not end within {DEADLINE:?}"),
        }
    }
}

/// Subscribes `broker` to the exact channel `channel` and waits until the subscription receives
/// what `broker` publishes there ([`await_subscribed`]). Panics if subscribing fails.
pub async fn subscribed<B: Broker + ?Sized>(broker: &B, channel: &str) -> Subscription {
    let mut subscription = subscribe(broker, &[ChannelSpec::exact(channel)]).await;
    await_subscribed(broker, &mut subscription, channel).await;
    subscription
}

/// `future`, which must finish within [`DEADLINE`]; panics naming `what` if it does not. For
/// calls whose result a test checks, not how fast they return (a connect that must fail, a
/// publish during an outage).
pub async fn within_deadline<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not return within {DEADLINE:?}"))
}

/// Two brokers (nodes) from `make_broker`, a subscriber and a publisher, and the subscriber's
/// subscription to a new channel labelled `label`, receiving what the publisher publishes.
pub(super) async fn subscribed_pair<M: MakeBroker>(
    make_broker: &M,
    label: &str,
) -> (M::Broker, M::Broker, String, Subscription) {
    let subscriber = make_broker.make().await;
    let publisher = make_broker.make().await;
    let channel = unique_channel(label);
    let mut sub = subscribe(&subscriber, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&publisher, &mut sub, &channel).await;
    (subscriber, publisher, channel, sub)
}

/// Subscribes or panics with the error.
pub async fn subscribe<B: Broker + ?Sized>(broker: &B, specs: &[ChannelSpec]) -> Subscription {
    match broker.subscribe(specs).await {
        Ok(subscription) => subscription,
        Err(e) => panic!("subscribe({specs:?}) failed: {e}"),
    }
}

/// Publishes or panics with the error.
pub async fn publish<B: Broker + ?Sized>(broker: &B, channel: &str, payload: impl Into<Bytes>) {
    if let Err(e) = broker.publish(channel, payload.into()).await {
        panic!("publish on {channel:?} failed: {e}");
    }
}

/// Publishes each of `payloads` on `channel`, in order, or panics with the error.
pub async fn publish_all<B, P>(broker: &B, channel: &str, payloads: impl IntoIterator<Item = P>)
where
    B: Broker + ?Sized,
    P: Into<Bytes>,
{
    for payload in payloads {
        publish(broker, channel, payload).await;
    }
}

/// Asserts that the next non-probe message is `payload` on `channel` from an exact subscription.
pub(super) async fn expect_message(subscription: &mut Subscription, channel: &str, payload: &[u8]) {
    let message = next_message(subscription).await;
    assert_eq!(
        message.channel, channel,
        "message arrived on the wrong channel"
    );
    assert_eq!(
        message.pattern, None,
        "a message of an exact subscription must not carry a pattern"
    );
    assert_eq!(
        message.payload,
        payload,
        "wrong payload on {channel:?}: got {:?}, want {:?}",
        String::from_utf8_lossy(&message.payload),
        String::from_utf8_lossy(payload)
    );
}
