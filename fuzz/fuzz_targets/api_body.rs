//! Request bodies of `POST /api/` and `POST /api/rooms` (the routes' own parsers, through
//! `sidecast_web::fuzzing`). The first byte picks the route, the rest is the body. No panic; a
//! refusal is a 4xx, never a 500; an accepted body is what every node accepts: the envelope or
//! operation the route publishes decodes, on the bus, to the same thing (rooms valid included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidecast_core::codec::{control, native};
use sidecast_core::rooms;
use sidecast_web::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    if route & 1 == 0 {
        match fuzzing::parse_publish(body) {
            Ok(envelope) => {
                assert!(envelope.validate().is_ok());
                assert!(
                    rooms::validate_rooms(&envelope.rooms).is_ok(),
                    "{:?}",
                    envelope.rooms
                );
                let published = native::encode(&envelope);
                match native::decode(&published) {
                    Ok(relayed) => assert_eq!(relayed, envelope),
                    Err(e) => panic!(
                        "POST /api/ accepted what nodes refuse ({e}): {}",
                        String::from_utf8_lossy(&published)
                    ),
                }
            }
            Err(e) => assert!(e.status().is_client_error(), "{e:?} is a {}", e.status()),
        }
    } else {
        match fuzzing::parse_rooms(body) {
            Ok(operation) => {
                assert!(operation.validate().is_ok(), "{operation:?}");
                let published = control::encode(&operation);
                match control::decode(&published) {
                    Ok(relayed) => assert_eq!(relayed, operation),
                    Err(e) => {
                        panic!("POST /api/rooms accepted what nodes refuse ({e}): {operation:?}")
                    }
                }
            }
            Err(e) => assert!(e.status().is_client_error(), "{e:?} is a {}", e.status()),
        }
    }
});
