//! [`Replica`]: the cluster's presence as one process knows it — every node's sockets, the
//! users of every tracked room — kept up to date from the presence channel's messages, with the
//! sequence checks that turn a lost message into a snapshot request.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use super::wire::{Change, Entry, Message};

/// A socket's key: its namespace and id.
type SocketKey = (String, String);

/// What a node is known to own.
#[derive(Debug, Default)]
struct NodeState {
    /// The sequence number of its last change applied.
    seq: u64,
    /// When it was last heard of, in milliseconds since the Unix epoch.
    last_seen_ms: u64,
    sockets: HashMap<SocketKey, Entry>,
}

/// A user in a room.
#[derive(Debug, Default)]
struct UserState {
    connections: usize,
    info: Option<Value>,
}

/// The members of one room.
#[derive(Debug, Default)]
struct RoomState {
    users: BTreeMap<String, UserState>,
    /// Every connection, with or without a user.
    connections: usize,
}

/// A change of the replica, in the order it was applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A socket became known.
    SocketConnected {
        /// Its node.
        node: String,
        /// The socket.
        entry: Entry,
    },
    /// A socket is gone.
    SocketDisconnected {
        /// Its node.
        node: String,
        /// Its namespace.
        nsp: String,
        /// Its id.
        sid: String,
        /// Why.
        reason: String,
    },
    /// A socket joined a tracked room.
    RoomJoined {
        /// Its namespace.
        nsp: String,
        /// The room.
        room: String,
        /// Its id.
        sid: String,
    },
    /// A socket left a tracked room.
    RoomLeft {
        /// Its namespace.
        nsp: String,
        /// The room.
        room: String,
        /// Its id.
        sid: String,
    },
    /// A user's first connection in a room: a join (a second tab is not one).
    UserJoined {
        /// The namespace.
        nsp: String,
        /// The room.
        room: String,
        /// The user.
        user: String,
        /// The user's `info`.
        info: Option<Value>,
    },
    /// A user's last connection in a room left: a leave.
    UserLeft {
        /// The namespace.
        nsp: String,
        /// The room.
        room: String,
        /// The user.
        user: String,
    },
    /// A node's state became known.
    NodeUp {
        /// The node.
        node: String,
    },
    /// A node stopped or missed its heartbeats.
    NodeDown {
        /// The node.
        node: String,
    },
}

/// One user of a room, as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// The user.
    pub user: String,
    /// How many of its connections are in the room, on every node.
    pub connections: usize,
    /// The `info` its policy attached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<Value>,
}

/// Who is in a room: the answer of `GET /api/presence`, `sidecast presence` and the
/// `sidecast:presence` snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomPresence {
    /// The room.
    pub room: String,
    /// Its users, by name, at most `presence.max_members` of them.
    pub users: Vec<Member>,
    /// How many users are in it (exact, even past the listed ones).
    pub user_count: usize,
    /// How many connections are in it (exact).
    pub connection_count: usize,
    /// Whether users were left out of `users`.
    pub truncated: bool,
}

/// What receiving a message asks of the receiver.
#[derive(Debug, Default)]
pub struct Received {
    /// The changes it made.
    pub events: Vec<Event>,
    /// A node whose state must be asked for (unknown, or a message of its was lost).
    pub ask: Option<String>,
    /// Someone asked for this process's state.
    pub answer: bool,
}

/// The cluster's presence as one process knows it.
#[derive(Debug)]
pub struct Replica {
    /// This process's id: its own messages are skipped when they come back.
    me: String,
    nodes: HashMap<String, NodeState>,
    rooms: HashMap<SocketKey, RoomState>,
    /// When a node's state was last asked for, so that it is asked once per interval.
    asked: HashMap<String, u64>,
    /// How long to wait before asking a node again, in milliseconds.
    ask_interval_ms: u64,
    sockets: usize,
}

impl Replica {
    /// An empty replica for process `me`, asking a node's state at most once per
    /// `ask_interval_ms`.
    pub fn new(me: impl Into<String>, ask_interval_ms: u64) -> Self {
        Self {
            me: me.into(),
            nodes: HashMap::new(),
            rooms: HashMap::new(),
            asked: HashMap::new(),
            ask_interval_ms,
            sockets: 0,
        }
    }

    /// This process's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Applies a message of the presence channel received at `now_ms`.
    pub fn receive(&mut self, message: Message, now_ms: u64) -> Received {
        let mut received = Received::default();
        match message {
            Message::SnapshotRequest { node, to } => {
                received.answer = node != self.me && to.is_none_or(|to| to == self.me);
            }
            Message::Heartbeat { node, seq, .. } if node != self.me => {
                match self.nodes.get_mut(&node) {
                    Some(state) => {
                        state.last_seen_ms = now_ms;
                        if seq > state.seq {
                            received.ask = self.ask(node, now_ms);
                        }
                    }
                    None => received.ask = self.ask(node, now_ms),
                }
            }
            Message::Delta { node, seq, changes } if node != self.me => {
                match self.nodes.get_mut(&node) {
                    Some(state) if seq <= state.seq => state.last_seen_ms = now_ms,
                    Some(state) if seq == state.seq + 1 => {
                        state.last_seen_ms = now_ms;
                        state.seq = seq;
                        for change in changes {
                            self.apply(&node, change, &mut received.events);
                        }
                    }
                    // A gap, or a node not known yet: its state is asked for, and this waits.
                    _ => received.ask = self.ask(node, now_ms),
                }
            }
            Message::Snapshot { node, seq, sockets } if node != self.me => {
                self.snapshot(node, seq, sockets, now_ms, &mut received.events);
            }
            Message::Stop { node } if node != self.me => {
                self.drop_node(&node, "node stopped", &mut received.events);
            }
            _ => {}
        }
        received
    }

    /// Whether to ask `node` for its state now.
    fn ask(&mut self, node: String, now_ms: u64) -> Option<String> {
        match self.asked.get(&node) {
            Some(at) if now_ms.saturating_sub(*at) < self.ask_interval_ms => None,
            _ => {
                self.asked.insert(node.clone(), now_ms);
                Some(node)
            }
        }
    }

    /// Applies a change of this process's own node (`me`), as it happens.
    pub fn apply_own(&mut self, change: Change, now_ms: u64) -> Vec<Event> {
        let me = self.me.clone();
        let mut events = Vec::new();
        if !self.nodes.contains_key(&me) {
            self.nodes.insert(me.clone(), NodeState::default());
        }
        if let Some(state) = self.nodes.get_mut(&me) {
            state.last_seen_ms = now_ms;
        }
        self.apply(&me, change, &mut events);
        events
    }

    /// Records that this process's own node sent its change `seq`.
    pub fn set_own_seq(&mut self, seq: u64) {
        if let Some(state) = self.nodes.get_mut(&self.me) {
            state.seq = seq;
        }
    }

    /// Replaces `node`'s sockets with those of its snapshot.
    fn snapshot(
        &mut self,
        node: String,
        seq: u64,
        sockets: Vec<Entry>,
        now_ms: u64,
        events: &mut Vec<Event>,
    ) {
        self.asked.remove(&node);
        if !self.nodes.contains_key(&node) {
            self.nodes.insert(node.clone(), NodeState::default());
            events.push(Event::NodeUp { node: node.clone() });
        }
        let mut incoming: HashMap<SocketKey, Entry> = sockets
            .into_iter()
            .map(|e| ((e.nsp.clone(), e.sid.clone()), e))
            .collect();
        let known: Vec<SocketKey> = self.nodes[&node].sockets.keys().cloned().collect();
        for key in known {
            match incoming.remove(&key) {
                None => self.apply(
                    &node,
                    Change::Disconnect {
                        nsp: key.0,
                        sid: key.1,
                        user: None,
                        reason: "gone".into(),
                    },
                    events,
                ),
                Some(entry) => self.update(&node, entry, events),
            }
        }
        for (_, entry) in incoming {
            self.apply(&node, Change::Connect { socket: entry }, events);
        }
        if let Some(state) = self.nodes.get_mut(&node) {
            state.seq = seq;
            state.last_seen_ms = now_ms;
        }
    }

    /// Brings a known socket in line with its entry in a snapshot.
    fn update(&mut self, node: &str, entry: Entry, events: &mut Vec<Event>) {
        let key = (entry.nsp.clone(), entry.sid.clone());
        let Some(old) = self.nodes.get(node).and_then(|n| n.sockets.get(&key)) else {
            return;
        };
        if old.user != entry.user || old.info != entry.info {
            // Another socket under the same id: seen as a new one.
            self.apply(
                node,
                Change::Disconnect {
                    nsp: key.0,
                    sid: key.1,
                    user: None,
                    reason: "gone".into(),
                },
                events,
            );
            self.apply(node, Change::Connect { socket: entry }, events);
            return;
        }
        let left: Vec<String> = old.rooms.difference(&entry.rooms).cloned().collect();
        let joined: Vec<String> = entry.rooms.difference(&old.rooms).cloned().collect();
        let transport = (old.transport != entry.transport).then(|| entry.transport.clone());
        for room in left {
            let change = Change::Leave {
                nsp: key.0.clone(),
                sid: key.1.clone(),
                user: None,
                room,
            };
            self.apply(node, change, events);
        }
        for room in joined {
            let change = Change::Join {
                nsp: key.0.clone(),
                sid: key.1.clone(),
                user: None,
                room,
            };
            self.apply(node, change, events);
        }
        if let Some(transport) = transport {
            let change = Change::Transport {
                nsp: key.0,
                sid: key.1,
                transport,
            };
            self.apply(node, change, events);
        }
    }

    /// Applies one change of `node`'s.
    fn apply(&mut self, node: &str, change: Change, events: &mut Vec<Event>) {
        let Some(state) = self.nodes.get_mut(node) else {
            return;
        };
        match change {
            Change::Connect { socket } => {
                let key = (socket.nsp.clone(), socket.sid.clone());
                if state.sockets.contains_key(&key) {
                    return;
                }
                state.sockets.insert(key, socket.clone());
                self.sockets += 1;
                events.push(Event::SocketConnected {
                    node: node.to_owned(),
                    entry: socket.clone(),
                });
                for room in &socket.rooms {
                    self.enter(&socket, room, events);
                }
            }
            Change::Disconnect {
                nsp, sid, reason, ..
            } => {
                let Some(socket) = state.sockets.remove(&(nsp.clone(), sid.clone())) else {
                    return;
                };
                self.sockets -= 1;
                for room in &socket.rooms {
                    self.exit(&socket, room, events);
                }
                events.push(Event::SocketDisconnected {
                    node: node.to_owned(),
                    nsp,
                    sid,
                    reason,
                });
            }
            Change::Join { nsp, sid, room, .. } => {
                let Some(socket) = state.sockets.get_mut(&(nsp, sid)) else {
                    return;
                };
                if socket.rooms.insert(room.clone()) {
                    let socket = socket.clone();
                    self.enter(&socket, &room, events);
                }
            }
            Change::Leave { nsp, sid, room, .. } => {
                let Some(socket) = state.sockets.get_mut(&(nsp, sid)) else {
                    return;
                };
                if socket.rooms.remove(&room) {
                    let socket = socket.clone();
                    self.exit(&socket, &room, events);
                }
            }
            Change::Transport {
                nsp,
                sid,
                transport,
            } => {
                if let Some(socket) = state.sockets.get_mut(&(nsp, sid)) {
                    socket.transport = transport;
                }
            }
        }
    }

    /// `socket` entered `room`.
    fn enter(&mut self, socket: &Entry, room: &str, events: &mut Vec<Event>) {
        events.push(Event::RoomJoined {
            nsp: socket.nsp.clone(),
            room: room.to_owned(),
            sid: socket.sid.clone(),
        });
        let state = self
            .rooms
            .entry((socket.nsp.clone(), room.to_owned()))
            .or_default();
        state.connections += 1;
        if let Some(user) = &socket.user {
            let member = state.users.entry(user.clone()).or_default();
            member.connections += 1;
            if socket.info.is_some() {
                member.info.clone_from(&socket.info);
            }
            if member.connections == 1 {
                events.push(Event::UserJoined {
                    nsp: socket.nsp.clone(),
                    room: room.to_owned(),
                    user: user.clone(),
                    info: member.info.clone(),
                });
            }
        }
    }

    /// `socket` left `room`.
    fn exit(&mut self, socket: &Entry, room: &str, events: &mut Vec<Event>) {
        let key = (socket.nsp.clone(), room.to_owned());
        if let Some(state) = self.rooms.get_mut(&key) {
            state.connections = state.connections.saturating_sub(1);
            if let Some(user) = &socket.user
                && let Some(member) = state.users.get_mut(user)
            {
                member.connections -= 1;
                if member.connections == 0 {
                    state.users.remove(user);
                    events.push(Event::UserLeft {
                        nsp: socket.nsp.clone(),
                        room: room.to_owned(),
                        user: user.clone(),
                    });
                }
            }
            if state.connections == 0 {
                self.rooms.remove(&key);
            }
        }
        events.push(Event::RoomLeft {
            nsp: socket.nsp.clone(),
            room: room.to_owned(),
            sid: socket.sid.clone(),
        });
    }

    /// Drops `node` and its sockets, with leaves.
    fn drop_node(&mut self, node: &str, reason: &str, events: &mut Vec<Event>) {
        self.asked.remove(node);
        let Some(state) = self.nodes.get(node) else {
            return;
        };
        let keys: Vec<SocketKey> = state.sockets.keys().cloned().collect();
        for (nsp, sid) in keys {
            let change = Change::Disconnect {
                nsp,
                sid,
                user: None,
                reason: reason.to_owned(),
            };
            self.apply(node, change, events);
        }
        self.nodes.remove(node);
        events.push(Event::NodeDown {
            node: node.to_owned(),
        });
    }

    /// Drops the nodes not heard of for `timeout_ms` (this process's own node excepted).
    pub fn expire(&mut self, now_ms: u64, timeout_ms: u64) -> Vec<Event> {
        let silent: Vec<String> = self
            .nodes
            .iter()
            .filter(|(node, state)| {
                **node != self.me && now_ms.saturating_sub(state.last_seen_ms) > timeout_ms
            })
            .map(|(node, _)| node.clone())
            .collect();
        let mut events = Vec::new();
        for node in silent {
            self.drop_node(&node, "node down", &mut events);
        }
        events
    }

    /// Who is in `room` of namespace `nsp`, listing at most `max_members` users.
    pub fn room(&self, nsp: &str, room: &str, max_members: usize) -> RoomPresence {
        let state = self.rooms.get(&(nsp.to_owned(), room.to_owned()));
        let users = state.map_or_else(Vec::new, |s| {
            s.users
                .iter()
                .take(max_members)
                .map(|(user, m)| Member {
                    user: user.clone(),
                    connections: m.connections,
                    info: m.info.clone(),
                })
                .collect()
        });
        let user_count = state.map_or(0, |s| s.users.len());
        RoomPresence {
            room: room.to_owned(),
            truncated: users.len() < user_count,
            users,
            user_count,
            connection_count: state.map_or(0, |s| s.connections),
        }
    }

    /// How many connections `user` has in `room` of `nsp`.
    pub fn connections_of(&self, nsp: &str, room: &str, user: &str) -> usize {
        self.rooms
            .get(&(nsp.to_owned(), room.to_owned()))
            .and_then(|s| s.users.get(user))
            .map_or(0, |m| m.connections)
    }

    /// The entry of socket `sid` of `nsp` on `node`.
    pub fn entry(&self, node: &str, nsp: &str, sid: &str) -> Option<&Entry> {
        self.nodes
            .get(node)?
            .sockets
            .get(&(nsp.to_owned(), sid.to_owned()))
    }

    /// Every socket known, with its node.
    pub fn sockets(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.nodes
            .iter()
            .flat_map(|(node, state)| state.sockets.values().map(move |e| (node.as_str(), e)))
    }

    /// This process's own node's sockets and its last sequence number (a snapshot's content).
    pub fn own(&self) -> (u64, Vec<Entry>) {
        self.nodes.get(&self.me).map_or((0, Vec::new()), |state| {
            (state.seq, state.sockets.values().cloned().collect())
        })
    }

    /// The nodes known: id, sockets, last heard of (milliseconds since the Unix epoch).
    pub fn nodes(&self) -> Vec<(String, usize, u64)> {
        self.nodes
            .iter()
            .map(|(node, s)| (node.clone(), s.sockets.len(), s.last_seen_ms))
            .collect()
    }

    /// How many nodes are known, this process's own node included.
    pub fn node_count(&self) -> usize {
        self.nodes.len() + usize::from(!self.nodes.contains_key(&self.me))
    }

    /// How many sockets are known, on every node.
    pub fn len(&self) -> usize {
        self.sockets
    }

    /// Whether no socket is known.
    pub fn is_empty(&self) -> bool {
        self.sockets == 0
    }

    /// How many rooms have members.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sid: &str, user: &str, rooms: &[&str]) -> Entry {
        Entry {
            nsp: "/".into(),
            sid: sid.into(),
            user: Some(user.into()),
            info: None,
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            connected_at_ms: 1,
            transport: "websocket".into(),
            handshake: None,
        }
    }

    fn delta(node: &str, seq: u64, changes: Vec<Change>) -> Message {
        Message::Delta {
            node: node.into(),
            seq,
            changes,
        }
    }

    fn snapshot(node: &str, seq: u64, sockets: Vec<Entry>) -> Message {
        Message::Snapshot {
            node: node.into(),
            seq,
            sockets,
        }
    }

    #[test]
    fn a_second_tab_is_not_a_join_and_the_last_close_is_the_leave() {
        let mut r = Replica::new("me", 1000);
        r.receive(snapshot("n1", 0, vec![]), 0);
        let first = Change::Connect {
            socket: entry("a", "ada", &["chat"]),
        };
        let events = r.receive(delta("n1", 1, vec![first]), 1).events;
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::UserJoined { user, .. } if user == "ada"))
        );
        let second = Change::Connect {
            socket: entry("b", "ada", &["chat"]),
        };
        let events = r.receive(delta("n1", 2, vec![second]), 2).events;
        assert!(!events.iter().any(|e| matches!(e, Event::UserJoined { .. })));
        assert_eq!(r.room("/", "chat", 10).users[0].connections, 2);
        let close = |sid: &str| Change::Disconnect {
            nsp: "/".into(),
            sid: sid.into(),
            user: None,
            reason: "transport close".into(),
        };
        let events = r.receive(delta("n1", 3, vec![close("a")]), 3).events;
        assert!(!events.iter().any(|e| matches!(e, Event::UserLeft { .. })));
        let events = r.receive(delta("n1", 4, vec![close("b")]), 4).events;
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::UserLeft { user, .. } if user == "ada"))
        );
        assert_eq!(r.room("/", "chat", 10).user_count, 0);
    }

    #[test]
    fn a_gap_or_an_unknown_node_asks_for_a_snapshot_once_per_interval() {
        let mut r = Replica::new("me", 1000);
        let join = |seq| delta("n1", seq, vec![]);
        assert_eq!(r.receive(join(5), 0).ask.as_deref(), Some("n1"));
        assert_eq!(r.receive(join(6), 10).ask, None, "asked already");
        r.receive(snapshot("n1", 6, vec![entry("a", "ada", &["chat"])]), 20);
        assert_eq!(r.room("/", "chat", 10).user_count, 1);
        assert_eq!(r.receive(join(7), 30).ask, None);
        assert_eq!(r.receive(join(9), 40).ask.as_deref(), Some("n1"), "gap");
        let heartbeat = Message::Heartbeat {
            node: "n1".into(),
            seq: 9,
            sockets: 1,
        };
        assert_eq!(
            r.receive(heartbeat, 50).ask,
            None,
            "asked within the interval"
        );
        // A duplicate (at-least-once delivery) is skipped.
        let dup = Change::Connect {
            socket: entry("z", "zed", &["chat"]),
        };
        r.receive(delta("n1", 7, vec![dup]), 60);
        assert_eq!(r.room("/", "chat", 10).user_count, 1);
    }

    #[test]
    fn a_snapshot_replaces_a_nodes_sockets_with_the_differences_as_events() {
        let mut r = Replica::new("me", 1000);
        r.receive(
            snapshot(
                "n1",
                1,
                vec![entry("a", "ada", &["chat"]), entry("b", "bob", &["chat"])],
            ),
            0,
        );
        let events = r
            .receive(
                snapshot(
                    "n1",
                    5,
                    vec![entry("a", "ada", &["chat", "x"]), entry("c", "cy", &[])],
                ),
                1,
            )
            .events;
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::UserLeft { user, .. } if user == "bob"))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::RoomJoined { room, .. } if room == "x"))
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn silent_and_stopped_nodes_are_dropped_with_leaves() {
        let mut r = Replica::new("me", 1000);
        r.apply_own(
            Change::Connect {
                socket: entry("m", "me-user", &["chat"]),
            },
            0,
        );
        r.receive(snapshot("n1", 1, vec![entry("a", "ada", &["chat"])]), 0);
        r.receive(snapshot("n2", 1, vec![entry("b", "bob", &["chat"])]), 0);
        r.receive(
            Message::Heartbeat {
                node: "n2".into(),
                seq: 1,
                sockets: 1,
            },
            10_000,
        );
        let events = r.expire(15_001, 15_000);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::UserLeft { user, .. } if user == "ada"))
        );
        assert!(events.contains(&Event::NodeDown { node: "n1".into() }));
        assert_eq!(r.room("/", "chat", 10).user_count, 2, "me and n2 stay");
        let events = r
            .receive(Message::Stop { node: "n2".into() }, 15_002)
            .events;
        assert!(events.iter().any(
            |e| matches!(e, Event::SocketDisconnected { reason, .. } if reason == "node stopped")
        ));
        assert_eq!(r.room("/", "chat", 10).user_count, 1);
    }

    #[test]
    fn listing_is_limited_but_counts_are_exact() {
        let mut r = Replica::new("me", 1000);
        let sockets = (0..5)
            .map(|i| entry(&format!("s{i}"), &format!("u{i}"), &["big"]))
            .collect();
        r.receive(snapshot("n1", 1, sockets), 0);
        let room = r.room("/", "big", 3);
        assert_eq!(room.users.len(), 3);
        assert_eq!((room.user_count, room.connection_count), (5, 5));
        assert!(room.truncated);
        assert!(!r.room("/", "big", 5).truncated);
        assert_eq!(r.room("/", "none", 5).user_count, 0);
    }
}
