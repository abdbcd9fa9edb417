//! python-socketio / Flask-SocketIO JSON ingress (`ingress::python_socketio::decode`): no panic;
//! an event is a valid envelope that the encoder writes back to the same event, a room operation
//! passes `Control::validate`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidecast_core::ingress::{Decoded, python_socketio};

const CHANNEL: &str = "flask-socketio";

fuzz_target!(|payload: &[u8]| {
    match python_socketio::decode(CHANNEL, payload) {
        Ok(Decoded::Event(envelope)) => {
            assert!(envelope.validate().is_ok());
            let Ok(encoded) = python_socketio::encode(&envelope, "fuzz") else {
                panic!("a decoded event cannot be encoded: {envelope:?}");
            };
            match python_socketio::decode(CHANNEL, &encoded) {
                Ok(Decoded::Event(again)) => {
                    assert_eq!(again.event, envelope.event);
                    assert_eq!(again.data, envelope.data);
                    assert_eq!(again.namespace, envelope.namespace);
                    assert_eq!(again.rooms, envelope.rooms);
                }
                other => panic!("{envelope:?} re-encoded to {other:?}"),
            }
        }
        Ok(Decoded::Control(operation)) => assert!(operation.validate().is_ok()),
        _ => {}
    }
});
