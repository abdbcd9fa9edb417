//! The read side of the cluster view: what every node knows about every socket of the cluster
//! (its own ones and the other nodes' replicated ones), and the changes to it as a stream.

use std::collections::BTreeSet;

use serde::Serialize;
use tokio::sync::broadcast;

/// One socket as the cluster view knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SocketRecord {
    /// The node that owns the socket (its `node_id`).
    pub node: String,
    /// The socket's namespace (`/` for the default one).
    pub nsp: String,
    /// The socket's id (also a room of its own).
    pub sid: String,
    /// The user the auth policy's `Principal` names, if any.
    pub user: Option<String>,
    /// The small `info` object a policy attached, if any.
    pub info: Option<serde_json::Value>,
    /// The rooms tracked for this socket: the presence rooms it is in, or every room it is in
    /// when the full directory is on (the admin namespace needs that).
    pub rooms: BTreeSet<String>,
    /// When the socket connected, in milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    /// The transport the socket uses now (`"websocket"` or `"polling"`).
    pub transport: String,
    /// The handshake as the Socket.IO Admin UI shows it, `cookie` and `authorization` headers
    /// left out; only when the full directory is on.
    pub handshake: Option<serde_json::Value>,
}

/// A change to the cluster view, in the order the view applied it.
#[derive(Debug, Clone, PartialEq)]
pub enum ViewChange {
    /// A socket connected on some node (or became known when that node's state arrived).
    SocketConnected(SocketRecord),
    /// A socket left: it disconnected, or its node stopped or stopped sending heartbeats.
    SocketDisconnected {
        /// The node that owned it.
        node: String,
        /// Its namespace.
        nsp: String,
        /// Its id.
        sid: String,
        /// Why: the Socket.IO disconnect reason, `"node stopped"` or `"node down"`.
        reason: String,
    },
    /// A socket joined a tracked room.
    RoomJoined {
        /// The socket's namespace.
        nsp: String,
        /// The room.
        room: String,
        /// The socket's id.
        sid: String,
    },
    /// A socket left a tracked room.
    RoomLeft {
        /// The socket's namespace.
        nsp: String,
        /// The room.
        room: String,
        /// The socket's id.
        sid: String,
    },
    /// A node's state became known (its first heartbeat or snapshot).
    NodeUp {
        /// The node's id.
        node: String,
    },
    /// A node stopped or missed its heartbeats; its sockets' `SocketDisconnected` precede this.
    NodeDown {
        /// The node's id.
        node: String,
    },
}

/// A node of the cluster as the view knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSummary {
    /// The node's id.
    pub node: String,
    /// How many sockets it owns.
    pub sockets: usize,
    /// When its last heartbeat or update arrived, in milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
}

/// What the admin namespace (and anything else that lists sockets) reads: every socket of the
/// cluster, read locally, and the changes as they are applied.
pub trait SocketDirectory: Send + Sync {
    /// Every socket the view knows, on every node.
    fn sockets(&self) -> Vec<SocketRecord>;
    /// The nodes the view knows.
    fn nodes(&self) -> Vec<NodeSummary>;
    /// The changes from now on. A receiver that lags is told so by `broadcast` and should read
    /// `sockets()` again.
    fn changes(&self) -> broadcast::Receiver<ViewChange>;
}
