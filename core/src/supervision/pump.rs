//! [`PumpEnd`]: why a subscription's reader stopped forwarding messages.

/// Why a subscription task's reader (its "pump": backend messages into the subscription's
/// queue) stopped, which decides what the task does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PumpEnd {
    /// The broker was closed or dropped: the task ends.
    Shutdown,
    /// The consumer dropped its [`Subscription`](crate::Subscription): the task frees the
    /// backend's resources and ends.
    ConsumerGone,
    /// The connection (or the consumer, or its channel) broke, for the reason given: the task
    /// reports the outage and reconnects.
    Lost(String),
}
