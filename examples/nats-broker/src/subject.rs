//! Sidecast channels as NATS subjects.
//!
//! A channel is used as the subject unchanged, so that a message's subject *is* its channel and
//! other NATS programs can publish to Sidecast (`nats pub sidecast '{"v":1,...}'`). That only
//! works for channel names that are literal NATS subjects; the others are refused rather than
//! encoded, because an encoding would hide Sidecast's traffic from those programs.

use sidecast_core::BrokerError;

use crate::error::BACKEND;

/// Checks that `channel` is a literal NATS subject: not empty, no whitespace, no empty token
/// (leading, trailing or doubled `.`), and no wildcard token (`*` or `>` alone between dots).
/// Sidecast's own channels (`sidecast`, `sidecast:control`) all qualify.
pub(crate) fn check(channel: &str) -> Result<(), BrokerError> {
    let why = if channel.is_empty() {
        "it is empty"
    } else if channel.chars().any(char::is_whitespace) {
        "NATS subjects cannot contain whitespace"
    } else if channel.split('.').any(str::is_empty) {
        "NATS subjects cannot start or end with `.` or contain `..`"
    } else if channel.split('.').any(|token| token == "*" || token == ">") {
        "`*` and `>` alone between dots are NATS wildcards, not literal subjects"
    } else {
        return Ok(());
    };
    Err(BrokerError::Unsupported {
        backend: BACKEND,
        what: format!("the channel name {channel:?}: {why}; choose a channel name without that"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_subjects_pass() {
        for ok in [
            "sidecast",
            "sidecast:control",
            "socket.io#/#room#",
            "a.b.c",
            "a*b.c>d",
            "sidecast-test.round-trip.0f3a",
        ] {
            assert!(check(ok).is_ok(), "{ok:?} refused");
        }
    }

    #[test]
    fn non_literal_subjects_are_refused_as_unsupported() {
        for bad in [
            "", "a b", "a\tb", ".a", "a.", "a..b", "a.*", "*", "a.>", ">.b",
        ] {
            match check(bad) {
                Err(BrokerError::Unsupported { backend, what }) => {
                    assert_eq!(backend, "nats");
                    assert!(what.contains(&format!("{bad:?}")), "{what}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
