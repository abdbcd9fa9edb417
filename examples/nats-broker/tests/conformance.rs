//! NatsBroker against sidecast-testkit's public broker conformance suite, one test per check, each
//! on its own nats-server (or on `SIDECAST_TEST_NATS_URL`; the checks use unique channel names).
//! NATS wildcards are not Redis globs: patterns are refused as `Unsupported`.

mod support;

use sidecast_testkit::conformance::{Capabilities, WithServer};
use support::{NatsServer, nats_on};

sidecast_testkit::conformance_tests!(
    WithServer::new(NatsServer::start().await, nats_on),
    Capabilities::WITHOUT_PATTERNS
);
