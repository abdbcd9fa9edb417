//! The broker conformance suite: what every [`Broker`] must do, checked against a real backend.
//!
//! Each check is a `pub async fn` taking a broker factory ([`MakeBroker`]: any
//! `Fn() -> impl Future<Output = B>` with `B: Broker`) that returns a *fresh broker connected to
//! the same backend* on every call. Several checks use two or more brokers to model separate
//! nodes (a publisher and subscribers). A transport's test file runs every check as a
//! `#[tokio::test]` of its own with [`conformance_tests!`](crate::conformance_tests), so that a
//! failure names the broken behaviour and a check added here reaches every transport:
//!
//! ```no_run
//! # // Mirrors core/tests/conformance_memory.rs.
//! use sidecast_core::MemoryBroker;
//! use sidecast_testkit::conformance::Capabilities;
//!
//! /// A factory of handles on one fresh in-memory backend: the memory broker's "backend" is the
//! /// value itself, and clones share it.
//! fn backend() -> impl Fn() -> std::future::Ready<MemoryBroker> {
//!     let broker = MemoryBroker::default();
//!     move || std::future::ready(broker.clone())
//! }
//!
//! sidecast_testkit::conformance_tests!(backend(), Capabilities::ALL);
//! # fn main() {}
//! ```
//!
//! A factory whose brokers need a test server owns it: [`WithServer`] pairs the two. Each check
//! can also be called on its own, and [`run_all`] runs them all in one go.
//!
//! # Writing checks that do not flake
//!
//! * Channel names are unique per check ([`crate::unique_channel`]), so checks can run in
//!   parallel against one server.
//! * Nothing sleeps to "let things settle". Real servers activate subscriptions asynchronously
//!   (Redis answers `SUBSCRIBE` after it returns), so checks call [`await_subscribed`], which
//!   publishes probe messages until the subscription receives one. Probes are recognisable
//!   ([`is_probe`]) and [`next_message`] skips them.
//! * Every await that depends on the backend is bounded by [`DEADLINE`]; the check panics with a
//!   description of what did not happen instead of hanging.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, timeout, timeout_at};

use sidecast_core::broker::{
    Broker, BrokerError, BrokerHealth, BrokerMessage, ChannelSpec, History, HistoryEntry,
    HistorySubscription, Offset, Replay, Subscription,
};

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

/// Messages published by the ordering check.
pub const ORDER_MESSAGES: usize = 500;

/// What the transport under test can do; checks expecting a capability the transport lacks check
/// that it is refused cleanly instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// [`ChannelSpec::Pattern`] subscriptions work (Redis `PSUBSCRIBE`, the memory broker). When
    /// `false`, subscribing to a pattern must fail with [`BrokerError::Unsupported`].
    pub patterns: bool,
    /// [`Broker::history`] offers a [`History`] (the `history_*` checks run). When `false`, the
    /// broker must report no history ([`history_declared`]) and the other history checks are
    /// skipped.
    pub history: bool,
    /// Which size bounds of [`HistoryRetention`](sidecast_core::HistoryRetention) the history
    /// applies: [`history_retention`] runs when it trims by entries,
    /// [`history_retention_bytes`] when it trims by bytes.
    pub history_bounds: HistoryBounds,
}

/// Which size bounds of [`HistoryRetention`](sidecast_core::HistoryRetention) a history applies
/// (every history applies `max_age`). A backend may be unable to apply one: RabbitMQ streams
/// cannot bound by number of messages, Redis streams cannot bound by bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBounds {
    /// `max_entries` is applied (checked by [`history_retention`]).
    pub entries: bool,
    /// `max_bytes` is applied (checked by [`history_retention_bytes`]).
    pub bytes: bool,
}

impl HistoryBounds {
    /// Trims by `max_entries` only (Redis).
    pub const ENTRIES: Self = Self {
        entries: true,
        bytes: false,
    };
    /// Trims by `max_bytes` only (RabbitMQ).
    pub const BYTES: Self = Self {
        entries: false,
        bytes: true,
    };
    /// Trims by both (the memory broker).
    pub const BOTH: Self = Self {
        entries: true,
        bytes: true,
    };
}

impl Capabilities {
    /// Everything the [`Broker`] trait describes, including patterns and history, whose
    /// retention is checked by entries ([`HistoryBounds::ENTRIES`]; change it with
    /// [`Capabilities::with_history_bounds`]).
    pub const ALL: Self = Self {
        patterns: true,
        history: true,
        history_bounds: HistoryBounds::ENTRIES,
    };
    /// Pub/sub without pattern subscriptions and without history (the NATS example).
    pub const WITHOUT_PATTERNS: Self = Self {
        patterns: false,
        history: false,
        history_bounds: HistoryBounds::ENTRIES,
    };

    /// These capabilities, with or without history.
    pub const fn with_history(self, history: bool) -> Self {
        Self { history, ..self }
    }

    /// These capabilities, with a history that applies `bounds`.
    pub const fn with_history_bounds(self, bounds: HistoryBounds) -> Self {
        Self {
            history_bounds: bounds,
            ..self
        }
    }
}

/// A factory of brokers connected to one backend: every call returns a new broker value, as a new
/// node would create.
///
/// Implemented for every `Fn() -> Fut` where `Fut: Future<Output = B>` and `B: Broker`, so a
/// closure is enough. A factory may also hand out handles to one shared in-process backend
/// (clones of one [`sidecast_core::MemoryBroker`]); see [`run_all`] for what that implies.
pub trait MakeBroker {
    /// The broker type made.
    type Broker: Broker;

    /// A fresh broker, connected. Panics (test code) if it cannot connect.
    fn make(&self) -> impl Future<Output = Self::Broker>;
}

impl<F, Fut, B> MakeBroker for F
where
    F: Fn() -> Fut,
    Fut: Future<Output = B>,
    B: Broker,
{
    type Broker = B;

    fn make(&self) -> impl Future<Output = B> {
        self()
    }
}

/// A factory that connects a new broker from a copy of the same options at each call, with the
/// transport's `connect` function, and panics with the error when that fails (test code):
/// `Connect::new(options, RedisBroker::connect)`.
#[derive(Debug, Clone)]
pub struct Connect<O, F> {
    options: O,
    connect: F,
}

impl<O, F> Connect<O, F> {
    /// A factory calling `connect(options.clone())`.
    pub fn new(options: O, connect: F) -> Self {
        Self { options, connect }
    }

    /// The options each broker is connected with.
    pub fn options(&self) -> &O {
        &self.options
    }
}

impl<O, F, Fut, B, E> MakeBroker for Connect<O, F>
where
    O: Clone,
    F: Fn(O) -> Fut,
    Fut: Future<Output = Result<B, E>>,
    B: Broker,
    E: std::fmt::Display,
{
    type Broker = B;

    async fn make(&self) -> B {
        (self.connect)(self.options.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"))
    }
}

/// A broker factory together with the test server its brokers connect to, so that the server
/// lives as long as the factory: `WithServer::new(RedisServer::start().await, Redis::on)` is one
/// expression for [`conformance_tests!`](crate::conformance_tests).
#[derive(Debug)]
pub struct WithServer<S, M> {
    server: S,
    make: M,
}

impl<S, M: MakeBroker> WithServer<S, M> {
    /// `server` and the factory that `factory` makes for it.
    pub fn new(server: S, factory: impl FnOnce(&S) -> M) -> Self {
        let make = factory(&server);
        Self { server, make }
    }

    /// The server.
    pub fn server(&self) -> &S {
        &self.server
    }
}

impl<S, M: MakeBroker> MakeBroker for WithServer<S, M> {
    type Broker = M::Broker;

    fn make(&self) -> impl Future<Output = M::Broker> {
        self.make.make()
    }
}

/// One `#[tokio::test]` per conformance check, and one that calls [`run_all`]
/// (`conformance::run_all`), in the module where it is invoked.
///
/// `conformance_tests!(factory, capabilities)`: `factory` is an expression evaluated at the start
/// of every test (it may `.await`) that gives a [`MakeBroker`]; a factory whose brokers connect to
/// a test server owns the server (see [`WithServer`]). `capabilities` is a [`Capabilities`].
/// The tests are named after the checks (`round_trip`, `patterns`, ...). The calling crate
/// needs `tokio` with the `macros` and `rt` features, as any `#[tokio::test]` does.
///
/// ```no_run
/// use sidecast_testkit::RedisServer;
/// use sidecast_testkit::conformance::{Capabilities, WithServer};
/// # use sidecast_core::MemoryBroker;
/// # fn connect_to(_server: &RedisServer) -> impl Fn() -> std::future::Ready<MemoryBroker> {
/// #     let broker = MemoryBroker::default();
/// #     move || std::future::ready(broker.clone())
/// # }
///
/// // Every check on a server of its own.
/// sidecast_testkit::conformance_tests!(
///     WithServer::new(RedisServer::start().await, connect_to),
///     Capabilities::ALL
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr, $capabilities:expr $(,)?) => {
        // The checks that take only the factory; keep this list and `run_all` in step with the
        // checks below.
        $crate::conformance_tests!(
            @checks ($factory)
            health_connected round_trip several_channels fan_out order_per_publisher
            large_payload binary_payload dropped_subscription close
        );

        #[::tokio::test]
        async fn patterns() {
            let make = $factory;
            let capabilities: $crate::conformance::Capabilities = $capabilities;
            $crate::conformance::patterns(&make, capabilities.patterns).await;
        }

        #[::tokio::test]
        async fn history_declared() {
            let make = $factory;
            let capabilities: $crate::conformance::Capabilities = $capabilities;
            $crate::conformance::history_declared(&make, capabilities.history).await;
        }

        $crate::conformance_tests!(
            @history ($factory, $capabilities)
            history_offsets history_read_after history_unknown_offsets history_resume
        );

        #[::tokio::test]
        async fn history_retention() {
            let capabilities: $crate::conformance::Capabilities = $capabilities;
            if !capabilities.history || !capabilities.history_bounds.entries {
                return;
            }
            let make = $factory;
            $crate::conformance::history_retention(&make).await;
        }

        #[::tokio::test]
        async fn history_retention_bytes() {
            let capabilities: $crate::conformance::Capabilities = $capabilities;
            if !capabilities.history || !capabilities.history_bounds.bytes {
                return;
            }
            let make = $factory;
            $crate::conformance::history_retention_bytes(&make).await;
        }

        /// The whole suite in one go, as `run_all` runs it.
        #[::tokio::test]
        async fn run_all() {
            let make = $factory;
            $crate::conformance::run_all(&make, $capabilities).await;
        }
    };
    (@history ($factory:expr, $capabilities:expr) $($check:ident)*) => {
        $(
            #[::tokio::test]
            async fn $check() {
                let capabilities: $crate::conformance::Capabilities = $capabilities;
                // Skipped before the factory runs, so that no server starts for nothing.
                if !capabilities.history {
                    return;
                }
                let make = $factory;
                $crate::conformance::$check(&make).await;
            }
        )*
    };
    (@checks ($factory:expr) $($check:ident)*) => {
        $(
            #[::tokio::test]
            async fn $check() {
                let make = $factory;
                $crate::conformance::$check(&make).await;
            }
        )*
    };
}

/// Runs every check, one after the other, expecting the given capabilities.
///
/// [`close`] runs last: with a factory that shares one in-process backend between the brokers it
/// makes, closing one closes them all, so nothing may run after it.
pub async fn run_all<M: MakeBroker>(make_broker: &M, capabilities: Capabilities) {
    health_connected(make_broker).await;
    round_trip(make_broker).await;
    several_channels(make_broker).await;
    fan_out(make_broker).await;
    order_per_publisher(make_broker).await;
    large_payload(make_broker).await;
    binary_payload(make_broker).await;
    patterns(make_broker, capabilities.patterns).await;
    dropped_subscription(make_broker).await;
    history_declared(make_broker, capabilities.history).await;
    if capabilities.history {
        history_offsets(make_broker).await;
        history_read_after(make_broker).await;
        history_unknown_offsets(make_broker).await;
        history_resume(make_broker).await;
        if capabilities.history_bounds.entries {
            history_retention(make_broker).await;
        }
        if capabilities.history_bounds.bytes {
            history_retention_bytes(make_broker).await;
        }
    }
    close(make_broker).await;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

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

/// Publishes numbered messages (`after restart 1`, `after restart 2`, ...) on `channel` until
/// one of them arrives on `subscription`, and returns the moment it did: the first delivery after
/// an outage. A publish that fails (the publisher is still reconnecting) is retried; copies of
/// earlier numbers may still arrive afterwards.
///
/// Panics if nothing arrives within [`DEADLINE`], or if the subscription ends.
pub async fn first_delivery<P: Broker + ?Sized>(
    publisher: &P,
    subscription: &mut Subscription,
    channel: &str,
) -> Instant {
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0u32;
    loop {
        assert!(
            Instant::now() < deadline,
            "no message delivered on {channel:?} within {DEADLINE:?} of the server coming back"
        );
        n += 1;
        let payload = format!("after restart {n}");
        if publisher
            .publish(channel, payload.clone().into())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let window = Instant::now() + Duration::from_millis(100);
        while let Ok(message) = timeout_at(window, subscription.recv()).await {
            let message = message.expect("the stream must survive the outage");
            if message.payload == payload.as_bytes() {
                return Instant::now();
            }
        }
    }
}

/// Two brokers (nodes) from `make_broker`, a subscriber and a publisher, and the subscriber's
/// subscription to a new channel labelled `label`, receiving what the publisher publishes.
async fn subscribed_pair<M: MakeBroker>(
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

/// Publishes on `channel` when that must fail (the server is down, paused, refuses): waits at
/// most [`DEADLINE`] and returns the error. Panics, naming `what`, if the publish succeeds or
/// hangs.
pub async fn publish_error<B: Broker + ?Sized>(
    broker: &B,
    channel: &str,
    what: &str,
) -> BrokerError {
    within_deadline(
        what,
        broker.publish(channel, Bytes::from_static(b"not delivered")),
    )
    .await
    .expect_err(&format!("{what} must fail"))
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
async fn expect_message(subscription: &mut Subscription, channel: &str, payload: &[u8]) {
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

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// A new broker reports [`BrokerHealth::Connected`], and still does after a round trip.
pub async fn health_connected<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    assert_eq!(
        broker.health(),
        BrokerHealth::Connected,
        "health right after connecting"
    );
    let channel = unique_channel("health");
    let mut sub = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&broker, &mut sub, &channel).await;
    publish(&broker, &channel, "ping").await;
    expect_message(&mut sub, &channel, b"ping").await;
    assert_eq!(
        broker.health(),
        BrokerHealth::Connected,
        "health after a round trip"
    );
}

/// A message published by one broker reaches a subscription on another broker, and a broker's
/// own subscription receives what it publishes itself (the one-delivery-path rule).
pub async fn round_trip<M: MakeBroker>(make_broker: &M) {
    let (subscriber, publisher, channel, mut sub) =
        subscribed_pair(make_broker, "round-trip").await;

    publish(
        &publisher,
        &channel,
        r#"{"v":1,"event":"message","data":"Hi"}"#,
    )
    .await;
    expect_message(
        &mut sub,
        &channel,
        br#"{"v":1,"event":"message","data":"Hi"}"#,
    )
    .await;

    // Echo: the subscriber's own publish comes back through its own subscription.
    publish(&subscriber, &channel, "echo").await;
    expect_message(&mut sub, &channel, b"echo").await;
}

/// One subscription to several channels receives each channel's messages, labelled with the
/// channel they were published on.
pub async fn several_channels<M: MakeBroker>(make_broker: &M) {
    let subscriber = make_broker.make().await;
    let publisher = make_broker.make().await;
    let first = unique_channel("several-a");
    let second = unique_channel("several-b");
    let mut sub = subscribe(
        &subscriber,
        &[ChannelSpec::exact(&first), ChannelSpec::exact(&second)],
    )
    .await;
    await_subscribed(&publisher, &mut sub, &first).await;
    await_subscribed(&publisher, &mut sub, &second).await;

    publish(&publisher, &first, "one").await;
    publish(&publisher, &second, "two").await;
    publish(
        &publisher,
        &unique_channel("several-other"),
        "not subscribed",
    )
    .await;
    publish(&publisher, &first, "three").await;
    expect_message(&mut sub, &first, b"one").await;
    expect_message(&mut sub, &second, b"two").await;
    expect_message(&mut sub, &first, b"three").await;
}

/// Subscribers on separate brokers (separate nodes) each receive every message, in order.
pub async fn fan_out<M: MakeBroker>(make_broker: &M) {
    const SUBSCRIBERS: usize = 3;
    const MESSAGES: usize = 20;
    let publisher = make_broker.make().await;
    let channel = unique_channel("fan-out");
    let mut nodes = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let broker = make_broker.make().await;
        let mut sub = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
        // Earlier subscribers see these probes too; next_message skips them.
        await_subscribed(&publisher, &mut sub, &channel).await;
        nodes.push((broker, sub));
    }
    for i in 0..MESSAGES {
        publish(&publisher, &channel, format!("fan-out {i}")).await;
    }
    for (node, (_broker, sub)) in nodes.iter_mut().enumerate() {
        for i in 0..MESSAGES {
            let message = next_message(sub).await;
            assert_eq!(
                message.payload,
                format!("fan-out {i}").as_bytes(),
                "subscriber {node} got messages out of order or lost one"
            );
        }
    }
}

/// [`ORDER_MESSAGES`] messages from one publisher arrive complete and in publish order, while
/// the subscriber reads concurrently.
pub async fn order_per_publisher<M: MakeBroker>(make_broker: &M) {
    // The subscriber is kept alive (dropping a broker may end its subscriptions).
    let (_subscriber, publisher, channel, mut sub) = subscribed_pair(make_broker, "order").await;

    let send = async {
        for i in 0..ORDER_MESSAGES {
            publish(&publisher, &channel, i.to_string()).await;
        }
    };
    let receive = async {
        for i in 0..ORDER_MESSAGES {
            let message = next_message(&mut sub).await;
            assert_eq!(
                String::from_utf8_lossy(&message.payload),
                i.to_string(),
                "message {i} of {ORDER_MESSAGES} out of order (or earlier ones lost)"
            );
        }
    };
    tokio::join!(send, receive);
    assert_eq!(sub.dropped(), 0, "no message may be dropped in this check");
}

/// A 1 MiB payload arrives intact.
pub async fn large_payload<M: MakeBroker>(make_broker: &M) {
    // The subscriber is kept alive (dropping a broker may end its subscriptions).
    let (_subscriber, publisher, channel, mut sub) = subscribed_pair(make_broker, "large").await;

    // Not a constant byte, so that truncation or reordering inside the payload shows.
    let payload: Vec<u8> = (0..1usize << 20)
        .map(|i| u8::try_from(i % 251).unwrap_or_default())
        .collect();
    publish(&publisher, &channel, payload.clone()).await;
    let message = next_message(&mut sub).await;
    assert_eq!(
        message.payload.len(),
        payload.len(),
        "1 MiB payload truncated"
    );
    assert!(
        message.payload == payload,
        "1 MiB payload arrived with the right length but different bytes"
    );
}

/// Payloads are bytes, not text: invalid UTF-8, NUL bytes and the empty payload arrive as sent.
pub async fn binary_payload<M: MakeBroker>(make_broker: &M) {
    // The subscriber is kept alive (dropping a broker may end its subscriptions).
    let (_subscriber, publisher, channel, mut sub) = subscribed_pair(make_broker, "binary").await;

    let every_byte: Vec<u8> = (0..=255u8).rev().collect();
    let invalid_utf8 = vec![0xc3, 0x28, 0xff, 0xfe, 0x00, 0x80];
    for payload in [every_byte, invalid_utf8, Vec::new()] {
        publish(&publisher, &channel, payload.clone()).await;
        let message = next_message(&mut sub).await;
        assert_eq!(
            message.payload, payload,
            "binary payload altered in transit"
        );
    }
}

/// Pattern subscriptions: with `supported`, a message on a matching channel arrives with
/// `pattern: Some(..)` and one on a non-matching channel does not arrive; without, subscribing to
/// a pattern fails with [`BrokerError::Unsupported`].
pub async fn patterns<M: MakeBroker>(make_broker: &M, supported: bool) {
    let subscriber = make_broker.make().await;
    let prefix = unique_channel("pattern");
    let star = format!("{prefix}.*");

    if !supported {
        match subscriber.subscribe(&[ChannelSpec::pattern(&star)]).await {
            Err(BrokerError::Unsupported { .. }) => return,
            Err(e) => panic!("a pattern subscription must be refused as Unsupported, got: {e}"),
            Ok(_) => {
                panic!("the transport is declared without pattern support but accepted a pattern")
            }
        }
    }

    let publisher = make_broker.make().await;
    // Redis glob classes: `[xy]` matches one of x, y; `?` matches exactly one character.
    let class = format!("{prefix}-[xy]?");
    let exact = format!("{prefix}-exact");
    let mut sub = subscribe(
        &subscriber,
        &[
            ChannelSpec::pattern(&star),
            ChannelSpec::pattern(&class),
            ChannelSpec::exact(&exact),
        ],
    )
    .await;
    await_subscribed(&publisher, &mut sub, &format!("{prefix}.probe")).await;
    await_subscribed(&publisher, &mut sub, &format!("{prefix}-x0")).await;
    await_subscribed(&publisher, &mut sub, &exact).await;

    // Non-matching channels first: per-publisher order means that if they had been delivered,
    // they would arrive before the matching message that follows.
    publish(&publisher, &format!("{prefix}-z1"), "no: z not in [xy]").await;
    publish(
        &publisher,
        &format!("{prefix}-x"),
        "no: ? needs one character",
    )
    .await;
    publish(&publisher, &format!("{prefix}_a"), "no: _ is not .").await;
    publish(&publisher, &format!("other.{prefix}.a"), "no: other prefix").await;
    publish(&publisher, &format!("{prefix}.a"), "star").await;
    publish(&publisher, &format!("{prefix}-y7"), "class").await;
    publish(&publisher, &exact, "exact").await;

    // Only the matching channels' messages arrive, in order, each naming the pattern it matched.
    for (payload, channel, pattern) in [
        ("star", format!("{prefix}.a"), &star),
        ("class", format!("{prefix}-y7"), &class),
    ] {
        let message = next_message(&mut sub).await;
        assert_eq!(
            message.payload,
            payload.as_bytes(),
            "a message on a non-matching channel was delivered, or out of order: {message:?}"
        );
        assert_eq!(message.channel, channel);
        assert_eq!(message.pattern.as_deref(), Some(pattern.as_str()));
    }

    expect_message(&mut sub, &exact, b"exact").await;
}

/// Dropping a subscription affects nothing else: another subscription to the same channel on the
/// same broker keeps receiving, and a new subscription made afterwards works.
pub async fn dropped_subscription<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    let publisher = make_broker.make().await;
    let channel = unique_channel("dropped");

    let mut kept = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&publisher, &mut kept, &channel).await;
    let mut doomed = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&publisher, &mut doomed, &channel).await;
    drop(doomed);

    // Traffic after the drop gives the transport the chance to notice it and clean up.
    for i in 0..10 {
        publish(&publisher, &channel, format!("after drop {i}")).await;
    }
    for i in 0..10 {
        expect_message(&mut kept, &channel, format!("after drop {i}").as_bytes()).await;
    }

    let mut fresh = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&publisher, &mut fresh, &channel).await;
    publish(&publisher, &channel, "to both").await;
    expect_message(&mut fresh, &channel, b"to both").await;
    expect_message(&mut kept, &channel, b"to both").await;
    assert_eq!(broker.health(), BrokerHealth::Connected);
}

/// `close()`: the broker reports [`BrokerHealth::Closed`], its subscription streams end (after
/// what was already queued), later publishes and subscribes fail with [`BrokerError::Closed`],
/// and closing again is harmless. A broker with a history: its history subscriptions end too,
/// and later appends fail with [`BrokerError::Closed`].
pub async fn close<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    assert_eq!(broker.health(), BrokerHealth::Connected);
    let channel = unique_channel("close");
    let mut sub = subscribe(&broker, &[ChannelSpec::exact(&channel)]).await;
    await_subscribed(&broker, &mut sub, &channel).await;
    publish(&broker, &channel, "before close").await;
    let mut history_sub = match broker.history() {
        Some(history) => {
            let appended = append_numbered(history, &channel, "before close", 1).await;
            let mut history_sub = subscribe_from(history, &channel, &Offset::START).await;
            expect_entries(&mut history_sub, &appended).await;
            Some(history_sub)
        }
        None => None,
    };

    timeout(DEADLINE, broker.close())
        .await
        .unwrap_or_else(|_| panic!("close() did not return within {DEADLINE:?}"));
    assert_eq!(broker.health(), BrokerHealth::Closed, "health after close");
    assert_ends(&mut sub).await;
    if let (Some(history), Some(history_sub)) = (broker.history(), history_sub.as_mut()) {
        match timeout(DEADLINE, history_sub.recv()).await {
            Ok(None) => {}
            Ok(Some(entry)) => panic!("a history entry arrived after close: {entry:?}"),
            Err(_) => panic!("the history subscription did not end within {DEADLINE:?} of close()"),
        }
        match history.append(&channel, Bytes::from_static(b"late")).await {
            Err(BrokerError::Closed) => {}
            other => panic!("append after close must fail with Closed, got {other:?}"),
        }
    }

    match broker.publish(&channel, Bytes::from_static(b"late")).await {
        Err(BrokerError::Closed) => {}
        other => panic!("publish after close must fail with Closed, got {other:?}"),
    }
    match broker.subscribe(&[ChannelSpec::exact(&channel)]).await {
        Err(BrokerError::Closed) => {}
        Err(e) => panic!("subscribe after close must fail with Closed, got: {e}"),
        Ok(_) => panic!("subscribe after close must fail with Closed, but it succeeded"),
    }
    timeout(DEADLINE, broker.close())
        .await
        .unwrap_or_else(|_| panic!("a second close() did not return within {DEADLINE:?}"));
    assert_eq!(broker.health(), BrokerHealth::Closed);
}

// ---------------------------------------------------------------------------------------------
// History checks (`Capabilities::history`)
// ---------------------------------------------------------------------------------------------

/// Entries beyond [`HistoryRetention::max_entries`](sidecast_core::HistoryRetention) that a
/// history may keep because it trims approximately (Redis trims whole nodes of up to 100
/// entries). [`history_retention`] accepts this many extra entries.
pub const HISTORY_TRIM_SLACK: usize = 150;

/// The largest `max_entries` [`history_retention`] works with: configure the brokers of the
/// conformance factory with a small bound, so that the check stays fast.
pub const HISTORY_CHECK_MAX_ENTRIES: usize = 1_000;

/// The largest `max_bytes` [`history_retention_bytes`] works with: configure the brokers of the
/// conformance factory with a small bound, so that the check stays fast.
pub const HISTORY_CHECK_MAX_BYTES: usize = 256 << 10;

/// Entries [`history_retention_bytes`] appends per `max_bytes` of payload.
const ENTRIES_PER_MAX_BYTES: usize = 64;

/// `broker`'s history, or a panic saying that the broker declared none.
pub fn history_of<B: Broker + ?Sized>(broker: &B) -> &dyn History {
    broker.history().unwrap_or_else(|| {
        panic!("the broker is checked with history, but Broker::history() returned None")
    })
}

/// Appends or panics with the error; returns the offset.
pub async fn append(history: &dyn History, channel: &str, payload: impl Into<Bytes>) -> Offset {
    match within_deadline("append", history.append(channel, payload.into())).await {
        Ok(offset) => offset,
        Err(e) => panic!("append on {channel:?} failed: {e}"),
    }
}

/// Reads after `after` or panics with the error.
pub async fn read_after(
    history: &dyn History,
    channel: &str,
    after: &Offset,
    limit: usize,
) -> Replay {
    match within_deadline("read_after", history.read_after(channel, after, limit)).await {
        Ok(replay) => replay,
        Err(e) => panic!("read_after({channel:?}, {after:?}) failed: {e}"),
    }
}

/// The entries of a read that must find entries; panics on `Trimmed` or `Unknown`.
pub async fn entries_after(
    history: &dyn History,
    channel: &str,
    after: &Offset,
    limit: usize,
) -> Vec<HistoryEntry> {
    match read_after(history, channel, after, limit).await {
        Replay::Entries(entries) => entries,
        other => panic!("read_after({channel:?}, {after:?}) must find entries, got {other:?}"),
    }
}

/// Subscribes after `after` or panics with the error.
pub async fn subscribe_from(
    history: &dyn History,
    channel: &str,
    after: &Offset,
) -> HistorySubscription {
    match within_deadline("subscribe_from", history.subscribe_from(channel, after)).await {
        Ok(subscription) => subscription,
        Err(e) => panic!("subscribe_from({channel:?}, {after:?}) failed: {e}"),
    }
}

/// The next entry of a history subscription, within [`DEADLINE`]; panics if none arrives or the
/// stream ends.
pub async fn next_entry(subscription: &mut HistorySubscription) -> HistoryEntry {
    match timeout(DEADLINE, subscription.recv()).await {
        Ok(Some(entry)) => entry,
        Ok(None) => panic!("the history subscription ended while an entry was expected"),
        Err(_) => panic!("no history entry arrived within {DEADLINE:?}"),
    }
}

/// Asserts that the next entries of `subscription` are exactly `expected` (offset and payload),
/// in order.
pub async fn expect_entries(subscription: &mut HistorySubscription, expected: &[HistoryEntry]) {
    for (i, want) in expected.iter().enumerate() {
        let got = next_entry(subscription).await;
        assert_eq!(
            &got,
            want,
            "history entry {i} of {} wrong (lost, duplicated or out of order)",
            expected.len()
        );
    }
}

/// Two brokers (nodes) from `make_broker` and a new channel labelled `label`.
async fn two_nodes<M: MakeBroker>(make_broker: &M, label: &str) -> (M::Broker, M::Broker, String) {
    let first = make_broker.make().await;
    let second = make_broker.make().await;
    (first, second, unique_channel(label))
}

/// Appends `count` entries `"{label} {i}"` and returns them with their offsets.
async fn append_numbered(
    history: &dyn History,
    channel: &str,
    label: &str,
    count: usize,
) -> Vec<HistoryEntry> {
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let payload = Bytes::from(format!("{label} {i}"));
        let offset = append(history, channel, payload.clone()).await;
        entries.push(HistoryEntry { offset, payload });
    }
    entries
}

/// [`Broker::capabilities`] and [`Broker::history`] agree with what the broker is checked with:
/// a broker declared without history reports none (a documented absence), one with history
/// reports it.
pub async fn history_declared<M: MakeBroker>(make_broker: &M, declared: bool) {
    let broker = make_broker.make().await;
    assert_eq!(
        broker.capabilities().history,
        declared,
        "Broker::capabilities().history disagrees with the capabilities checked"
    );
    assert_eq!(
        broker.history().is_some(),
        declared,
        "Broker::history() disagrees with the capabilities checked"
    );
}

/// Offsets are assigned by the shared backend: increasing in append order (as strings), the
/// same on every node, whichever node appended; [`History::last_offset`] is the newest one (or a
/// later position with nothing after it).
pub async fn history_offsets<M: MakeBroker>(make_broker: &M) {
    let (first, second, channel) = two_nodes(make_broker, "history-offsets").await;
    let (a, b) = (history_of(&first), history_of(&second));
    assert_eq!(
        a.last_offset(&channel).await.ok().flatten(),
        None,
        "a channel nothing was appended to has no last offset"
    );

    // Both nodes append, one after the other.
    let mut appended = Vec::new();
    for i in 0..10 {
        let (node, history) = if i % 2 == 0 { ("a", a) } else { ("b", b) };
        let payload = Bytes::from(format!("{node} {i}"));
        let offset = append(history, &channel, payload.clone()).await;
        appended.push(HistoryEntry { offset, payload });
    }
    for pair in appended.windows(2) {
        assert!(
            pair[0].offset < pair[1].offset,
            "offsets must increase (as strings) in append order: {:?} then {:?}",
            pair[0].offset,
            pair[1].offset
        );
    }
    assert!(
        Offset::START < appended[0].offset,
        "START is before every offset"
    );
    let newest = appended.last().map(|e| e.offset.clone());
    for (node, history) in [("a", a), ("b", b)] {
        // The newest offset, or a later position (History::last_offset) after which there is
        // nothing yet.
        let last = match history.last_offset(&channel).await {
            Ok(Some(last)) => last,
            other => panic!("last_offset on node {node} after 10 appends: {other:?}"),
        };
        assert!(
            newest.as_ref().is_some_and(|newest| &last >= newest),
            "last_offset on node {node} is {last:?}, before the newest entry {newest:?}"
        );
        assert_eq!(
            read_after(history, &channel, &last, 10).await,
            Replay::Entries(Vec::new()),
            "nothing after last_offset on node {node}"
        );
        // Every node reads every entry with the offset the appending node got.
        let read = entries_after(history, &channel, &Offset::START, 100).await;
        assert_eq!(read, appended, "node {node} read other offsets or payloads");
    }
}

/// [`History::read_after`] gives the entries after an offset, oldest first, bounded by `limit`;
/// after the newest offset it gives nothing (not `Trimmed`, not `Unknown`).
pub async fn history_read_after<M: MakeBroker>(make_broker: &M) {
    let (writer, reader, channel) = two_nodes(make_broker, "history-read").await;
    let appended = append_numbered(history_of(&writer), &channel, "read", 20).await;
    let history = history_of(&reader);

    let read = entries_after(history, &channel, &appended[4].offset, 5).await;
    assert_eq!(read, appended[5..10], "read_after(offset 4, limit 5)");

    // Paging with a limit collects everything, once, in order.
    let mut collected = Vec::new();
    let mut after = Offset::START;
    loop {
        let page = entries_after(history, &channel, &after, 7).await;
        assert!(page.len() <= 7, "read_after returned more than its limit");
        let Some(last) = page.last() else { break };
        after = last.offset.clone();
        collected.extend(page);
    }
    assert_eq!(collected, appended, "paging through the history");

    let newest = &appended[19].offset;
    assert_eq!(
        read_after(history, &channel, newest, 10).await,
        Replay::Entries(Vec::new()),
        "after the newest offset there is nothing newer"
    );
}

/// Offsets the history never assigned are [`Replay::Unknown`]: a malformed string, and an offset
/// of another channel on a channel that has no history. [`Offset::START`] on such a channel finds
/// nothing, without error.
pub async fn history_unknown_offsets<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    let history = history_of(&broker);
    let channel = unique_channel("history-unknown");
    let fresh = unique_channel("history-fresh");
    let appended = append_numbered(history, &channel, "known", 3).await;

    for bad in [
        "not an offset",
        "-1",
        "\u{0}",
        "99999999999999999999999999999999999999999999999",
    ] {
        assert_eq!(
            read_after(history, &channel, &Offset::new(bad), 10).await,
            Replay::Unknown,
            "read_after({bad:?}) on a channel with entries"
        );
    }
    assert_eq!(
        read_after(history, &fresh, &appended[1].offset, 10).await,
        Replay::Unknown,
        "an offset of another channel, on a channel without history"
    );
    assert_eq!(
        read_after(history, &fresh, &Offset::START, 10).await,
        Replay::Entries(Vec::new()),
        "START on a channel without history"
    );
}

/// A history subscription delivers every entry after its offset exactly once, in order, with its
/// offset: first the entries already held, then new ones. A node that restarts its subscription
/// from the last offset it got loses nothing and sees nothing twice, whichever node appended.
pub async fn history_resume<M: MakeBroker>(make_broker: &M) {
    let (writer, node, channel) = two_nodes(make_broker, "history-resume").await;
    let (w, history) = (history_of(&writer), history_of(&node));

    let mut appended = append_numbered(w, &channel, "before", 10).await;
    let mut sub = subscribe_from(history, &channel, &appended[2].offset).await;
    expect_entries(&mut sub, &appended[3..]).await;
    // Live: appended while subscribed.
    let live = append_numbered(w, &channel, "live", 5).await;
    expect_entries(&mut sub, &live).await;
    appended.extend(live);
    let last_seen = appended[appended.len() - 1].offset.clone();
    drop(sub);

    // Appended while the node was away.
    let missed = append_numbered(w, &channel, "missed", 7).await;
    let mut sub = subscribe_from(history, &channel, &last_seen).await;
    expect_entries(&mut sub, &missed).await;
    // Nothing else is queued: the next entry is the one appended next.
    let next = append_numbered(w, &channel, "next", 1).await;
    expect_entries(&mut sub, &next).await;
    appended.extend(missed);
    appended.extend(next);

    // From the start: everything, in order.
    let mut all = subscribe_from(history, &channel, &Offset::START).await;
    expect_entries(&mut all, &appended).await;
}

/// Retention: with more entries than [`HistoryRetention::max_entries`](sidecast_core::HistoryRetention)
/// appended, the newest `max_entries` are still readable, entries older than that (give or take
/// [`HISTORY_TRIM_SLACK`]) are trimmed, and reading after a trimmed offset (or after
/// [`Offset::START`]) says [`Replay::Trimmed`].
///
/// Needs brokers configured with `max_entries` of at most [`HISTORY_CHECK_MAX_ENTRIES`].
pub async fn history_retention<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    let history = history_of(&broker);
    let max = history.retention().max_entries;
    assert!(
        max > 0 && max <= HISTORY_CHECK_MAX_ENTRIES,
        "history_retention needs brokers configured with 1..={HISTORY_CHECK_MAX_ENTRIES} \
         max_entries, not {max}"
    );
    let channel = unique_channel("history-retention");
    let total = max + HISTORY_TRIM_SLACK + 50;
    let appended = append_numbered(history, &channel, "kept", total).await;

    assert_eq!(
        read_after(history, &channel, &appended[0].offset, 10).await,
        Replay::Trimmed,
        "after the first of {total} entries with max_entries {max}"
    );
    assert_eq!(
        read_after(history, &channel, &Offset::START, 10).await,
        Replay::Trimmed,
        "after START once entries were trimmed"
    );
    let too_old = &appended[total - max - HISTORY_TRIM_SLACK - 1].offset;
    assert_eq!(
        read_after(history, &channel, too_old, 10).await,
        Replay::Trimmed,
        "more than max_entries + {HISTORY_TRIM_SLACK} entries kept"
    );
    // Read after the oldest of the newest `max_entries`, not before it: a backend that cannot
    // tell the last trimmed offset from older ones reports that one as Trimmed (see Replay).
    let newest_kept = entries_after(history, &channel, &appended[total - max].offset, total).await;
    assert_eq!(
        newest_kept,
        appended[total - max + 1..],
        "the newest max_entries ({max}) entries must stay readable"
    );
}

/// A replay in a few words: the offsets of its entries rather than their payloads.
fn summary(replay: &Replay) -> String {
    match replay {
        Replay::Entries(entries) => match (entries.first(), entries.last()) {
            (Some(first), Some(last)) => format!(
                "{} entries, offsets {} to {}",
                entries.len(),
                first.offset,
                last.offset
            ),
            _ => "no entries".to_owned(),
        },
        other => format!("{other:?}"),
    }
}

/// Retention by bytes: with three times [`HistoryRetention::max_bytes`](sidecast_core::HistoryRetention)
/// of payload appended, the newest half of `max_bytes` is still readable, entries older than
/// twice `max_bytes` (counted from the newest) are trimmed, and reading after a trimmed offset
/// (or after [`Offset::START`]) says [`Replay::Trimmed`].
///
/// The slack (half to twice the bound) is for backends that trim approximately and count bytes
/// their own way: RabbitMQ deletes whole segments and counts bytes on disk, per-message overhead
/// included. Trimming may also lag behind the appends (RabbitMQ trims in the background), so the
/// trimmed offsets are polled until [`DEADLINE`].
///
/// Needs brokers configured with `max_bytes` of at most [`HISTORY_CHECK_MAX_BYTES`].
pub async fn history_retention_bytes<M: MakeBroker>(make_broker: &M) {
    let broker = make_broker.make().await;
    let history = history_of(&broker);
    let max = history.retention().max_bytes;
    assert!(
        max > 0 && max <= HISTORY_CHECK_MAX_BYTES,
        "history_retention_bytes needs brokers configured with 1..={HISTORY_CHECK_MAX_BYTES} \
         max_bytes, not {max}"
    );
    let channel = unique_channel("history-retention-bytes");
    let size = (max / ENTRIES_PER_MAX_BYTES).max(1);
    let total = 3 * ENTRIES_PER_MAX_BYTES;
    let mut appended = Vec::with_capacity(total);
    for i in 0..total {
        // Fixed-size payloads, numbered so that each is told apart.
        let mut payload = format!("{i:08} ").into_bytes();
        payload.resize(size.max(payload.len()), b'.');
        let payload = Bytes::from(payload);
        let offset = append(history, &channel, payload.clone()).await;
        appended.push(HistoryEntry { offset, payload });
    }
    // The index of the oldest entry such that it and everything newer hold at least `bytes` of
    // payload.
    let newest_holding = |bytes: usize| {
        let mut held = 0;
        for i in (0..total).rev() {
            held += appended[i].payload.len();
            if held >= bytes {
                return i;
            }
        }
        0
    };

    let too_old = newest_holding(2 * max + 1);
    let deadline = Instant::now() + DEADLINE;
    for (after, what) in [
        (&appended[0].offset, "after the first entry"),
        (&Offset::START, "after START"),
        (
            &appended[too_old].offset,
            "after an entry older than twice max_bytes",
        ),
    ] {
        loop {
            match read_after(history, &channel, after, 10).await {
                Replay::Trimmed => break,
                other if Instant::now() >= deadline => panic!(
                    "{what}, with {} bytes appended and max_bytes {max}: expected Trimmed \
                     within {DEADLINE:?}, got {}",
                    total * size,
                    summary(&other)
                ),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    // Read after the entry before the newest half of max_bytes: a backend that cannot tell the
    // last trimmed offset from older ones reports that one as Trimmed (see Replay).
    let kept = newest_holding(max / 2);
    let newest_kept = entries_after(history, &channel, &appended[kept - 1].offset, total).await;
    assert_eq!(
        newest_kept,
        appended[kept..],
        "the newest half of max_bytes ({max}) must stay readable"
    );
}

/// A history reader on one broker while another appends, and the backend goes away and comes
/// back in the middle (`outage(false)` takes it down, `outage(true)` brings it back and returns
/// once it answers): every append that was acknowledged reaches the reader once and in order,
/// with the offset the writer got, after the reader resumed by itself within about a second
/// (its backoff is capped at 1 s). Appends during the outage must fail transiently. Not part of
/// [`run_all`]: it needs a backend the test can stop; each transport runs it on its own server.
pub async fn history_across_an_outage<B: Broker>(
    writer: &B,
    reader: &B,
    mut outage: impl AsyncFnMut(bool),
) {
    const BEFORE: usize = 100;
    const DURING: usize = 20;
    const AFTER: usize = 100;
    let channel = unique_channel("history-outage");
    let mut sub = subscribe_from(history_of(reader), &channel, &Offset::START).await;
    let history = history_of(writer);

    let mut acknowledged: Vec<(Offset, String)> = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    let mut append = async |acknowledged: &mut Vec<(Offset, String)>| {
        n += 1;
        let payload = format!("entry {n}");
        match within_deadline("append", history.append(&channel, payload.clone().into())).await {
            Ok(offset) => {
                acknowledged.push((offset, payload));
                true
            }
            Err(e) => {
                assert!(
                    e.is_transient(),
                    "an append in an outage fails transiently: {e}"
                );
                false
            }
        }
    };
    while acknowledged.len() < BEFORE {
        assert!(append(&mut acknowledged).await, "append before the outage");
    }
    outage(false).await;
    // The reader noticed, so that its resume time below is measured from a real outage.
    crate::await_reconnecting(reader, "the reader lost its connection", |_| true).await;
    for _ in 0..DURING {
        if !append(&mut acknowledged).await {
            refused += 1;
        }
    }
    outage(true).await;
    let back_up = Instant::now();
    crate::eventually("the reader resumed", || reader.health().is_connected()).await;
    let resumed_after = back_up.elapsed();
    let target = acknowledged.len() + AFTER;
    while acknowledged.len() < target {
        if !append(&mut acknowledged).await {
            refused += 1;
            crate::eventually("the writer connected again", || {
                writer.health().is_connected()
            })
            .await;
        }
    }

    for (i, (offset, payload)) in acknowledged.iter().enumerate() {
        let entry = next_entry(&mut sub).await;
        assert_eq!(
            (&entry.offset, entry.payload.as_ref()),
            (offset, payload.as_bytes()),
            "entry {i} of {} acknowledged: lost, duplicated or out of order",
            acknowledged.len()
        );
    }
    eprintln!(
        "history across an outage: {} acknowledged appends, {refused} refused during the outage, \
         all read once and in order; the reader resumed {resumed_after:?} after the backend \
         answered again",
        acknowledged.len(),
    );
    assert!(
        resumed_after < Duration::from_secs(2),
        "the history reader must resume within about a second of the backend answering (backoff \
         cap 1 s), took {resumed_after:?}"
    );
    assert_eq!(reader.health(), BrokerHealth::Connected);
    // Nothing else is queued: the next entry is the one appended next.
    assert!(append(&mut acknowledged).await, "append after the check");
    let (offset, payload) = acknowledged.last().expect("just appended");
    let entry = next_entry(&mut sub).await;
    assert_eq!(
        (&entry.offset, entry.payload.as_ref()),
        (offset, payload.as_bytes())
    );
}
