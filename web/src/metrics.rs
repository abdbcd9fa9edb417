//! Prometheus metrics of a node, served at `GET /metrics`.
//!
//! Each node owns its registry (no global recorder), so several nodes can live in one process
//! (tests, embedding) without mixing their figures.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the presence channel's messages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PresenceMessage {
    /// `sent` or `received`.
    pub direction: &'static str,
    /// `heartbeat`, `delta`, `snapshot_request`, `snapshot`, `stop` or `unreadable`.
    pub kind: &'static str,
}

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// Why it happened.
    pub reason: &'static str,
}

/// The labels of `sidecast_auth_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthRefusal {
    /// The refusing policy (`flask-session`, `jwt`, `http`; `other` for the rest).
    pub policy: &'static str,
    /// The policy's code (`expired`, `bad_signature`, `unavailable`...).
    pub reason: &'static str,
    /// What was refused: `connect` or `api`.
    pub action: &'static str,
}

/// A `source` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    /// Where the event came from: `api`, or the bus format (`native`, `control`,
    /// `python-socketio`, `node-emitter`).
    pub source: &'static str,
}

/// An `op` label: a room operation (`join`, `leave`, `disconnect`, `close_room`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    /// The operation.
    pub op: &'static str,
}

/// A `status` label: how a socket's recovery ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    /// `new` (`auth.offset` was ""), `recovered`, `trimmed`, `unknown`, `unavailable`.
    pub status: &'static str,
}

/// An `address` label: `host:port`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Address {
    /// `host:port`.
    pub address: String,
}

/// The statuses of `sidecast_socket_recoveries_total`, exported at 0 from start-up.
pub const RECOVERY_STATUSES: [&str; 5] = ["new", "recovered", "trimmed", "unknown", "unavailable"];

/// The room operations, as labelled.
pub const ROOM_OPERATIONS: [&str; 4] = ["join", "leave", "disconnect", "close_room"];

/// The reasons of `sidecast_room_operations_refused_total`, exported at 0 from start-up: bad
/// input (4xx naming the field, 413, 415), no credentials, a policy that refuses a room, the
/// rate limit, a broker that cannot take the operation.
pub const ROOM_REFUSAL_REASONS: [&str; 6] = [
    "invalid",
    "unauthenticated",
    "forbidden",
    "rate_limited",
    "unavailable",
    "internal",
];

/// The reasons of `sidecast_connects_refused_total`, exported at 0 from start-up.
pub const REFUSAL_REASONS: [&str; 5] = [
    "unauthenticated",
    "forbidden",
    "internal",
    "origin",
    "unavailable",
];

/// The sources of `sidecast_bus_messages_received_total`, exported at 0 from start-up.
pub const BUS_SOURCES: [&str; 4] = ["native", "control", "python-socketio", "node-emitter"];

/// The reasons of `sidecast_events_dropped_total`, exported at 0 from start-up.
pub const DROP_REASONS: [&str; 10] = [
    "undecodable",
    "unsigned",
    "bad_signature",
    "unknown_namespace",
    "subscription_overflow",
    "pickle",
    "binary",
    "not_an_event",
    "unsupported_packet",
    "unsupported_request",
];

/// Every metric of a node. Counters are cheap atomics: reading them in tests is fine.
pub struct Metrics {
    registry: Registry,
    /// Sockets connected now.
    pub sockets_connected: Gauge,
    /// Socket.IO connects refused, by reason (`unauthenticated`, `forbidden`, `internal`, `origin`,
    /// `unavailable`).
    pub connects_refused: Family<Reason, Counter>,
    /// Refusals of the auth policy (connects and `/api/`), by policy, reason code and action.
    pub auth_refusals: Family<AuthRefusal, Counter>,
    /// Events published, by source (`api`).
    pub events_published: Family<Source, Counter>,
    /// Bus messages received, by format (`native`, `control`, and the ingress formats
    /// `python-socketio`, `node-emitter`).
    pub bus_received: Family<Source, Counter>,
    /// Events emitted to this node's sockets (once per event, whatever the number of sockets).
    pub events_emitted: Counter,
    /// Socket deliveries dropped because the socket's queue was full (`server.slow_client`).
    pub slow_client_drops: Counter,
    /// Sockets disconnected because they fell behind (`server.slow_client = "disconnect"`).
    pub slow_client_disconnects: Counter,
    /// Bus messages dropped, by reason (`undecodable`, `unsigned`, `bad_signature`,
    /// `unknown_namespace`, `subscription_overflow`; from ingress channels also `pickle`, `binary`,
    /// `not_an_event`, `unsupported_packet`).
    pub events_dropped: Family<Reason, Counter>,
    /// Room operations this node applied to its sockets, by operation.
    pub room_operations: Family<Op, Counter>,
    /// `POST /api/rooms` requests refused, by reason ([`ROOM_REFUSAL_REASONS`]).
    pub room_operations_refused: Family<Reason, Counter>,
    /// Rooms that this node's sockets are in (per namespace; the room of each socket's own id
    /// not counted), as of the last `GET /metrics`.
    pub rooms: Gauge,
    /// (socket, room) memberships of this node's sockets, own-id rooms not counted, as of the
    /// last `GET /metrics`.
    pub room_memberships: Gauge,
    /// Sockets that asked for recovery (`auth.offset`), brought live, by how it ended.
    pub recoveries: Family<Status, Counter>,
    /// Events replayed to recovering sockets (once per socket).
    pub events_recovered: Counter,
    /// 1 when the broker is connected, 0 otherwise.
    pub broker_up: Gauge,
    /// Times the broker connection was lost.
    pub broker_reconnects: Counter,
    /// `POST /api/` handling time, in seconds.
    pub api_duration: Histogram,
    /// Time from an event's publish timestamp (`ts`) to its emission on this node, in seconds.
    pub delivery_lag: Histogram,
    /// Subscription overflow already counted (the broker's counter is cumulative).
    overflow_seen: AtomicU64,
    /// Failovers the broker followed (Redis Sentinel: a new master).
    pub broker_failovers: Counter,
    /// The primary the broker uses now (Redis Sentinel: the master), 1 for its address.
    pub broker_primary: Family<Address, Gauge>,
    /// Failovers already counted (the broker's figure is cumulative).
    failovers_seen: AtomicU64,
    /// Broker subscriptions found silent (their liveness probe did not come back) and rebuilt.
    pub broker_silent_subscriptions: Counter,
    /// Silent subscriptions already counted.
    silent_seen: AtomicU64,
    /// Losses of history entries the broker's history found (a Redis without persistence
    /// restarted, a failover to a replica that lagged), as of the last scrape.
    pub history_losses: Counter,
    /// History losses already counted (the history's counter is cumulative).
    history_loss_seen: AtomicU64,
    /// Sockets in this node's presence view, on every node (`[presence]`).
    pub presence_sockets: Gauge,
    /// Rooms with members in this node's presence view.
    pub presence_rooms: Gauge,
    /// Nodes in this node's presence view, itself included.
    pub presence_nodes: Gauge,
    /// Messages of the presence channel, by direction and kind.
    pub presence_messages: Family<PresenceMessage, Counter>,
    /// Admin UI logins, by result (`password`, `session`, `invalid`, `too_many_attempts`,
    /// `too_many_connections`).
    pub admin_logins: Family<Reason, Counter>,
    /// Admin UI actions, by result (`join`, `leave`, `disconnect`, `refused`, `rate_limited`,
    /// `failed`).
    pub admin_actions: Family<Reason, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sidecast");
        let m = Self {
            sockets_connected: Gauge::default(),
            connects_refused: Family::default(),
            auth_refusals: Family::default(),
            events_published: Family::default(),
            bus_received: Family::default(),
            events_emitted: Counter::default(),
            slow_client_drops: Counter::default(),
            slow_client_disconnects: Counter::default(),
            events_dropped: Family::default(),
            room_operations: Family::default(),
            room_operations_refused: Family::default(),
            rooms: Gauge::default(),
            room_memberships: Gauge::default(),
            recoveries: Family::default(),
            events_recovered: Counter::default(),
            broker_up: Gauge::default(),
            broker_reconnects: Counter::default(),
            // 0.1 ms .. ~3.3 s
            api_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            // 0.1 ms .. ~26 s
            delivery_lag: Histogram::new(exponential_buckets(0.0001, 2.0, 19)),
            registry: Registry::default(),
            overflow_seen: AtomicU64::new(0),
            broker_failovers: Counter::default(),
            broker_primary: Family::default(),
            failovers_seen: AtomicU64::new(0),
            broker_silent_subscriptions: Counter::default(),
            silent_seen: AtomicU64::new(0),
            history_losses: Counter::default(),
            history_loss_seen: AtomicU64::new(0),
            presence_sockets: Gauge::default(),
            presence_rooms: Gauge::default(),
            presence_nodes: Gauge::default(),
            presence_messages: Family::default(),
            admin_logins: Family::default(),
            admin_actions: Family::default(),
        };
        registry.register(
            "admin_logins",
            "Socket.IO Admin UI logins, by result",
            m.admin_logins.clone(),
        );
        registry.register(
            "admin_actions",
            "Socket.IO Admin UI actions, by result",
            m.admin_actions.clone(),
        );
        registry.register(
            "presence_sockets",
            "Sockets in this node's presence view, on every node",
            m.presence_sockets.clone(),
        );
        registry.register(
            "presence_rooms",
            "Rooms with members in this node's presence view",
            m.presence_rooms.clone(),
        );
        registry.register(
            "presence_nodes",
            "Nodes in this node's presence view",
            m.presence_nodes.clone(),
        );
        registry.register(
            "presence_messages",
            "Messages of the presence channel, by direction and kind",
            m.presence_messages.clone(),
        );
        registry.register(
            "broker_silent_subscriptions",
            "Broker subscriptions found silent (their probe did not come back) and rebuilt",
            m.broker_silent_subscriptions.clone(),
        );
        registry.register(
            "broker_failovers",
            "Failovers the broker followed to a new primary (Redis Sentinel master)",
            m.broker_failovers.clone(),
        );
        registry.register(
            "broker_master",
            "The primary the broker uses now (Redis Sentinel master): 1 for its address",
            m.broker_primary.clone(),
        );
        registry.register(
            "history_loss",
            "Losses of history entries the broker's history found (entries gone other than by \
             trimming); clients coming back from before one are told \"unknown\"",
            m.history_losses.clone(),
        );
        registry.register(
            "sockets_connected",
            "Socket.IO sockets connected now",
            m.sockets_connected.clone(),
        );
        registry.register(
            "connects_refused",
            "Socket.IO connects refused, by reason",
            m.connects_refused.clone(),
        );
        registry.register(
            "auth_refusals",
            "Refusals of the auth policy, by policy, reason and action (connect, api)",
            m.auth_refusals.clone(),
        );
        registry.register(
            "events_published",
            "Events published by this node, by source",
            m.events_published.clone(),
        );
        registry.register(
            "bus_messages_received",
            "Messages received from the broker, by format",
            m.bus_received.clone(),
        );
        registry.register(
            "events_emitted",
            "Events emitted to this node's sockets (once per event)",
            m.events_emitted.clone(),
        );
        registry.register(
            "slow_client_drops",
            "Socket deliveries dropped because the socket's queue was full",
            m.slow_client_drops.clone(),
        );
        registry.register(
            "slow_client_disconnects",
            "Sockets disconnected because they fell behind",
            m.slow_client_disconnects.clone(),
        );
        registry.register(
            "events_dropped",
            "Bus messages dropped, by reason",
            m.events_dropped.clone(),
        );
        registry.register(
            "room_operations_applied",
            "Room operations applied to this node's sockets, by operation",
            m.room_operations.clone(),
        );
        registry.register(
            "room_operations_refused",
            "POST /api/rooms requests refused, by reason",
            m.room_operations_refused.clone(),
        );
        registry.register(
            "rooms",
            "Rooms this node's sockets are in (own-id and internal rooms not counted)",
            m.rooms.clone(),
        );
        registry.register(
            "room_memberships",
            "Socket-room memberships on this node (own-id and internal rooms not counted)",
            m.room_memberships.clone(),
        );
        registry.register(
            "socket_recoveries",
            "Sockets brought live with recovery on, by status",
            m.recoveries.clone(),
        );
        registry.register(
            "events_recovered",
            "Events replayed to recovering sockets",
            m.events_recovered.clone(),
        );
        // Every labelled series is exported at 0 from start-up, so that dashboards and rate()
        // alerts see it before its first event.
        for status in RECOVERY_STATUSES {
            let _ = m.recoveries.get_or_create(&Status { status });
        }
        for op in ROOM_OPERATIONS {
            let _ = m.room_operations.get_or_create(&Op { op });
        }
        for reason in ROOM_REFUSAL_REASONS {
            let _ = m.room_operations_refused.get_or_create(&Reason { reason });
        }
        for reason in REFUSAL_REASONS {
            let _ = m.connects_refused.get_or_create(&Reason { reason });
        }
        for source in BUS_SOURCES {
            let _ = m.bus_received.get_or_create(&Source { source });
        }
        for reason in DROP_REASONS {
            let _ = m.events_dropped.get_or_create(&Reason { reason });
        }
        let _ = m.events_published.get_or_create(&Source { source: "api" });
        registry.register(
            "broker_up",
            "1 when the broker is connected",
            m.broker_up.clone(),
        );
        registry.register(
            "broker_reconnects",
            "Times the broker connection was lost",
            m.broker_reconnects.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "POST /api/ handling time",
            m.api_duration.clone(),
        );
        registry.register(
            "delivery_lag_seconds",
            "Time from an event's publish timestamp to its emission on this node",
            m.delivery_lag.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts a message of the presence channel.
    pub(crate) fn presence_message(&self, direction: &'static str, kind: &'static str) {
        self.presence_messages
            .get_or_create(&PresenceMessage { direction, kind })
            .inc();
    }

    /// Samples the size of the presence view.
    pub(crate) fn presence_view(&self, replica: &sidecast_core::presence::Replica) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.presence_sockets.set(gauge(replica.len()));
        self.presence_rooms.set(gauge(replica.room_count()));
        self.presence_nodes.set(gauge(replica.node_count()));
    }

    /// Counts a dropped bus message.
    pub fn dropped(&self, reason: &'static str) {
        self.events_dropped.get_or_create(&Reason { reason }).inc();
    }

    /// The current count of dropped bus messages for `reason`.
    pub fn dropped_count(&self, reason: &'static str) -> u64 {
        self.events_dropped.get_or_create(&Reason { reason }).get()
    }

    /// Counts a room operation applied to this node's sockets.
    pub fn room_operation(&self, op: &'static str) {
        self.room_operations.get_or_create(&Op { op }).inc();
    }

    /// Counts a `POST /api/rooms` refused for `reason`.
    pub fn room_operation_refused(&self, reason: &'static str) {
        self.room_operations_refused
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// The current count of `POST /api/rooms` refused for `reason`.
    pub fn room_operation_refused_count(&self, reason: &'static str) -> u64 {
        self.room_operations_refused
            .get_or_create(&Reason { reason })
            .get()
    }

    /// The current count of applied room operations `op`.
    pub fn room_operation_count(&self, op: &'static str) -> u64 {
        self.room_operations.get_or_create(&Op { op }).get()
    }

    /// Counts a socket brought live and the events replayed to it.
    pub fn recovery(&self, status: &'static str, replayed: u64) {
        self.recoveries.get_or_create(&Status { status }).inc();
        self.events_recovered.inc_by(replayed);
    }

    /// The current count of recoveries that ended with `status`.
    pub fn recovery_count(&self, status: &'static str) -> u64 {
        self.recoveries.get_or_create(&Status { status }).get()
    }

    /// Counts a refusal of the auth policy; `action` is `connect`, `api` or `rooms`.
    pub fn auth_refused(&self, error: &sidecast_core::AuthError, action: &'static str) {
        self.auth_refusals
            .get_or_create(&AuthRefusal {
                policy: error.policy(),
                reason: error.code(),
                action,
            })
            .inc();
    }

    /// Counts a refused connect.
    pub fn refused(&self, reason: &'static str) {
        self.connects_refused
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// Brings the subscription-overflow counter up to the broker's cumulative figure.
    pub(crate) fn subscription_overflow(&self, total: u64) {
        let seen = self.overflow_seen.swap(total, Ordering::Relaxed);
        if total > seen {
            self.events_dropped
                .get_or_create(&Reason {
                    reason: "subscription_overflow",
                })
                .inc_by(total - seen);
        }
    }

    /// Brings the failover and silent-subscription counters up to the broker's cumulative
    /// figures and labels the primary in use.
    pub(crate) fn broker_report(&self, report: &sidecast_core::broker::ConnectionReport) {
        let seen = self
            .failovers_seen
            .swap(report.failovers, Ordering::Relaxed);
        if report.failovers > seen {
            self.broker_failovers.inc_by(report.failovers - seen);
        }
        let seen = self
            .silent_seen
            .swap(report.silent_subscriptions, Ordering::Relaxed);
        if report.silent_subscriptions > seen {
            self.broker_silent_subscriptions
                .inc_by(report.silent_subscriptions - seen);
        }
        if let Some(primary) = &report.primary {
            let current = Address {
                address: primary.clone(),
            };
            if self
                .broker_primary
                .get(&current)
                .is_none_or(|g| g.get() != 1)
            {
                self.broker_primary.clear();
                self.broker_primary.get_or_create(&current).set(1);
            }
        }
    }

    /// Brings the history-loss counter up to the history's cumulative figure.
    pub(crate) fn history_losses(&self, total: u64) {
        let seen = self.history_loss_seen.swap(total, Ordering::Relaxed);
        if total > seen {
            self.history_losses.inc_by(total - seen);
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
