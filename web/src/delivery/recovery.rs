//! Connection state recovery on the broker's history ([`sidecast_core::History`]).
//!
//! With recovery on, the node delivers Sidecast's own events from the history instead of pub/sub:
//! each reaches the sockets with its offset as the last argument, in history order, and the node
//! catches up by itself after an outage (the transport resumes the history subscription from the
//! last entry it delivered). A socket that connects with `auth: {offset}` first receives the
//! events after that offset that are addressed to it, read from the history, then live events,
//! with no gap and no duplicate at the switch, and is told where it stands by the reserved event
//! [`RECOVERY_EVENT`], whose last argument is its starting offset.
//!
//! Offsets are opt-in (decision 26): only a socket whose CONNECT `auth` has an `offset` key (`""`
//! on a first connect) gets them, as the last argument of every event, and the report. Every
//! other socket receives exactly the published arguments and no reserved event, as from the
//! original application. The two kinds are told apart by two internal rooms, [`OFFSETS_ROOM`] and
//! [`PLAIN_ROOM`] (every socket is in one), so that each broadcast is encoded once per kind of
//! socket present, not once per socket.
//!
//! The switch is exact because delivery and the switch share one lock: the relay holds
//! [`Recovery::position`] while it emits an entry and moves the position to that entry's offset,
//! and a recovering socket (kept out of live events by the room [`RECOVERING_ROOM`]) leaves that
//! room only under the lock, once it has replayed everything up to the position.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sidecast_core::codec::control::{self, Control};
use sidecast_core::codec::native;
use sidecast_core::config::{RecoveryConfig, SlowClientPolicy};
use sidecast_core::envelope::now_millis;
use sidecast_core::{
    BrokerError, Envelope, HistoryEntry, HistorySubscription, Offset, Replay, SharedBroker, Signer,
};
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError, SocketIo};
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::task::JoinHandle;

use crate::delivery::emit::{self, Delivery, OFFSETS_ROOM, PLAIN_ROOM, RECOVERING_ROOM};
use crate::delivery::memberships::SharedMemberships;
use crate::delivery::room_view::{RoomView, Seat};
use crate::metrics::Metrics;

/// A history entry once opened: an event for sockets, or a room operation (a control entry,
/// decision 34) that every node applies in history order and no socket receives.
#[derive(Debug)]
pub enum Opened {
    /// An event for the sockets it is addressed to.
    Event(Envelope),
    /// A room operation.
    Control(Control),
}

/// Why a history entry is neither delivered nor applied.
#[derive(Debug, thiserror::Error)]
pub enum Dropped {
    /// Its signature is missing, wrong or too old (a signed bus).
    #[error(transparent)]
    Signature(#[from] sidecast_core::SignatureError),
    /// A room operation that does not decode or validate.
    #[error("undecodable room operation: {0}")]
    Control(sidecast_core::codec::DecodeError),
    /// An event that does not decode or validate.
    #[error("undecodable event: {0}")]
    Event(sidecast_core::codec::DecodeError),
}

impl Dropped {
    /// The `reason` label of the drop counter.
    fn reason(&self) -> &'static str {
        match self {
            Self::Signature(sidecast_core::SignatureError::Unsigned) => "unsigned",
            Self::Signature(_) => "bad_signature",
            Self::Control(_) | Self::Event(_) => "undecodable",
        }
    }
}

/// Opens a history entry's payload read at `now_ms`: verified with the signer, for entries up to
/// its age, when the bus is signed; then a room operation (a control entry) or an event, each
/// decoded and validated as every node does.
pub fn open_entry(
    payload: &[u8],
    signer: Option<(&Signer, Duration)>,
    now_ms: u64,
) -> Result<Opened, Dropped> {
    let verified;
    let payload: &[u8] = match signer {
        None => payload,
        Some((signer, max_age)) => {
            verified = signer.open_entry(payload, now_ms, max_age)?;
            &verified
        }
    };
    if control::is_control(payload) {
        return control::decode(payload)
            .map(Opened::Control)
            .map_err(Dropped::Control);
    }
    native::decode(payload)
        .map(Opened::Event)
        .map_err(Dropped::Event)
}

/// The reserved event every socket that asked for offsets receives once it is live: `{"status", "recovered"}` and, as
/// the last argument, the offset the socket starts from.
pub(crate) const RECOVERY_EVENT: &str = "sidecast:recovery";

/// How the start of the history ([`Offset::START`], the empty string inside) is written to
/// clients: a client sends `""` to say it has no offset yet, so the offset of an empty history
/// must be something else to come back with.
const START_ON_THE_WIRE: &str = "0";

/// `offset` as clients see it ([`START_ON_THE_WIRE`] for the start of the history).
fn wire_offset(offset: &Offset) -> &str {
    if offset.is_start() {
        START_ON_THE_WIRE
    } else {
        offset.as_str()
    }
}

/// Entries read from the history at a time while a socket recovers.
const PAGE: usize = 500;

/// How long a replay waits for a socket's full queue to drain before giving up on the socket.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a replay stopped before the socket caught up.
#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("the broker has no history")]
    NoHistory,
    #[error("the socket did not take its replay: {0}")]
    Socket(SendError),
}

/// Live-only events (not in the history: ingress formats, plain publishes) addressed to a socket
/// while it recovers, emitted when it goes live: the socket is kept out of live events then, and
/// its replay reads only the history.
#[derive(Debug, Clone, Default)]
pub(crate) struct Held(Arc<std::sync::Mutex<Vec<Envelope>>>);

/// The most live-only events held for one recovering socket; more are dropped and counted as
/// slow-client drops.
const MAX_HELD: usize = 1_000;

/// Where a socket starts, taken by the connect middleware once the socket is kept out of live
/// events, and kept in the socket's extensions until its connect handler takes it to bring it live.
#[derive(Debug, Clone)]
pub(crate) struct Start {
    /// What the client's CONNECT `auth` asked for.
    requested: Requested,
    /// The node's position when the socket was kept out of live events: a socket that asked
    /// for nothing gets every event after it, so that none published after its CONNECT reply
    /// is lost in the moment before it goes live.
    joined_at: Offset,
}

/// What a socket's CONNECT `auth` says about recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// No `offset` key: the socket gets the published arguments only, no offsets, no report.
    Nothing,
    /// `offset` is `""` or `null`: offsets from now on, starting at the node's position.
    New,
    /// `offset` is an offset to recover from.
    From(Offset),
    /// `offset` is neither a string nor `null`: offsets from now on, reported `unknown`.
    Malformed,
}

impl Requested {
    /// Whether the socket asked for offsets and the report.
    fn wants_offsets(&self) -> bool {
        *self != Requested::Nothing
    }
}

/// Marks a socket that asked for offsets, in its extensions (plain sockets carry nothing).
#[derive(Debug, Clone, Copy)]
struct WithOffsets;

/// Whether `socket` asked for offsets ([`Recovery::admit`] marked it).
fn wants_offsets(socket: &SocketRef) -> bool {
    socket.extensions.get::<WithOffsets>().is_some()
}

/// The recovery state of a node: its position in the history and what reading it needs.
pub(crate) struct Recovery {
    broker: SharedBroker,
    channel: String,
    signer: Option<Arc<Signer>>,
    /// How old a signed entry may be: the history's age plus the signing window (clock skew).
    entry_max_age: Duration,
    max_replay: usize,
    /// The offset of the newest history entry this node delivered (or the history's end when
    /// the node started); held while an event is delivered.
    position: Mutex<Offset>,
    /// The position when the node started: it applied every history entry after it itself.
    started_at: Offset,
    /// The position, for recovering sockets that wait for the relay to reach an offset.
    advanced: watch::Sender<Offset>,
    /// Connected sockets without offsets and with them: a kind nobody is is not encoded for.
    /// Counted before a socket goes live (under the position's lock, which delivery holds).
    plain_sockets: AtomicUsize,
    offset_sockets: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery")
            .field("channel", &self.channel)
            .field("max_replay", &self.max_replay)
            .finish_non_exhaustive()
    }
}

/// How a socket's recovery ended, as [`RECOVERY_EVENT`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// The socket asked for no offset: it starts at the node's position.
    New,
    /// Every event after the offset that was addressed to the socket was replayed.
    Recovered,
    /// Events after the offset are no longer in the history (or more than `max_replay`).
    Trimmed,
    /// The history never assigned the offset (malformed, from another backend).
    Unknown,
    /// The history could not be read; the socket is live without what it missed.
    Unavailable,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Recovered => "recovered",
            Self::Trimmed => "trimmed",
            Self::Unknown => "unknown",
            Self::Unavailable => "unavailable",
        }
    }
}

impl Recovery {
    /// Starts recovery on `broker`'s history of `channel`: the node's position is the history's
    /// end, and the returned subscription delivers every entry after it. `None` when the broker
    /// has no history (the caller warns and runs on pub/sub).
    pub(crate) async fn start(
        broker: &SharedBroker,
        channel: &str,
        signer: Option<Arc<Signer>>,
        signing_max_age: Duration,
        config: &RecoveryConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Option<(Arc<Self>, HistorySubscription)>, BrokerError> {
        let Some(history) = broker.history() else {
            return Ok(None);
        };
        let position = history.last_offset(channel).await?.unwrap_or(Offset::START);
        let subscription = history.subscribe_from(channel, &position).await?;
        let (advanced, _) = watch::channel(position.clone());
        let recovery = Arc::new(Self {
            broker: broker.clone(),
            channel: channel.to_owned(),
            signer,
            entry_max_age: config.retention().max_age + signing_max_age,
            max_replay: config.max_replay,
            started_at: position.clone(),
            position: Mutex::new(position),
            advanced,
            plain_sockets: AtomicUsize::new(0),
            offset_sockets: AtomicUsize::new(0),
            metrics,
        });
        Ok(Some((recovery, subscription)))
    }

    /// The node's position, locked: events delivered while it is held are in order with the
    /// switches of recovering sockets to live.
    pub(crate) async fn position(&self) -> MutexGuard<'_, Offset> {
        self.position.lock().await
    }

    /// The node's position when it started: it applies every history entry after it itself.
    pub(crate) fn started_at(&self) -> &Offset {
        &self.started_at
    }

    /// The room operations in the history after `after` up to `through` (included), in history
    /// order: what a starting node applies between another node's memberships and its own
    /// position. Events are skipped; an entry that cannot be opened is counted and logged as
    /// the relay does. `Err` names why they cannot be read completely.
    pub(crate) async fn operations_between(
        &self,
        after: &Offset,
        through: &Offset,
    ) -> Result<Vec<Control>, String> {
        let history = self
            .broker
            .history()
            .ok_or_else(|| "the broker has no history".to_owned())?;
        let mut operations = Vec::new();
        let mut cursor = after.clone();
        while cursor < *through {
            let entries = match history
                .read_after(&self.channel, &cursor, PAGE)
                .await
                .map_err(|e| e.to_string())?
            {
                Replay::Entries(entries) => entries,
                Replay::Trimmed => return Err(format!("entries after {cursor} were trimmed")),
                Replay::Unknown => return Err(format!("the history does not know {cursor}")),
            };
            let Some(last) = entries.last() else {
                break;
            };
            cursor = last.offset.clone();
            for entry in entries.iter().filter(|e| e.offset <= *through) {
                if let Some(Opened::Control(operation)) = self.open(entry) {
                    operations.push(operation);
                }
            }
        }
        Ok(operations)
    }

    /// Delivers the history's entries to this node's sockets, each with its offset, until the
    /// broker closes the subscription.
    pub(crate) fn spawn_relay(
        self: Arc<Self>,
        mut subscription: HistorySubscription,
        io: SocketIo,
        slow_client: SlowClientPolicy,
        memberships: SharedMemberships,
        presence: Option<Arc<crate::presence::tracker::Presence>>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut lagging = std::collections::HashSet::new();
            while let Some(entry) = subscription.recv().await {
                let opened = self.open(&entry);
                let source = match opened {
                    Some(Opened::Control(_)) => "control",
                    _ => "native",
                };
                self.metrics
                    .bus_received
                    .get_or_create(&crate::metrics::Source { source })
                    .inc();
                let mut position = self.position.lock().await;
                match opened {
                    Some(Opened::Event(envelope)) => {
                        emit::deliver_emit(
                            &io,
                            &self.metrics,
                            slow_client,
                            &mut lagging,
                            &envelope,
                            Some(self.delivery(&entry.offset)),
                        )
                        .await;
                    }
                    // Applied under the position's lock, like an event is delivered: the
                    // events after it in the history reach the sockets it changed.
                    Some(Opened::Control(operation)) => {
                        emit::apply_operation(
                            &io,
                            &self.metrics,
                            &*memberships,
                            presence.as_deref(),
                            &operation,
                        )
                        .await;
                    }
                    None => {}
                }
                position.clone_from(&entry.offset);
                self.advanced.send_replace(entry.offset);
            }
            tracing::debug!("history subscription ended; history relay stopped");
        })
    }

    /// The event or room operation of a history entry, verified when the bus is signed; `None`
    /// (counted and logged) when it cannot be delivered or applied.
    fn open(&self, entry: &HistoryEntry) -> Option<Opened> {
        let signer = self.signer.as_deref().map(|s| (s, self.entry_max_age));
        match open_entry(&entry.payload, signer, now_millis()) {
            Ok(opened) => Some(opened),
            Err(dropped) => {
                self.metrics.dropped(dropped.reason());
                tracing::warn!(offset = %entry.offset, error = %dropped, "history entry dropped");
                None
            }
        }
    }

    /// What an event at `offset` must be encoded for, given the sockets connected now; read
    /// while the position is held. The offset is written as clients see it ([`wire_offset`]).
    pub(crate) fn delivery<'a>(&self, offset: &'a Offset) -> Delivery<'a> {
        Delivery {
            offset: wire_offset(offset),
            plain: self.plain_sockets.load(Ordering::Acquire) > 0,
            with_offsets: self.offset_sockets.load(Ordering::Acquire) > 0,
        }
    }

    /// Counts `socket`, of its kind (with offsets or plain), when it is about to go live
    /// (`connected`) and when it has gone.
    pub(crate) fn count_socket(&self, socket: &SocketRef, connected: bool) {
        let counter = if wants_offsets(socket) {
            &self.offset_sockets
        } else {
            &self.plain_sockets
        };
        if connected {
            counter.fetch_add(1, Ordering::AcqRel);
        } else {
            // Never below zero, whatever the order of connects and disconnects.
            let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Keeps `socket`, which connects now with `auth`, out of live events and puts it in the
    /// room of its kind; returns where it starts. Called by the connect middleware.
    pub(crate) async fn admit(&self, socket: &SocketRef, auth: Option<&Value>) -> Start {
        let requested = requested(auth);
        let kind = if requested.wants_offsets() {
            socket.extensions.insert(WithOffsets);
            OFFSETS_ROOM
        } else {
            PLAIN_ROOM
        };
        // Joined before the position is read: nothing delivered after it reaches the socket
        // live, and the replay reads from it.
        socket.join([RECOVERING_ROOM, kind]);
        socket.extensions.insert(Held::default());
        Start {
            requested,
            joined_at: self.position.lock().await.clone(),
        }
    }

    /// Where a socket starts that the connect middleware did not admit (not expected): at the
    /// node's position, without offsets.
    pub(crate) async fn start_now(&self) -> Start {
        Start {
            requested: Requested::Nothing,
            joined_at: self.position.lock().await.clone(),
        }
    }

    /// Holds `envelope`, a live-only event, for the recovering sockets it is addressed to; called
    /// by the relay while it holds the node's position, like [`Recovery::go_live`].
    pub(crate) fn hold_for_recovering(&self, io: &SocketIo, envelope: &Envelope) {
        let Some(namespace) = io.of(&envelope.namespace) else {
            return;
        };
        for socket in namespace.to(RECOVERING_ROOM).sockets() {
            let Some(held) = socket.extensions.get::<Held>() else {
                continue;
            };
            if !addressed(&socket, envelope) {
                continue;
            }
            let mut held = held
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if held.len() < MAX_HELD {
                held.push(envelope.clone());
            } else {
                self.metrics.slow_client_drops.inc();
            }
        }
    }

    /// Brings a new socket live: replays what it missed after the offset it asked for (or,
    /// having asked for none, what was delivered since it connected), then lets it receive
    /// live events and tells it where it stands ([`RECOVERY_EVENT`]). The socket joined
    /// [`RECOVERING_ROOM`] in the connect middleware.
    pub(crate) async fn recover(self: Arc<Self>, socket: SocketRef, start: Start) {
        let with_offsets = start.requested.wants_offsets();
        let (from, status) = match start.requested {
            Requested::From(requested) => (requested, Status::Recovered),
            Requested::Malformed => {
                let position = self.position.lock().await;
                self.go_live(&socket, Status::Unknown, 0, &position);
                return;
            }
            Requested::Nothing | Requested::New => {
                let position = self.position.lock().await;
                if *position == start.joined_at {
                    // The usual case: nothing was delivered meanwhile, no history read.
                    self.go_live(&socket, Status::New, 0, &position);
                    return;
                }
                (start.joined_at, Status::New)
            }
        };
        let (outcome, replayed) = match self.replay(&socket, from, status, with_offsets).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(sid = %socket.id, error = %e, "history unreadable; the socket is live without what it missed");
                (Status::Unavailable, 0)
            }
        };
        if outcome != status {
            // The socket goes live at the node's position; it missed events and is told so.
            let position = self.position.lock().await;
            self.go_live(&socket, outcome, replayed, &position);
        }
    }

    /// Replays the entries after `cursor` addressed to `socket` until it has caught up with the
    /// node's position, then brings it live under the lock, reported as `live`. Any other
    /// status is returned with the socket still recovering.
    async fn replay(
        &self,
        socket: &SocketRef,
        mut cursor: Offset,
        live: Status,
        with_offsets: bool,
    ) -> Result<(Status, u64), ReplayError> {
        let history = self.broker.history().ok_or(ReplayError::NoHistory)?;
        let mut advanced = self.advanced.subscribe();
        let mut replayed = 0u64;
        let mut checked = false;
        // The rooms the socket was in at `cursor`, as far as the room operations since then
        // tell: the replay applies them in order, so that each event reaches it only if it
        // was in the room at that point of the history.
        let start_target = advanced.borrow().clone();
        let operations =
            operations_in(history, &self.channel, &cursor, &start_target, self).await?;
        let mut view = RoomView::at(seat(socket, &socket.rooms()), &operations);
        loop {
            // The node's position before reading: entries up to it are replayed here, later
            // ones come live once the socket has switched.
            let target = advanced.borrow_and_update().clone();
            let mut reached = false;
            if cursor <= target || !checked {
                let page = match history.read_after(&self.channel, &cursor, PAGE).await? {
                    Replay::Entries(entries) => entries,
                    Replay::Trimmed => return Ok((Status::Trimmed, replayed)),
                    Replay::Unknown => return Ok((Status::Unknown, replayed)),
                };
                checked = true;
                let complete = page.len() < PAGE;
                for entry in page {
                    if entry.offset > target {
                        reached = true;
                        break;
                    }
                    let envelope = match self.open(&entry) {
                        Some(Opened::Event(envelope)) => envelope,
                        Some(Opened::Control(operation)) => {
                            view.apply(seat(socket, &socket.rooms()), &operation);
                            cursor = entry.offset;
                            continue;
                        }
                        None => {
                            cursor = entry.offset;
                            continue;
                        }
                    };
                    if view.addressed(seat(socket, &socket.rooms()), &envelope) {
                        if replayed == self.max_replay as u64 {
                            return Ok((Status::Trimmed, replayed));
                        }
                        let offset = with_offsets.then_some(entry.offset.as_str());
                        send(socket, &envelope, offset).await?;
                        replayed += 1;
                    }
                    cursor = entry.offset;
                }
                if (complete || reached) && cursor < target {
                    // Nothing in the history between the last entry read and the position.
                    cursor = target.clone();
                }
            }
            if cursor >= target {
                let position = self.position.lock().await;
                if *position == cursor {
                    self.go_live(socket, live, replayed, &position);
                    return Ok((live, replayed));
                }
                if *position < cursor {
                    // The client saw events on another node that this one has not delivered
                    // yet: wait for the relay to reach them rather than deliver them twice.
                    drop(position);
                    if advanced.changed().await.is_err() {
                        return Err(BrokerError::Closed.into());
                    }
                }
            }
        }
    }

    /// Lets `socket` receive live events from `position` on and tells it so; called under the
    /// lock, so that no event is delivered between the two.
    fn go_live(&self, socket: &SocketRef, status: Status, replayed: u64, position: &Offset) {
        let with_offsets = wants_offsets(socket);
        let offset = with_offsets.then_some(wire_offset(position));
        // Live-only events that came while it recovered, with the position: no history entry
        // after it has reached the socket.
        // Removed, not just emptied: a live socket holds nothing more, for the rest of its life.
        if let Some(held) = socket.extensions.remove::<Held>() {
            let held = std::mem::take(
                &mut *held
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            for envelope in held {
                let args = emit::Args(&envelope.data, offset);
                if let Err(e) = socket.emit(&envelope.event, &args) {
                    self.metrics.slow_client_drops.inc();
                    tracing::debug!(sid = %socket.id, error = %e, "held live event not sent");
                }
            }
        }
        socket.leave(RECOVERING_ROOM);
        if !with_offsets {
            // Nothing reserved for a socket that did not ask: it sees what the original
            // application would send it.
            tracing::debug!(sid = %socket.id, replayed, "socket live");
            return;
        }
        self.metrics.recovery(status.as_str(), replayed);
        let report = [json!({ "status": status.as_str(), "recovered": replayed })];
        if let Err(e) = socket.emit(
            RECOVERY_EVENT,
            &emit::Args(&report, Some(wire_offset(position))),
        ) {
            tracing::debug!(sid = %socket.id, error = %e, "recovery report not sent");
        }
        tracing::debug!(sid = %socket.id, status = status.as_str(), replayed, offset = %position, "socket live");
    }
}

/// The room operations in the history between `from` and `target`, in order: what the view of a
/// socket recovering from `from` is worked out from ([`RoomView::at`], read once before the
/// replay).
async fn operations_in(
    history: &dyn sidecast_core::History,
    channel: &str,
    from: &Offset,
    target: &Offset,
    recovery: &Recovery,
) -> Result<Vec<Control>, ReplayError> {
    let mut cursor = from.clone();
    let mut operations = Vec::new();
    while cursor < *target {
        let page = match history.read_after(channel, &cursor, PAGE).await? {
            Replay::Entries(entries) => entries,
            // The replay reads the same range and reports it.
            Replay::Trimmed | Replay::Unknown => break,
        };
        let complete = page.len() < PAGE;
        for entry in page {
            if entry.offset > *target {
                return Ok(operations);
            }
            if let Some(Opened::Control(operation)) = recovery.open(&entry) {
                operations.push(operation);
            }
            cursor = entry.offset;
        }
        if complete {
            break;
        }
    }
    Ok(operations)
}

/// Whether `envelope` is addressed to `socket` as its rooms are now.
fn addressed(socket: &SocketRef, envelope: &Envelope) -> bool {
    let rooms = socket.rooms();
    RoomView::default().addressed(seat(socket, &rooms), envelope)
}

/// `socket`, with its rooms `rooms`, as a [`RoomView`] sees it.
fn seat<'a>(socket: &'a SocketRef, rooms: &'a [std::borrow::Cow<'static, str>]) -> Seat<'a> {
    Seat {
        namespace: socket.ns(),
        id: socket.id.as_str(),
        rooms,
    }
}

/// Sends one replayed event, waiting while the socket's queue is full: a replay can be longer
/// than the queue, and what a socket missed must reach it in order.
async fn send(
    socket: &SocketRef,
    envelope: &Envelope,
    offset: Option<&str>,
) -> Result<(), ReplayError> {
    let args = emit::Args(&envelope.data, offset);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        match socket.emit(&envelope.event, &args) {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull))
                if tokio::time::Instant::now() < deadline =>
            {
                // socketioxide offers no wait for queue space; its writer drains the queue
                // within milliseconds unless the client stopped reading.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(ReplayError::Socket(e)),
        }
    }
}

/// What a CONNECT packet's `auth` asks for: offsets when it has an `offset` key, recovery from
/// it when it is a non-empty string.
pub fn requested(auth: Option<&Value>) -> Requested {
    match auth.and_then(|a| a.get("offset")) {
        None => Requested::Nothing,
        Some(Value::Null) => Requested::New,
        Some(Value::String(s)) if s.is_empty() => Requested::New,
        Some(Value::String(s)) if s == START_ON_THE_WIRE => Requested::From(Offset::START),
        Some(Value::String(s)) => Requested::From(Offset::new(s.as_str())),
        Some(_) => Requested::Malformed,
    }
}

/// Recovery as `recovery.enabled` and the broker allow, with the history subscription its relay
/// delivers from; `(None, None)` when it is off or the broker has no history (said at start).
pub(crate) async fn from_config(
    config: &sidecast_core::Config,
    broker: &SharedBroker,
    signer: Option<Arc<Signer>>,
    metrics: Arc<Metrics>,
) -> Result<(Option<Arc<Recovery>>, Option<HistorySubscription>), BrokerError> {
    if !config.recovery.enabled {
        tracing::info!("recovery.enabled = false: events travel over pub/sub, without offsets");
        return Ok((None, None));
    }
    let started = Recovery::start(
        broker,
        &config.broker.channel,
        signer,
        Duration::from_millis(config.broker.signing_max_age_ms),
        &config.recovery,
        metrics,
    )
    .await?;
    match started {
        Some((recovery, history)) => {
            tracing::info!(channel = %config.broker.channel, "recovery on: events go through the broker's history");
            Ok((Some(recovery), Some(history)))
        }
        None => {
            tracing::warn!(
                "the broker offers no history: events travel over pub/sub, clients cannot \
                 recover what they miss while disconnected (set recovery.enabled = false to \
                 silence this)"
            );
            Ok((None, None))
        }
    }
}
