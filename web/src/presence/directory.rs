//! The read side ([`SocketDirectory`]) over this node's presence replica: every socket of the
//! cluster and the changes as they are applied.

use tokio::sync::broadcast;

use crate::presence::convert::record;
use crate::presence::tracker::Presence;
use crate::presence::view::{NodeSummary, SocketDirectory, SocketRecord, ViewChange};

impl SocketDirectory for Presence {
    fn sockets(&self) -> Vec<SocketRecord> {
        self.replica()
            .sockets()
            .map(|(node, entry)| record(node, entry.clone()))
            .collect()
    }

    fn nodes(&self) -> Vec<NodeSummary> {
        let mut nodes: Vec<NodeSummary> = self
            .replica()
            .nodes()
            .into_iter()
            .map(|(node, sockets, last_seen_ms)| NodeSummary {
                node,
                sockets,
                last_seen_ms,
            })
            .collect();
        if !nodes.iter().any(|n| n.node == self.node_id) {
            // This node, before its first socket.
            nodes.push(NodeSummary {
                node: self.node_id.clone(),
                sockets: 0,
                last_seen_ms: sidecast_core::envelope::now_millis(),
            });
        }
        nodes
    }

    fn changes(&self) -> broadcast::Receiver<ViewChange> {
        self.view_changes.subscribe()
    }
}
