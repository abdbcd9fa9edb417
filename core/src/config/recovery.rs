//! `[recovery]`: the history every accepted event goes through, and what clients recover from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::broker::HistoryRetention;

/// `[recovery]`: the broker's history ([`crate::History`]) and connection state recovery.
///
/// With recovery on and a broker that offers a history, every event Sidecast accepts is appended
/// to the history and gets an offset; nodes deliver from the history (and catch up after an
/// outage), and a client that asks with `auth: {offset}` gets each event's offset as its last
/// argument and, when it reconnects with the last one, receives what it missed; every other
/// client gets the events exactly as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Use the broker's history. Off: events travel over pub/sub only, without offsets, and
    /// nothing is recovered (as before the history existed). Every node and every emitter of a
    /// cluster must agree on this setting.
    pub enabled: bool,
    /// How long an event stays recoverable, in seconds (socket.io's `maxDisconnectionDuration`).
    pub max_age_secs: u64,
    /// At most this many events are kept per channel.
    pub max_events: usize,
    /// At most this many bytes of events are kept per channel, where the broker can bound bytes.
    pub max_bytes: usize,
    /// At most this many events are replayed to one reconnecting client; a client that missed
    /// more is told it could not be recovered (`sidecast:recovery` with `"status": "trimmed"`).
    pub max_replay: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        let retention = HistoryRetention::default();
        Self {
            enabled: true,
            max_age_secs: retention.max_age.as_secs(),
            max_events: retention.max_entries,
            max_bytes: retention.max_bytes,
            max_replay: retention.max_entries,
        }
    }
}

impl RecoveryConfig {
    /// The retention these settings ask of the broker's history.
    pub fn retention(&self) -> HistoryRetention {
        HistoryRetention {
            max_age: Duration::from_secs(self.max_age_secs),
            max_entries: self.max_events,
            max_bytes: self.max_bytes,
        }
    }
}
