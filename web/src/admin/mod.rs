//! The Socket.IO Admin UI's namespace (`[admin]`, decisions 38 and 39): the protocol of
//! socket.io's `instrument()` spoken by Sidecast, so that the unchanged `@socket.io/admin-ui`
//! (served from `admin.ui_dir` at `/admin/`, or the hosted copy) shows and acts on a cluster.
//!
//! - `login`: the handshake's `{username, password}` checked with bcrypt, or the signed
//!   `{sessionId}` a login handed out; the per-node limit of password checks.
//! - `namespace`: the namespace itself: its connect middleware (credentials, connection limit),
//!   `config`, the socket lists and changes read from the cluster view (development mode), and
//!   the actions `join`, `leave`, `_disconnect`, published as room operations on the bus.
//! - `stats`: every node's `server_stats`, published on `<broker.channel>:admin` every
//!   `admin.stats_interval_ms` and relayed by every node to its own admin sockets.
//! - `wire`: the shapes the UI reads (`SerializedSocket`, dates).
//! - `ui`: the UI's files at `/admin/`, and CORS for UIs served from `admin.allowed_origins`.
//!
//! Imports: `namespace` → `login`, `wire`; `stats` → `wire`; outside the folder, `presence::view`
//! (the read side of the cluster view), `delivery::emit` (the internal room that keeps bus traffic
//! away from admin sockets) and `identity::origin`.

pub(crate) mod login;
pub(crate) mod namespace;
pub(crate) mod stats;
pub(crate) mod ui;
pub(crate) mod wire;

#[cfg(test)]
mod tests;
