//! From the replica's entries and events to the view's records and changes.

use sidecast_core::presence::Event;
use sidecast_core::presence::wire::Entry;

use crate::presence::view::{SocketRecord, ViewChange};

/// The record of `entry`, owned by `node`.
pub(crate) fn record(node: &str, entry: Entry) -> SocketRecord {
    SocketRecord {
        node: node.to_owned(),
        nsp: entry.nsp,
        sid: entry.sid,
        user: entry.user,
        info: entry.info,
        rooms: entry.rooms,
        connected_at_ms: entry.connected_at_ms,
        transport: entry.transport,
        handshake: entry.handshake,
    }
}

/// The view change of a replica event (user-level joins and leaves are not view changes).
pub(crate) fn view_change(event: Event) -> Option<ViewChange> {
    Some(match event {
        Event::SocketConnected { node, entry } => ViewChange::SocketConnected(record(&node, entry)),
        Event::SocketDisconnected {
            node,
            nsp,
            sid,
            reason,
        } => ViewChange::SocketDisconnected {
            node,
            nsp,
            sid,
            reason,
        },
        Event::RoomJoined { nsp, room, sid } => ViewChange::RoomJoined { nsp, room, sid },
        Event::RoomLeft { nsp, room, sid } => ViewChange::RoomLeft { nsp, room, sid },
        Event::NodeUp { node } => ViewChange::NodeUp { node },
        Event::NodeDown { node } => ViewChange::NodeDown { node },
        _ => return None,
    })
}
