//! The rooms a recovering socket is taken to be in while its replay runs (decision 34): which
//! of the history's events after its offset reach it.
//!
//! The view starts from the socket's rooms now and corrects them with the room operations
//! between the offset and the node's position. Pure: it sees a socket as its namespace and its
//! rooms, so that the replay's room selection can be checked (and fuzzed, `fuzz/`) without
//! sockets. It errs towards missing an event rather than leaking one (decision 41): a room the
//! socket is not in now counts as one it was in at the offset only when an operation addressed
//! to its own user room (or its id) made it leave that room; a `close_room`, or a leave addressed
//! through a shared room or to everyone, says nothing about whether this socket was in the room,
//! and a socket that gets a room's events from a forged offset could read another user's.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use sidecast_core::Envelope;
use sidecast_core::codec::control::Control;

/// A socket as the view sees it: its namespace, its id, and its rooms now.
#[derive(Debug, Clone, Copy)]
pub struct Seat<'a> {
    /// The socket's namespace.
    pub namespace: &'a str,
    /// The socket's id (a room of its own).
    pub id: &'a str,
    /// The socket's rooms now.
    pub rooms: &'a [Cow<'static, str>],
}

impl Seat<'_> {
    /// Whether `room` identifies this socket or its user: its id or a `user:` room it is in. An
    /// operation addressed through one of them was meant for it.
    fn identified_by(&self, room: &str) -> bool {
        room == self.id || (room.starts_with("user:") && self.rooms.iter().any(|r| r == room))
    }
}

/// The rooms a recovering socket is in at a point of the history: its rooms now, except where a
/// room operation since its offset changed them.
#[derive(Debug, Default, Clone)]
pub struct RoomView {
    changed: HashMap<String, bool>,
}

impl RoomView {
    /// The view at the socket's offset, from the room operations between it and the node's
    /// position, in history order. A room an operation joined the socket to was not one of its
    /// rooms before it; a room that an operation certainly meant for the socket made it leave
    /// was one; a room closed, or left through a shared room or by everyone, was not (that does
    /// not tell whether this socket was in it); any other room is as it is now.
    ///
    /// "Certainly meant for it": addressed through its own user room or id, excepting no room,
    /// and neither room changed by any operation in the range (whether an operation addressed
    /// the socket is judged on its rooms now, which equal its rooms then only for rooms no
    /// operation changed; a leave judged "meant for it" that the replay then finds not
    /// addressed to the socket would hand it the room's events).
    pub fn at<'c>(seat: Seat<'_>, operations: impl IntoIterator<Item = &'c Control>) -> Self {
        let operations: Vec<&Control> = operations.into_iter().collect();
        let changed_in_range: HashSet<&str> = operations
            .iter()
            .flat_map(|operation| match operation {
                Control::Join { join: rooms, .. }
                | Control::Leave { leave: rooms, .. }
                | Control::CloseRoom { rooms, .. } => rooms.as_slice(),
                _ => &[],
            })
            .map(String::as_str)
            .collect();
        let mut first = HashMap::new();
        for operation in operations {
            let Some((rooms, _)) = Self::default().effect(seat, operation) else {
                continue;
            };
            let was_in = certainly_meant_for(seat, operation, &changed_in_range);
            for room in rooms {
                // The first operation on a room fixes its state.
                first.entry(room.clone()).or_insert(was_in);
            }
        }
        Self { changed: first }
    }

    /// Whether the socket is in `room` in this view.
    pub fn is_in(&self, seat: Seat<'_>, room: &str) -> bool {
        match self.changed.get(room) {
            Some(joined) => *joined,
            None => seat.rooms.iter().any(|r| r == room),
        }
    }

    /// Whether an operation of `namespace` to the sockets in `to` (everyone when empty) but not in
    /// `except` addresses the socket in this view.
    fn addresses(&self, seat: Seat<'_>, namespace: &str, to: &[String], except: &[String]) -> bool {
        seat.namespace == namespace
            && (to.is_empty() || to.iter().any(|r| self.is_in(seat, r)))
            && !except.iter().any(|r| self.is_in(seat, r))
    }

    /// The rooms `operation` changes for the socket in this view, and whether the socket is in
    /// them after it; `None` when it does not address the socket.
    fn effect<'o>(&self, seat: Seat<'_>, operation: &'o Control) -> Option<(&'o [String], bool)> {
        match operation {
            Control::Join {
                rooms: to,
                namespace,
                except,
                join,
            } if self.addresses(seat, namespace, to, except) => Some((join, true)),
            Control::Leave {
                rooms: to,
                namespace,
                except,
                leave,
            } if self.addresses(seat, namespace, to, except) => Some((leave, false)),
            Control::CloseRoom { rooms, namespace } if seat.namespace == namespace => {
                Some((rooms, false))
            }
            _ => None,
        }
    }

    /// Applies `operation`, met in the history, when it addresses the socket in this view.
    pub fn apply(&mut self, seat: Seat<'_>, operation: &Control) {
        if let Some((rooms, joined)) = self.effect(seat, operation) {
            for room in rooms {
                self.changed.insert(room.clone(), joined);
            }
        }
    }

    /// Whether `envelope` is addressed to the socket in this view: its namespace, one of its
    /// rooms (or everyone), and none of the rooms it excludes.
    pub fn addressed(&self, seat: Seat<'_>, envelope: &Envelope) -> bool {
        if seat.namespace != envelope.namespace {
            return false;
        }
        if envelope.rooms.is_empty() && envelope.except.is_empty() {
            return true;
        }
        let is_in = |list: &[String]| list.iter().any(|r| self.is_in(seat, r));
        (envelope.rooms.is_empty() || is_in(&envelope.rooms)) && !is_in(&envelope.except)
    }
}

/// Whether `operation` is a leave certainly meant for the socket: addressed through its own user
/// room or id, that no operation of the range (`changed_in_range`) changed, excepting no room.
fn certainly_meant_for(
    seat: Seat<'_>,
    operation: &Control,
    changed_in_range: &HashSet<&str>,
) -> bool {
    let Control::Leave {
        rooms: to, except, ..
    } = operation
    else {
        return false;
    };
    except.is_empty()
        && to
            .iter()
            .any(|r| seat.identified_by(r) && !changed_in_range.contains(r.as_str()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ROOMS: &[Cow<'static, str>] = &[Cow::Borrowed("sid1"), Cow::Borrowed("user:alice")];

    fn seat() -> Seat<'static> {
        Seat {
            namespace: "/",
            id: "sid1",
            rooms: ROOMS,
        }
    }

    fn op(value: serde_json::Value) -> Control {
        sidecast_core::codec::control::decode(value.to_string().as_bytes()).unwrap()
    }

    fn to(room: &str) -> Envelope {
        Envelope::new("m", json!("x")).to(room)
    }

    /// A room left by an operation addressed to the socket's user was one of its rooms before;
    /// one closed, or left through a shared room, was not taken to be (decision 41).
    #[test]
    fn only_a_leave_meant_for_the_socket_says_it_was_in_the_room() {
        let left = op(json!({"control": "leave", "rooms": ["user:alice"], "leave": ["game:1"]}));
        let view = RoomView::at(seat(), [&left]);
        assert!(view.addressed(seat(), &to("game:1")));

        let closed = op(json!({"control": "close_room", "rooms": ["user:bob"]}));
        let everyone = op(json!({"control": "leave", "leave": ["game:2"]}));
        let view = RoomView::at(seat(), [&closed, &everyone]);
        assert!(!view.addressed(seat(), &to("user:bob")));
        assert!(!view.addressed(seat(), &to("game:2")));
    }

    /// A leave through the socket's user room counts only when that room is certain: here an
    /// earlier operation took the socket out of `user:alice`, so the replay finds the second
    /// leave not addressed to it, and bob's room was never the socket's (found by the
    /// `replay_rooms` fuzz target: before, bob's event reached alice).
    #[test]
    fn a_leave_through_a_room_changed_in_the_range_says_nothing() {
        let out_of_own =
            op(json!({"control": "leave", "except": ["user:bob"], "leave": ["user:alice"]}));
        let leave_bob =
            op(json!({"control": "leave", "rooms": ["user:alice"], "leave": ["user:bob"]}));
        let mut view = RoomView::at(seat(), [&out_of_own, &leave_bob]);
        view.apply(seat(), &out_of_own);
        view.apply(seat(), &leave_bob);
        let to_bob = Envelope::new("m", json!("x")).to("user:bob");
        assert!(!view.addressed(seat(), &to_bob));
    }

    /// Operations met in the replay change the view from then on.
    #[test]
    fn operations_apply_in_history_order() {
        let join = op(json!({"control": "join", "rooms": ["sid1"], "join": ["game:1"]}));
        let mut view = RoomView::at(seat(), [&join]);
        assert!(!view.addressed(seat(), &to("game:1")));
        view.apply(seat(), &join);
        assert!(view.addressed(seat(), &to("game:1")));
        assert!(!view.addressed(seat(), &to("user:bob")));
        assert!(view.addressed(seat(), &Envelope::new("m", json!("x"))));
    }
}
