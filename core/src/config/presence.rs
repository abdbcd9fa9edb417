//! `[presence]`: which rooms are tracked cluster-wide, and the limits of what is listed.

use serde::{Deserialize, Serialize};

/// `[presence]`: cluster-wide presence (who is in a room), opt-in per room pattern.
///
/// Every node owns its own sockets' entries, sends the changes on `<broker.channel>:presence`
/// with a heartbeat, and keeps the whole cluster's view; reading it asks no other node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Glob patterns (`*`, `?`, `[...]`, as Redis matches) of the rooms whose members are
    /// tracked, such as `["chat:*"]`. Empty (the default): presence is off. `user:` rooms and the
    /// rooms named by socket ids are never tracked, unless a pattern starts with `user:`.
    pub rooms: Vec<String>,
    /// At most this many users are listed per room (in the API, the CLI and the snapshot sockets
    /// receive); the counts stay exact beyond it and `truncated` says so.
    pub max_members: usize,
    /// The largest `info` object (serialized JSON, in bytes) a policy may attach to a user; a
    /// larger one is left out, with a warning.
    pub max_info_bytes: usize,
    /// How often each node tells the others it is alive, in milliseconds.
    pub heartbeat_ms: u64,
    /// After this many heartbeats missed in a row, a node's entries are dropped, with leaves.
    pub missed_heartbeats: u32,
    /// How long the changes of a room are gathered before sockets in it receive them as one
    /// `sidecast:presence_diff`, in milliseconds.
    pub diff_interval_ms: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            rooms: Vec::new(),
            max_members: 100,
            max_info_bytes: 2048,
            heartbeat_ms: 5000,
            missed_heartbeats: 3,
            diff_interval_ms: 200,
        }
    }
}

impl PresenceConfig {
    /// Whether presence is on: some room pattern is configured.
    pub fn enabled(&self) -> bool {
        !self.rooms.is_empty()
    }
}
