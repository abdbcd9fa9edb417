//! What an OutageLog writes, and under which tracing target.
//!
//! Alone in its own test binary on purpose: tracing caches per-callsite interest process-wide,
//! and tests running in parallel threads without a subscriber can make a thread-local
//! subscriber miss events.

use std::time::Duration;

use sidecast_core::BrokerUrl;
use sidecast_core::supervision::{AttemptCount, HealthBoard, OutageLog};
use sidecast_testkit::log::CapturedLog;

mod transport {
    //! Stands for a transport crate: the log target is made here, so events carry this module's
    //! target.
    pub(crate) static TARGET: &sidecast_core::supervision::LogTarget =
        sidecast_core::outage_log_target!();
}

#[test]
fn an_outage_is_logged_once_under_the_callers_target_without_the_password() {
    let (captured, _guard) = CapturedLog::set_default("outage_log=debug");
    let url = BrokerUrl::new("mybroker://user:hunter2@host:1");
    let log = OutageLog::new(transport::TARGET, "mybroker", &url);
    let board = HealthBoard::new(AttemptCount::OldestOutage);

    log.lost(&board, 0, &"connection reset");
    log.lost(&board, 1, &"connection reset");
    board.attempt(0, 3);
    log.restored(&board, 1);
    log.restored(&board, 0);
    log.restored(&board, 0);

    let text = captured.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    // Each line holds all of its expected parts: level, target, message and fields.
    let expected: [&[&str]; 4] = [
        &[
            "WARN",
            "outage_log::transport",
            "mybroker connection lost, reconnecting",
            "error=connection reset",
        ],
        &["DEBUG", "mybroker connection part lost", "part=1"],
        &["mybroker connection part restored"],
        &["INFO", "mybroker connection restored", "attempts=3"],
    ];
    for (line, parts) in lines.iter().zip(expected) {
        assert!(
            parts.iter().all(|part| line.contains(part)),
            "{parts:?} in\n{text}"
        );
    }
    assert_eq!(
        captured.count("url=mybroker://user:***@host:1"),
        4,
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_transport_that_tracks_its_outages_itself_chooses_the_words() {
    let (captured, _guard) = CapturedLog::set_default("outage_log=info");
    let log = OutageLog::new(transport::TARGET, "x", &BrokerUrl::new("x://h"))
        .with_messages("lost the connection to x", "reconnected to x");
    log.outage_began(None);
    log.outage_ended(Duration::from_millis(1_500), 4);

    let text = captured.text();
    assert_eq!(captured.count("lost the connection to x"), 1, "{text}");
    assert!(
        !text.contains("error="),
        "no error field when none is given: {text}"
    );
    assert!(
        text.contains("reconnected to x") && text.contains("down_for_ms=1500 attempts=4"),
        "{text}"
    );
}
