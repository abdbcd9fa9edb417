//! Messages of the memberships channel (`sidecast_web::fuzzing::decode_membership_message`, as a
//! starting node reads the running nodes' answers), unsigned and signed. Invariants: an answer is
//! taken only when every membership has a `/` namespace, a user and valid rooms (they become the
//! rooms of the users' next sockets); a message re-encodes to one that decodes the same; on a
//! signed bus nothing the fuzzer writes is accepted.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sidecast_core::{Signer, rooms};
use sidecast_web::fuzzing::{MembershipMessage, decode_membership_message};

const NOW_MS: u64 = 1_732_550_000_000;

fuzz_target!(|payload: &[u8]| {
    if let Some(message) = decode_membership_message(payload, None, NOW_MS) {
        if let MembershipMessage::Answer { memberships, .. } = &message {
            for (namespace, user, names) in memberships {
                assert!(namespace.starts_with('/'), "namespace {namespace:?}");
                assert!(rooms::validate_room(&format!("user:{user}")).is_ok() && !user.is_empty());
                for room in names {
                    assert!(rooms::validate_room(room).is_ok(), "room {room:?}");
                }
            }
        }
        let encoded = serde_json::to_vec(&message).expect("a message serializes");
        assert_eq!(
            decode_membership_message(&encoded, None, NOW_MS).as_ref(),
            Some(&message)
        );
    }
    let signer = Signer::new(b"fuzz-memberships-key", Duration::from_secs(60));
    assert!(
        decode_membership_message(payload, Some(&signer), NOW_MS).is_none(),
        "accepted an unsigned memberships message on a signed bus"
    );
});
