//! Cluster-wide presence: who is in which room, on every node.
//!
//! Every node owns its own sockets' entries and sends what changes on the presence channel
//! (`<broker.channel>:presence`, [`channel`]) as numbered [`wire::Message`]s, with a heartbeat;
//! every process that reads the channel keeps a [`Replica`] of the whole cluster, so reading it
//! asks no other node. A sequence gap or an unknown node makes the reader ask that node for a
//! snapshot; a node that stops says so, and one that misses its heartbeats is dropped, with
//! leaves. [`PresenceClient`] is such a reader for any Rust program (`sidecast presence` uses
//! it); the web node keeps its replica with its own sockets in it.

mod client;
mod replica;
pub mod wire;

pub use client::PresenceClient;
pub use replica::{Event, Member, Received, Replica, RoomPresence};

/// The presence channel of the broker channel `base`.
pub fn channel(base: &str) -> String {
    format!("{base}:presence")
}

/// Which rooms are tracked: `presence.rooms`' glob patterns, never a socket's own-id room, and
/// `user:` rooms only when a pattern starts with `user:`.
#[derive(Debug, Clone, Default)]
pub struct RoomFilter {
    patterns: Vec<String>,
    user_rooms: bool,
}

impl RoomFilter {
    /// The filter of these patterns.
    pub fn new(patterns: &[String]) -> Self {
        Self {
            user_rooms: patterns.iter().any(|p| p.starts_with("user:")),
            patterns: patterns.to_vec(),
        }
    }

    /// Whether presence is on for some room.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `room` is tracked for the socket `sid`.
    pub fn tracks(&self, room: &str, sid: &str) -> bool {
        !self.patterns.is_empty()
            && room != sid
            && (self.user_rooms || !room.starts_with("user:"))
            && self
                .patterns
                .iter()
                .any(|p| crate::glob::matches(p.as_bytes(), room.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_rooms_and_socket_rooms_are_never_tracked_by_default() {
        let filter = RoomFilter::new(&["*".into()]);
        assert!(filter.tracks("chat:1", "sid1"));
        assert!(!filter.tracks("user:ada", "sid1"));
        assert!(!filter.tracks("sid1", "sid1"));
        let filter = RoomFilter::new(&["user:*".into()]);
        assert!(filter.tracks("user:ada", "sid1"));
        assert!(!filter.tracks("chat:1", "sid1"));
        assert!(!RoomFilter::new(&[]).tracks("chat:1", "s"));
    }
}
