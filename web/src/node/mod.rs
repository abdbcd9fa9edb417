//! A node's life: building it from the configuration (`builder`, `from_config`), starting it on
//! its broker (`start`, with `broker`: the handle that fails fast until then, and `gate`: the
//! Socket.IO handshakes refused meanwhile), serving and stopping it (`serve`).
//!
//! Imports go downwards: `node` uses `delivery` (it subscribes the relay and starts recovery)
//! and `identity` (session stores, policies); nothing in `delivery` or `identity` uses `node`.

pub(crate) mod broker;
pub(crate) mod builder;
pub(crate) mod from_config;
pub(crate) mod gate;
pub(crate) mod serve;
pub(crate) mod start;
