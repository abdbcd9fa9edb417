//! Reconnect supervision for broker transports, the pieces every transport would otherwise write
//! again:
//!
//! * [`HealthBoard`] folds the outages of a broker's parts (its connections, its subscriptions'
//!   queues) into one [`BrokerHealth`](crate::BrokerHealth), and tells which transitions are the
//!   broker's own; its [`Part`] guard forgets a part when the task running it ends.
//! * [`OutageLog`] logs each outage once, lost and restored, under the transport's own tracing
//!   target ([`outage_log_target!`](crate::outage_log_target)).
//! * [`Parts`] keeps the two together with the ids of a broker's parts, so that a part reports
//!   a loss or a recovery in one call.
//! * [`Backoff`], the capped exponential delays with jitter between reconnect attempts, and
//!   [`Reconnect`], the loop that makes the attempts.
//! * [`Tasks`], a broker's background tasks with their [`Shutdown`] signal, and [`PumpEnd`], why
//!   a subscription task stopped reading.
//!
//! Any transport can use these, in this workspace or not: the Redis and AMQP transports do, and
//! so does the NATS example broker.

// One job per file; everything is re-exported, so that every path is
// `sidecast_core::supervision::Name`.
mod backoff;
mod board;
mod outage_log;
mod parts;
mod pump;
mod reconnect;
mod tasks;

pub use backoff::Backoff;
pub use board::{AttemptCount, HealthBoard, Lost, Part, PartId, Restored};
pub use outage_log::{LogTarget, OutageEvent, OutageLog};
pub use parts::Parts;
pub use pump::PumpEnd;
pub use reconnect::Reconnect;
pub use tasks::{Shutdown, Tasks};
