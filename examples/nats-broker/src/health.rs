//! The connection's health, from async-nats' connection state and events, and the reconnect
//! backoff.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_nats::Event;
use async_nats::connection::State;
use sidecast_core::supervision::{Backoff, OutageLog};
use sidecast_core::{BrokerHealth, BrokerUrl};

/// What the broker knows about its one NATS connection, beyond async-nats' own
/// [`async_nats::Client::connection_state`] (which is authoritative for "connected or not").
///
/// async-nats reconnects and re-subscribes by itself. It calls the reconnect delay callback
/// ([`ConnectionHealth::backoff`]) synchronously before each attempt, right after marking the connection
/// down, and reports what happened through events, handled in order by one task
/// ([`ConnectionHealth::on_event`]) some time later.
#[derive(Debug)]
pub(crate) struct ConnectionHealth {
    /// The server URL, password redacted.
    pub(crate) url: String,
    /// Logs each outage once, lost and restored.
    outages: OutageLog,
    closed: AtomicBool,
    /// Set once the first connection is up: reconnect attempts before that belong to the first
    /// connection, not to an outage.
    connected_once: AtomicBool,
    /// The reconnect attempt of the current outage (0 while connected).
    attempt: AtomicU32,
    /// The current outage; `None` while connected.
    outage: Mutex<Option<Outage>>,
    backoff: Backoff,
}

/// A lost connection, until async-nats reports it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outage {
    /// When the connection was lost, as near as the broker can tell.
    since: SystemTime,
    /// Whether the loss was logged.
    logged: bool,
}

impl Outage {
    fn starting_now() -> Self {
        Self {
            since: SystemTime::now(),
            logged: false,
        }
    }
}

impl ConnectionHealth {
    pub(crate) fn new(url: BrokerUrl, backoff_min: Duration, backoff_max: Duration) -> Self {
        Self {
            url: url.redacted(),
            outages: OutageLog::new(sidecast_core::outage_log_target!(), "nats", &url)
                .with_messages(
                    "lost the connection to nats; reconnecting (publishes fail until it is back, \
                     messages published meanwhile are lost to this node)",
                    "reconnected to nats; subscriptions restored",
                ),
            closed: AtomicBool::new(false),
            connected_once: AtomicBool::new(false),
            attempt: AtomicU32::new(0),
            outage: Mutex::new(None),
            backoff: Backoff {
                min: backoff_min,
                max: backoff_max,
            },
        }
    }

    fn outage(&self) -> MutexGuard<'_, Option<Outage>> {
        // A poisoned lock only means a panic elsewhere while holding it; the value stays valid.
        self.outage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first connection is up: from now on a reconnect attempt means an outage.
    pub(crate) fn connected(&self) {
        self.connected_once.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the broker closed; `true` the first time.
    pub(crate) fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    /// The attempt number to report during an outage (at least 1).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed).max(1)
    }

    /// The health, given async-nats' connection state right now.
    pub(crate) fn health(&self, state: &State) -> BrokerHealth {
        if self.is_closed() {
            return BrokerHealth::Closed;
        }
        match state {
            State::Connected => BrokerHealth::Connected,
            // `Pending` is the state before the first connection; `connect` returns only once
            // connected, so a broker sees it only if the first connection is lost at once.
            State::Pending | State::Disconnected => BrokerHealth::Reconnecting {
                attempt: self.attempt(),
                // The outage is recorded right after async-nats changes its state; a reader that
                // comes in between gets "now".
                since: self
                    .outage()
                    .map_or_else(SystemTime::now, |outage| outage.since),
            },
        }
    }

    /// The reconnect delay callback: records the attempt (and, on the first one, the start of the
    /// outage) and returns how long to wait before it.
    ///
    /// The first attempt of an outage is immediate (the server may just have restarted); then the
    /// delay doubles from `backoff_min` up to `backoff_max`, each drawn at random between half and
    /// all of that, so that many nodes losing one server do not come back in lockstep (core's
    /// [`Backoff`], one attempt behind).
    pub(crate) fn backoff(&self, attempt: usize) -> Duration {
        let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
        self.attempt.store(attempt, Ordering::Relaxed);
        if self.connected_once.load(Ordering::Acquire) {
            self.outage().get_or_insert_with(Outage::starting_now);
        }
        if attempt <= 1 {
            return Duration::ZERO;
        }
        self.backoff.delay(attempt - 1)
    }

    /// Handles one async-nats event: logs each transition once (`warn` when the connection is
    /// lost, `info` when it is back), however many subscriptions share the connection and however
    /// many attempts it takes, and ends the outage record.
    pub(crate) fn on_event(&self, event: Event) {
        let url = &self.url;
        match event {
            Event::Disconnected => {
                if self.is_closed() {
                    return;
                }
                let mut outage = self.outage();
                let outage = outage.get_or_insert_with(Outage::starting_now);
                if !outage.logged {
                    outage.logged = true;
                    self.outages.outage_began(None);
                }
            }
            Event::Connected => {
                let outage = self.outage().take();
                let attempts = self.attempt.swap(0, Ordering::Relaxed);
                match outage {
                    Some(outage) if !self.is_closed() => {
                        let down_for = outage.since.elapsed().unwrap_or_default();
                        self.outages.outage_ended(down_for, attempts);
                    }
                    _ => tracing::debug!(%url, "connected to nats"),
                }
            }
            Event::LameDuckMode => tracing::warn!(
                %url,
                "the nats server is shutting down (lame duck mode); the client will reconnect"
            ),
            Event::SlowConsumer(sid) => tracing::warn!(
                %url,
                sid,
                "nats dropped messages for a subscription that fell behind"
            ),
            Event::ServerError(error) => tracing::warn!(%url, %error, "nats server error"),
            // Failed reconnect attempts: the outage was logged already.
            Event::ClientError(error) => tracing::debug!(%url, %error, "nats client error"),
            Event::Draining | Event::Closed => tracing::debug!(%url, %event, "nats connection"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> ConnectionHealth {
        ConnectionHealth::new(
            "nats://h".into(),
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn backoff_is_immediate_then_doubles_with_jitter_up_to_the_cap() {
        let link = link();
        assert_eq!(link.backoff(1), Duration::ZERO);
        assert_eq!(link.attempt(), 1);
        for (attempt, ceiling) in [
            (2, 100),
            (3, 200),
            (4, 400),
            (5, 800),
            (6, 1000),
            (60, 1000),
        ] {
            let delay = link.backoff(attempt);
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "attempt {attempt}: {delay:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        assert_eq!(link.attempt(), 60);
    }

    #[test]
    fn health_follows_state_and_the_outage_record() {
        let link = link();
        // Attempts of the first connection are no outage.
        link.backoff(1);
        assert_eq!(*link.outage(), None);
        link.on_event(Event::Connected);
        link.connected();
        assert_eq!(link.health(&State::Connected), BrokerHealth::Connected);

        // The first attempt records the outage; the event, handled later, keeps its start.
        link.backoff(1);
        let since = link.outage().map(|o| o.since).unwrap();
        link.on_event(Event::Disconnected);
        assert_eq!(
            *link.outage(),
            Some(Outage {
                since,
                logged: true
            })
        );
        link.backoff(3);
        assert_eq!(
            link.health(&State::Disconnected),
            BrokerHealth::Reconnecting { attempt: 3, since }
        );

        link.on_event(Event::Connected);
        assert_eq!(*link.outage(), None);
        assert_eq!(link.attempt(), 1, "attempts reset once connected");
        assert_eq!(link.health(&State::Connected), BrokerHealth::Connected);

        assert!(link.close());
        assert!(!link.close());
        assert_eq!(link.health(&State::Connected), BrokerHealth::Closed);
        link.on_event(Event::Disconnected);
        assert_eq!(*link.outage(), None, "no outage after close");
    }
}
