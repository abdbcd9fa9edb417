//! The broker conformance suite: what every [`Broker`](sidecast_core::Broker) must do, checked against a real backend.
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
//!
//! The suite has a module per capability, and everything is re-exported here, so that every path
//! is `sidecast_testkit::conformance::name`.

mod capabilities;
mod close;
mod factory;
mod history;
mod outages;
mod patterns;
mod pubsub;
mod retention;
mod support;

pub use capabilities::{Capabilities, HistoryBounds};
pub use close::close;
pub use factory::{Connect, MakeBroker, WithServer};
pub use history::{
    append, entries_after, expect_entries, history_declared, history_of, history_offsets,
    history_read_after, history_resume, history_unknown_offsets, history_waits_for_a_slow_consumer,
    next_entry, read_after, subscribe_from,
};
pub use outages::{
    Restartable, first_delivery, history_across_an_outage, publish_error, stop_and_restart,
};
pub use patterns::patterns;
pub use pubsub::{
    ORDER_MESSAGES, binary_payload, dropped_subscription, fan_out, health_connected, large_payload,
    order_per_publisher, round_trip, several_channels,
};
pub use retention::{
    HISTORY_CHECK_MAX_BYTES, HISTORY_CHECK_MAX_ENTRIES, HISTORY_TRIM_SLACK, history_retention,
    history_retention_bytes,
};
pub use support::{
    DEADLINE, PROBE_PREFIX, assert_ends, await_subscribed, is_probe, next_message, publish,
    publish_all, subscribe, subscribed, within_deadline,
};

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
