//! [`OutageLog`]: the lines a transport logs when a connection is lost and when it is back, once
//! per outage, under the transport's own tracing target ([`outage_log_target!`]).
//!
//! [`outage_log_target!`]: crate::outage_log_target

use std::fmt;
use std::time::Duration;

use super::{HealthBoard, Lost, PartId};
use crate::broker::BrokerUrl;

/// Where an [`OutageLog`] writes: one function per level, made by
/// [`outage_log_target!`](crate::outage_log_target) in the transport's own module, so that the
/// events carry the transport's tracing target (`sidecast_transport_redis::...`) and filters such
/// as `RUST_LOG=sidecast_transport_redis=debug` keep working. (A tracing target is fixed where
/// the event is written, so the writing has to happen in the transport's code.)
#[derive(Debug, Clone, Copy)]
pub struct LogTarget {
    /// Writes `event` at `warn`.
    pub warn: fn(&OutageEvent<'_>),
    /// Writes `event` at `info`.
    pub info: fn(&OutageEvent<'_>),
    /// Writes `event` at `debug`.
    pub debug: fn(&OutageEvent<'_>),
}

/// One line of an [`OutageLog`], for a [`LogTarget`] to write. Fields that are `None` are left
/// out of the event.
#[derive(Clone, Copy)]
pub struct OutageEvent<'a> {
    /// The event's message.
    pub message: &'a str,
    /// The broker's URL, password redacted.
    pub url: &'a str,
    /// The broker part concerned, for the lines about one part of several.
    pub part: Option<PartId>,
    /// Why the connection was lost.
    pub error: Option<&'a dyn fmt::Display>,
    /// How long the outage lasted, in milliseconds.
    pub down_for_ms: Option<u64>,
    /// The reconnect attempts the outage took.
    pub attempts: Option<u32>,
}

impl fmt::Debug for OutageEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutageEvent")
            .field("message", &self.message)
            .field("url", &self.url)
            .field("part", &self.part)
            .field("error", &self.error.map(ToString::to_string))
            .field("down_for_ms", &self.down_for_ms)
            .field("attempts", &self.attempts)
            .finish()
    }
}

/// A [`LogTarget`] that writes in the module where this macro is invoked, and so under its
/// tracing target.
///
/// ```
/// use sidecast_core::supervision::LogTarget;
///
/// static TARGET: &LogTarget = sidecast_core::outage_log_target!();
/// # let _ = TARGET;
/// ```
#[macro_export]
macro_rules! outage_log_target {
    () => {{
        static TARGET: $crate::supervision::LogTarget = $crate::supervision::LogTarget {
            warn: |event| $crate::__outage_event!(WARN, event),
            info: |event| $crate::__outage_event!(INFO, event),
            debug: |event| $crate::__outage_event!(DEBUG, event),
        };
        &TARGET
    }};
}

/// The event of [`outage_log_target!`] at one level.
#[doc(hidden)]
#[macro_export]
macro_rules! __outage_event {
    ($level:ident, $event:expr) => {{
        let event: &$crate::supervision::OutageEvent<'_> = $event;
        $crate::__private::tracing::event!(
            $crate::__private::tracing::Level::$level,
            url = %event.url,
            part = event.part,
            error = event.error.map($crate::__private::tracing::field::display),
            down_for_ms = event.down_for_ms,
            attempts = event.attempts,
            "{}",
            event.message
        )
    }};
}

/// The outage log of one broker: a lost connection is logged once (`warn`) and its recovery
/// once (`info`), however many of the broker's parts the outage hit and however many reconnect
/// attempts it took; the other parts' transitions go to `debug`. URLs are logged with the
/// password redacted.
///
/// Transports that report their parts on a [`HealthBoard`] log through [`OutageLog::lost`] and
/// [`OutageLog::restored`], which also update the board; a transport that tracks its one
/// connection itself calls [`OutageLog::outage_began`] and [`OutageLog::outage_ended`].
///
/// ```
/// use sidecast_core::BrokerUrl;
/// use sidecast_core::supervision::{AttemptCount, HealthBoard, OutageLog};
///
/// let log = OutageLog::new(
///     sidecast_core::outage_log_target!(),
///     "mybroker",
///     &BrokerUrl::new("mybroker://user:secret@host"),
/// );
/// let board = HealthBoard::new(AttemptCount::OldestOutage);
/// log.lost(&board, 0, &"connection reset"); // warn: "mybroker connection lost, reconnecting"
/// log.lost(&board, 1, &"connection reset"); // debug: the same outage
/// log.restored(&board, 1); // debug: part 0 is still down
/// log.restored(&board, 0); // info: "mybroker connection restored"
/// assert_eq!(log.url(), "mybroker://user:***@host");
/// ```
#[derive(Debug, Clone)]
pub struct OutageLog {
    target: &'static LogTarget,
    url: String,
    lost: String,
    restored: String,
    part_lost: String,
    part_restored: String,
}

impl OutageLog {
    /// The outage log of a `transport` broker (`"redis"`) at `url`, writing to `target`, with
    /// the lines "redis connection lost, reconnecting" and "redis connection restored" (and, at
    /// `debug`, "redis connection part lost" / "... part restored").
    pub fn new(target: &'static LogTarget, transport: &str, url: &BrokerUrl) -> Self {
        Self {
            target,
            url: url.to_string(),
            lost: format!("{transport} connection lost, reconnecting"),
            restored: format!("{transport} connection restored"),
            part_lost: format!("{transport} connection part lost"),
            part_restored: format!("{transport} connection part restored"),
        }
    }

    /// The same log with other words for the outage's two lines.
    pub fn with_messages(mut self, lost: impl Into<String>, restored: impl Into<String>) -> Self {
        self.lost = lost.into();
        self.restored = restored.into();
        self
    }

    /// The URL the lines carry: the broker's, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn event<'a>(&'a self, message: &'a str) -> OutageEvent<'a> {
        OutageEvent {
            message,
            url: &self.url,
            part: None,
            error: None,
            down_for_ms: None,
            attempts: None,
        }
    }

    /// Part `id` broke with `error`: reports it on `board` ([`HealthBoard::lost`]) and logs the
    /// outage if it is the first part down (`warn`), else at `debug`.
    pub fn lost(&self, board: &HealthBoard, id: PartId, error: &dyn fmt::Display) {
        match board.lost(id) {
            Lost::Outage => (self.target.warn)(&OutageEvent {
                error: Some(error),
                ..self.event(&self.lost)
            }),
            Lost::AlsoDown => (self.target.debug)(&OutageEvent {
                part: Some(id),
                error: Some(error),
                ..self.event(&self.part_lost)
            }),
            Lost::Closed => {}
        }
    }

    /// Part `id` is up again: reports it on `board` ([`HealthBoard::restored`]) and logs the end
    /// of the outage if it was the last part down (`info`), else at `debug`.
    pub fn restored(&self, board: &HealthBoard, id: PartId) {
        let Some(restored) = board.restored(id) else {
            return;
        };
        if restored.all_up {
            self.outage_ended(restored.down_for, restored.attempts);
        } else {
            (self.target.debug)(&OutageEvent {
                part: Some(id),
                ..self.event(&self.part_restored)
            });
        }
    }

    /// Logs that the broker's connection was lost (`warn`), for a transport that keeps track of
    /// its outages itself and calls this once per outage.
    pub fn outage_began(&self, error: Option<&dyn fmt::Display>) {
        (self.target.warn)(&OutageEvent {
            error,
            ..self.event(&self.lost)
        });
    }

    /// Logs that the outage is over (`info`): it lasted `down_for` and took `attempts` reconnect
    /// attempts.
    pub fn outage_ended(&self, down_for: Duration, attempts: u32) {
        (self.target.info)(&OutageEvent {
            down_for_ms: Some(u64::try_from(down_for.as_millis()).unwrap_or(u64::MAX)),
            attempts: Some(attempts),
            ..self.event(&self.restored)
        });
    }
}
