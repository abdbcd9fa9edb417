//! [`Capabilities`]: what the transport under test can do, and so which checks run and what
//! they expect.

/// What the transport under test can do; checks expecting a capability the transport lacks check
/// that it is refused cleanly instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// [`ChannelSpec::Pattern`](sidecast_core::ChannelSpec::Pattern) subscriptions work (Redis `PSUBSCRIBE`, the memory broker). When
    /// `false`, subscribing to a pattern must fail with [`BrokerError::Unsupported`](sidecast_core::BrokerError::Unsupported).
    pub patterns: bool,
    /// [`Broker::history`](sidecast_core::Broker::history) offers a [`History`](sidecast_core::History) (the `history_*` checks run). When `false`, the
    /// broker must report no history ([`history_declared`](super::history_declared)) and the other history checks are
    /// skipped.
    pub history: bool,
    /// Which size bounds of [`HistoryRetention`](sidecast_core::HistoryRetention) the history
    /// applies: [`history_retention`](super::history_retention) runs when it trims by entries,
    /// [`history_retention_bytes`](super::history_retention_bytes) when it trims by bytes.
    pub history_bounds: HistoryBounds,
}

/// Which size bounds of [`HistoryRetention`](sidecast_core::HistoryRetention) a history applies
/// (every history applies `max_age`). A backend may be unable to apply one: RabbitMQ streams
/// cannot bound by number of messages, Redis streams cannot bound by bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBounds {
    /// `max_entries` is applied (checked by [`history_retention`](super::history_retention)).
    pub entries: bool,
    /// `max_bytes` is applied (checked by [`history_retention_bytes`](super::history_retention_bytes)).
    pub bytes: bool,
}

impl HistoryBounds {
    /// Trims by `max_entries` only (Redis).
    pub const ENTRIES: Self = Self {
        entries: true,
        bytes: false,
    };
    /// Trims by `max_bytes` only (RabbitMQ).
    pub const BYTES: Self = Self {
        entries: false,
        bytes: true,
    };
    /// Trims by both (the memory broker).
    pub const BOTH: Self = Self {
        entries: true,
        bytes: true,
    };
}

impl Capabilities {
    /// Everything the [`Broker`](sidecast_core::Broker) trait describes, including patterns and history, whose
    /// retention is checked by entries ([`HistoryBounds::ENTRIES`]; change it with
    /// [`Capabilities::with_history_bounds`]).
    pub const ALL: Self = Self {
        patterns: true,
        history: true,
        history_bounds: HistoryBounds::ENTRIES,
    };
    /// Pub/sub without pattern subscriptions and without history (the NATS example).
    pub const WITHOUT_PATTERNS: Self = Self {
        patterns: false,
        history: false,
        history_bounds: HistoryBounds::ENTRIES,
    };

    /// These capabilities, with or without history.
    pub const fn with_history(self, history: bool) -> Self {
        Self { history, ..self }
    }

    /// These capabilities, with a history that applies `bounds`.
    pub const fn with_history_bounds(self, bounds: HistoryBounds) -> Self {
        Self {
            history_bounds: bounds,
            ..self
        }
    }
}
