//! The replay's room selection (`sidecast_web::fuzzing::RoomView`, in the order a replay uses it:
//! the view at the offset from the room operations up to the node's position, then each entry
//! after the offset in history order, operations applied and events selected). The input is a
//! random history of events and room operations over a few rooms, the rooms of alice's socket
//! now, and a random (forged) offset into the history. Invariant: no event meant only for
//! another user (`user:bob`) or another socket (`sid-bob`) reaches alice's socket unless an
//! operation in the replayed history could have put it there (a join of that room before the
//! event, or a leave of it addressed to alice's own user or socket after it); none of another
//! namespace ever does.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sidecast_core::Envelope;
use sidecast_core::codec::control::Control;
use sidecast_web::fuzzing::{RoomView, Seat};

const ROOMS: [&str; 7] = [
    "user:alice",
    "sid-alice",
    "lobby",
    "game:1",
    "user:bob",
    "sid-bob",
    "game:2",
];
/// Alice's own rooms, whose leave says she was in the room left.
const ALICE: [&str; 2] = ["user:alice", "sid-alice"];
/// Rooms of others: alice's socket is never in them now.
const OTHERS: [&str; 2] = ["user:bob", "sid-bob"];

/// The rooms of `mask`'s bits.
fn rooms(mask: u8) -> Vec<String> {
    (0..ROOMS.len())
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| ROOMS[i].to_owned())
        .collect()
}

enum Entry {
    Event(Envelope),
    Operation(Control),
}

fuzz_target!(|data: &[u8]| {
    let Some((&[offset, now], rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    // Alice's socket now: its id, its user, maybe the lobby and game:1.
    let mut now_rooms: Vec<Cow<'static, str>> = vec!["sid-alice".into(), "user:alice".into()];
    if now & 1 != 0 {
        now_rooms.push("lobby".into());
    }
    if now & 2 != 0 {
        now_rooms.push("game:1".into());
    }
    let seat = Seat {
        namespace: "/",
        id: "sid-alice",
        rooms: &now_rooms,
    };
    let history: Vec<Entry> = rest
        .chunks_exact(4)
        .map(|c| {
            let namespace = if c[0] & 0x80 != 0 { "/chat" } else { "/" };
            let (to, except) = (rooms(c[1]), rooms(c[2]));
            let operand = match rooms(c[3]) {
                names if names.is_empty() => {
                    vec![ROOMS[usize::from(c[3]) % ROOMS.len()].to_owned()]
                }
                names => names,
            };
            let base = json!({"rooms": to, "except": except, "namespace": namespace});
            match c[0] % 6 {
                0..=2 => {
                    let mut event = Envelope::new("m", json!(c[0]));
                    event.namespace = namespace.to_owned();
                    event.rooms = to;
                    event.except = except;
                    Entry::Event(event)
                }
                kind => {
                    let mut op = base;
                    let (name, field) = match kind {
                        3 => ("join", "join"),
                        4 => ("leave", "leave"),
                        _ => ("close_room", "rooms"),
                    };
                    op["control"] = json!(name);
                    op[field] = json!(operand);
                    let op: Control = serde_json::from_value(op).expect("a control message");
                    Entry::Operation(op)
                }
            }
        })
        .collect();
    let from = usize::from(offset) % (history.len() + 1);
    let replayed = &history[from..];
    let operations = replayed.iter().filter_map(|e| match e {
        Entry::Operation(op) => Some(op),
        Entry::Event(_) => None,
    });
    let mut view = RoomView::at(seat, operations);
    for (i, entry) in replayed.iter().enumerate() {
        let event = match entry {
            Entry::Operation(op) => {
                view.apply(seat, op);
                continue;
            }
            Entry::Event(event) => event,
        };
        if !view.addressed(seat, event) {
            continue;
        }
        assert_eq!(event.namespace, "/", "an event of another namespace");
        if event.rooms.is_empty() || !event.rooms.iter().all(|r| OTHERS.contains(&r.as_str())) {
            continue;
        }
        let joined_before = replayed[..i].iter().any(|e| {
            matches!(e, Entry::Operation(Control::Join { join, .. })
                if join.iter().any(|r| event.rooms.contains(r)))
        });
        let left_after = replayed[i..].iter().any(|e| {
            matches!(e, Entry::Operation(Control::Leave { rooms: to, leave, .. })
                if to.iter().any(|r| ALICE.contains(&r.as_str()))
                    && leave.iter().any(|r| event.rooms.contains(r)))
        });
        assert!(
            joined_before || left_after,
            "another's event {:?} reached alice from entry {from}",
            event.rooms
        );
    }
});
