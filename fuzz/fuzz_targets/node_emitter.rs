//! Node `@socket.io/redis-emitter` ingress: msgpack events (`ingress::node_emitter::decode`) and
//! JSON requests (`decode_request`). The first byte picks the decoder and the channel, the rest
//! is the payload. No panic; an event is a valid envelope, an operation passes validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidecast_core::ingress::{Decoded, node_emitter};

const EVENT_CHANNELS: &[&str] = &[
    "socket.io#/#",
    "socket.io#/chat#",
    "socket.io#/#room#",
    "socket.io#",
];
const REQUEST_CHANNELS: &[&str] = &[
    "socket.io-request#/#",
    "socket.io-request#/chat#",
    "socket.io-request#",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let pick = usize::from(selector >> 1);
    if selector & 1 == 0 {
        let channel = EVENT_CHANNELS[pick % EVENT_CHANNELS.len()];
        if let Ok(envelope) = node_emitter::decode(channel, payload) {
            assert!(envelope.validate().is_ok(), "{envelope:?}");
        }
    } else {
        let channel = REQUEST_CHANNELS[pick % REQUEST_CHANNELS.len()];
        match node_emitter::decode_request(channel, payload) {
            Ok(Decoded::Control(operation)) => assert!(operation.validate().is_ok()),
            Ok(Decoded::Event(envelope)) => assert!(envelope.validate().is_ok()),
            _ => {}
        }
    }
});
