//! Cluster-wide presence: every node owns its own sockets' entries, tells the other nodes what
//! changed through the broker, and keeps the whole cluster's view, so that reading it asks no
//! other node. `view` is the read side that the HTTP API, the reserved `sidecast:` events and
//! the admin namespace use.
//!
//! Imports go one way: `presence` uses `delivery` and `identity`, never `routes` or `admin`.

pub mod view;
