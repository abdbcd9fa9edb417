//! How an event reaches a socket: the broker subscription read by the `relay`, connection state
//! recovery on the broker's history (`recovery`), emitting to this node's sockets and applying
//! room operations (`emit`), the Socket.IO connect path (`connect`, `handshake`: what a socket
//! keeps of its handshake), and the rooms users joined, remembered for their next sockets
//! (`memberships`, learnt from the running nodes by `membership_sync`). `readiness` is what the
//! connect path knows of the node's start; `room_view` is which replayed events reach a
//! recovering socket.
//!
//! Imports: `relay` → `recovery` → `emit`, `room_view`; `connect` → `recovery`, `memberships`, `emit`;
//! `membership_sync` → `memberships`. Outside the folder, only `identity` (the session's user at
//! the handshake, the Redis connection of the membership store), `metrics` and `error`.

pub(crate) mod connect;
pub(crate) mod emit;
pub(crate) mod handshake;
pub(crate) mod membership_sync;
pub(crate) mod memberships;
pub(crate) mod readiness;
pub(crate) mod recovery;
pub(crate) mod relay;
pub(crate) mod room_view;
