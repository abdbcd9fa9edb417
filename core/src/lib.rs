//! Sidecast core: the pieces every Sidecast crate shares, with no web framework, Socket.IO crate
//! or broker client in sight.
//!
//! * [`Broker`]: bytes on named channels, with [`MemoryBroker`] built in; Redis and AMQP live in
//!   their own crates.
//! * [`Envelope`] and the [`codec`]s that turn broker payloads into events; the [`ingress`] codecs
//!   read the formats of existing emitters (python-socketio, Node's redis-emitter).
//! * [`AuthPolicy`]: the auth contract; the built-in policies implement it in `sidecast-auth`.
//! * [`Emitter`]: publish events and room operations from any Rust program; [`rooms`]: the rules
//!   for room names and operations.
//! * [`config`]: the configuration types and their loading.
//! * [`presence`]: cluster-wide presence, its bus messages and a reader of them.
//! * [`supervision`]: what transports share to reconnect and report their health.

pub mod auth;
pub mod broker;
pub mod codec;
pub mod config;
pub mod emitter;
pub mod envelope;
pub mod glob;
pub mod ingress;
pub mod memory;
pub mod presence;
pub mod rooms;
pub mod signing;
pub mod supervision;

pub use auth::{
    Action, AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal, RefusalKind,
};
pub use broker::{
    Broker, BrokerCapabilities, BrokerError, BrokerHealth, BrokerMessage, BrokerUrl, ChannelSpec,
    Delivery, Explained, History, HistoryEntry, HistoryRetention, HistorySubscription, Offset,
    Replay, SharedBroker, Subscription, SubscriptionSender,
};
pub use config::Config;
pub use emitter::{EmitError, Emitter};
pub use envelope::Envelope;
pub use memory::MemoryBroker;
pub use signing::{SignatureError, Signer};

/// What the macros of this crate expand to in other crates; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use tracing;
}
