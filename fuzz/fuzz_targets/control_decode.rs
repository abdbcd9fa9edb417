//! Control messages (`codec::control::decode`, which validates, as every node does before it
//! acts): no panic; an accepted operation names only valid rooms in a `/` namespace, and
//! re-encodes to bytes that decode to the same operation and that history readers classify as a
//! control entry (`is_control`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidecast_core::codec::control::{self, Control};
use sidecast_core::rooms;

fuzz_target!(|payload: &[u8]| {
    let Ok(operation) = control::decode(payload) else {
        return;
    };
    assert!(operation.validate().is_ok());
    assert!(operation.namespace().starts_with('/'));
    let (lists, required): (Vec<&Vec<String>>, &Vec<String>) = match &operation {
        Control::Disconnect { rooms, except, .. } => (vec![except], rooms),
        Control::Join {
            rooms,
            except,
            join,
            ..
        } => (vec![rooms, except], join),
        Control::Leave {
            rooms,
            except,
            leave,
            ..
        } => (vec![rooms, except], leave),
        Control::CloseRoom { rooms, .. } => (vec![], rooms),
        _ => return,
    };
    assert!(!required.is_empty(), "{operation:?} names no room");
    for list in lists.into_iter().chain([required]) {
        assert!(list.len() <= rooms::MAX_ROOMS);
        for room in list {
            assert!(
                rooms::validate_room(room).is_ok(),
                "invalid room {room:?} accepted"
            );
        }
    }
    assert!(
        control::is_control(payload),
        "accepted but not told from an event"
    );
    let encoded = control::encode(&operation);
    match control::decode(&encoded) {
        Ok(again) => assert_eq!(again, operation),
        Err(e) => panic!("{operation:?} re-encoded to undecodable: {e}"),
    }
    assert!(control::is_control(&encoded));
});
