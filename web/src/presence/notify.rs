//! What the sockets of presence rooms receive: the room's state after they join
//! ([`SNAPSHOT_EVENT`]) and the joins and leaves of users, gathered per room for
//! `presence.diff_interval_ms` ([`DIFF_EVENT`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::Notify;

/// The state of a presence room, sent to a socket once it joined the room.
pub(crate) const SNAPSHOT_EVENT: &str = "sidecast:presence";

/// The users who joined and left a presence room, sent to its sockets.
pub(crate) const DIFF_EVENT: &str = "sidecast:presence_diff";

/// The joins and leaves of one room not sent yet: what changed since the last diff, net.
#[derive(Debug, Default)]
struct Pending {
    joins: Joins,
    leaves: BTreeSet<String>,
}

/// Users who joined, with their `info`.
pub(crate) type Joins = BTreeMap<String, Option<Value>>;

/// The pending diffs of every room.
#[derive(Debug, Default)]
pub(crate) struct Diffs {
    rooms: Mutex<HashMap<(String, String), Pending>>,
    pub(crate) ready: Notify,
}

impl Diffs {
    /// Takes every pending diff: (namespace, room) → (joins with their info, leaves).
    pub(crate) fn take(&self) -> Vec<((String, String), Joins, BTreeSet<String>)> {
        std::mem::take(&mut *self.rooms())
            .into_iter()
            .map(|(key, p)| (key, p.joins, p.leaves))
            .collect()
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Pending>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `user` joined `room`.
    pub(crate) fn joined(&self, nsp: &str, room: &str, user: &str, info: Option<Value>) {
        let mut rooms = self.rooms();
        let pending = rooms.entry((nsp.to_owned(), room.to_owned())).or_default();
        // A leave and a join within one interval: no change for the room's sockets.
        if !pending.leaves.remove(user) {
            pending.joins.insert(user.to_owned(), info);
        }
    }

    /// `user` left `room`.
    pub(crate) fn left(&self, nsp: &str, room: &str, user: &str) {
        let mut rooms = self.rooms();
        let pending = rooms.entry((nsp.to_owned(), room.to_owned())).or_default();
        if pending.joins.remove(user).is_none() {
            pending.leaves.insert(user.to_owned());
        }
    }
}
