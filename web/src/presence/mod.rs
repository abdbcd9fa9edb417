//! Cluster-wide presence: every node owns its own sockets' entries, tells the other nodes what
//! changed through the broker, and keeps the whole cluster's view, so that reading it asks no
//! other node. `view` is the read side that the HTTP API, the reserved `sidecast:` events and
//! the admin namespace use; `directory` implements it over the replica.
//!
//! `tracker` is this node's side (the changes its sockets make, hooked into the connect path and
//! the room operations by `delivery`), `sync` the bus task, `notify` the reserved events sent to
//! the sockets of presence rooms (`sync` sends the diffs), `convert` turns replica entries into
//! view records. Imports: `sync` → `tracker` → `notify`, `convert` → `view`; `directory` → `tracker`, `convert`;
//! outside the folder only `metrics` and `identity` (the peer's address). `delivery` and `node`
//! call in; nothing here calls `delivery`, `routes` or `node`.

pub(crate) mod convert;
pub(crate) mod directory;
pub(crate) mod notify;
pub(crate) mod sync;
pub(crate) mod tracker;
pub mod view;

pub use tracker::PresenceOptions;
