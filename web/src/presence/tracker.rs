//! [`Presence`]: this node's side of cluster-wide presence — which rooms of its sockets are
//! tracked, the changes it makes to the replica as sockets connect, join, leave and disconnect,
//! and the outbox the bus task ([`crate::presence::sync`]) sends from.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use serde_json::{Map, Value, json};
use sidecast_core::codec::control::Control;
use sidecast_core::config::PresenceConfig;
use sidecast_core::envelope::now_millis;
use sidecast_core::presence::wire::{Change, Entry};
use sidecast_core::presence::{Event, Replica, RoomFilter, RoomPresence};
use sidecast_core::{Principal, SharedBroker, Signer};
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use tokio::sync::{Notify, broadcast};

use crate::metrics::Metrics;
use crate::presence::notify::Diffs;
use crate::presence::view::ViewChange;

/// How a node's presence is built, besides `[presence]`: what the admin namespace turns on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceOptions {
    /// Track every socket of every namespace with all its rooms and its handshake (the Socket.IO
    /// Admin UI's socket list), whether or not `presence.rooms` names patterns. Presence rooms,
    /// their API and their reserved events stay those of `presence.rooms`.
    pub full_directory: bool,
}

/// The bus a started node sends its presence on.
pub(crate) struct Bus {
    pub(crate) broker: SharedBroker,
    pub(crate) channel: String,
    pub(crate) signer: Option<Arc<Signer>>,
}

/// This node's presence: its own sockets' entries, the cluster's replica, and what is waiting to
/// be sent.
pub(crate) struct Presence {
    pub(crate) node_id: String,
    pub(crate) config: PresenceConfig,
    filter: RoomFilter,
    full: bool,
    replica: Mutex<Replica>,
    pub(crate) view_changes: broadcast::Sender<ViewChange>,
    /// Own changes not sent yet, in the order the replica applied them.
    outbox: Mutex<Vec<Change>>,
    pub(crate) outbox_ready: Notify,
    pub(crate) diffs: Diffs,
    io: OnceLock<SocketIo>,
    pub(crate) bus: OnceLock<Bus>,
    pub(crate) metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("node_id", &self.node_id)
            .field("full_directory", &self.full)
            .finish_non_exhaustive()
    }
}

impl Presence {
    /// The presence of node `node_id`, or `None` when neither `presence.rooms` nor the full
    /// directory asks for it (then nothing is tracked, subscribed or sent).
    pub(crate) fn new(
        config: &PresenceConfig,
        options: &PresenceOptions,
        node_id: &str,
        metrics: Arc<Metrics>,
    ) -> Option<Arc<Self>> {
        if !config.enabled() && !options.full_directory {
            return None;
        }
        let interval = config.heartbeat_ms;
        Some(Arc::new(Self {
            node_id: node_id.to_owned(),
            filter: RoomFilter::new(&config.rooms),
            config: config.clone(),
            full: options.full_directory,
            replica: Mutex::new(Replica::new(node_id, interval)),
            view_changes: broadcast::channel(4096).0,
            outbox: Mutex::new(Vec::new()),
            outbox_ready: Notify::new(),
            diffs: Diffs::default(),
            io: OnceLock::new(),
            bus: OnceLock::new(),
            metrics,
        }))
    }

    /// The Socket.IO server, once built (it is built after the connect path that uses this).
    pub(crate) fn set_io(&self, io: SocketIo) {
        let _ = self.io.set(io);
    }

    pub(crate) fn io(&self) -> Option<&SocketIo> {
        self.io.get()
    }

    pub(crate) fn replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `room` is a presence room (`presence.rooms`), whoever is in it.
    pub(crate) fn is_presence_room(&self, room: &str) -> bool {
        self.filter.tracks(room, "")
    }

    /// Whether every socket is tracked (the full directory).
    pub(crate) fn full_directory(&self) -> bool {
        self.full
    }

    /// Who is in `room` of `nsp`, as this node knows it.
    pub(crate) fn room(&self, nsp: &str, room: &str) -> RoomPresence {
        self.replica().room(nsp, room, self.config.max_members)
    }

    /// The rooms of `socket` that are tracked.
    fn tracked_rooms(&self, socket: &SocketRef) -> BTreeSet<String> {
        let sid = socket.id.as_str();
        socket
            .rooms()
            .into_iter()
            .filter(|room| {
                // Internal rooms are named with a control character (crate::delivery::emit).
                !room.starts_with('\u{1}')
                    && if self.full {
                        room.as_ref() != sid
                    } else {
                        self.filter.tracks(room, sid)
                    }
            })
            .map(|room| room.into_owned())
            .collect()
    }

    /// A socket connected (its first rooms joined).
    pub(crate) fn socket_connected(&self, socket: &SocketRef) {
        let rooms = self.tracked_rooms(socket);
        if rooms.is_empty() && !self.full {
            return;
        }
        let entry = self.entry(socket, rooms);
        let joined: Vec<String> = entry.rooms.iter().cloned().collect();
        self.commit(vec![Change::Connect { socket: entry }]);
        self.send_snapshots(socket, &joined);
    }

    /// A socket disconnected.
    pub(crate) fn socket_disconnected(&self, nsp: &str, sid: &str, reason: &str) {
        let user = {
            let replica = self.replica();
            match replica.entry(&self.node_id, nsp, sid) {
                Some(entry) => entry.user.clone(),
                None => return,
            }
        };
        self.commit(vec![Change::Disconnect {
            nsp: nsp.to_owned(),
            sid: sid.to_owned(),
            user,
            reason: reason.to_owned(),
        }]);
    }

    /// Brings `socket`'s entry in line with its rooms now (after a room operation).
    pub(crate) fn resync(&self, socket: &SocketRef) {
        if !socket.connected() {
            return;
        }
        let rooms = self.tracked_rooms(socket);
        let (nsp, sid) = (socket.ns().to_owned(), socket.id.to_string());
        let old = self
            .replica()
            .entry(&self.node_id, &nsp, &sid)
            .map(|e| (e.rooms.clone(), e.user.clone()));
        let Some((old, user)) = old else {
            if !rooms.is_empty() {
                self.socket_connected(socket);
            }
            return;
        };
        let mut changes = Vec::new();
        for room in old.difference(&rooms) {
            changes.push(Change::Leave {
                nsp: nsp.clone(),
                sid: sid.clone(),
                user: user.clone(),
                room: room.clone(),
            });
        }
        let joined: Vec<String> = rooms.difference(&old).cloned().collect();
        for room in &joined {
            changes.push(Change::Join {
                nsp: nsp.clone(),
                sid: sid.clone(),
                user: user.clone(),
                room: room.clone(),
            });
        }
        if rooms.is_empty() && !self.full {
            // In no presence room any more: nothing of it is kept.
            changes.push(Change::Disconnect {
                nsp,
                sid,
                user,
                reason: "left its presence rooms".into(),
            });
        }
        if changes.is_empty() {
            return;
        }
        self.commit(changes);
        self.send_snapshots(socket, &joined);
    }

    /// Records the transport of this node's sockets that connected over polling and upgraded to
    /// websocket since (socketioxide tells no upgrade): full directory only, every heartbeat.
    pub(crate) fn refresh_transports(&self) {
        let Some(io) = self.io().filter(|_| self.full) else {
            return;
        };
        let polling: Vec<(String, String)> = self
            .replica()
            .sockets()
            .filter(|(node, entry)| *node == self.node_id && entry.transport == "polling")
            .map(|(_, entry)| (entry.nsp.clone(), entry.sid.clone()))
            .collect();
        let changes: Vec<Change> = polling
            .into_iter()
            .filter_map(|(nsp, sid)| {
                let socket = io.of(nsp.as_str())?.get_socket(sid.parse().ok()?)?;
                let transport = transport_name(&socket);
                (transport != "polling").then_some(Change::Transport {
                    nsp,
                    sid,
                    transport,
                })
            })
            .collect();
        if !changes.is_empty() {
            self.commit(changes);
        }
    }

    /// The sockets whose tracked rooms `operation` may change, before it is applied; `None` when
    /// it changes none (a disconnect is seen by the socket's disconnect handler).
    pub(crate) fn affected(&self, io: &SocketIo, operation: &Control) -> Option<Vec<SocketRef>> {
        let (namespace, to, except, rooms) = match operation {
            Control::Join {
                rooms,
                namespace,
                except,
                join,
            } => (namespace, rooms, except.as_slice(), join),
            Control::Leave {
                rooms,
                namespace,
                except,
                leave,
            } => (namespace, rooms, except.as_slice(), leave),
            Control::CloseRoom { rooms, namespace } => (namespace, rooms, &[][..], rooms),
            _ => return None,
        };
        if !self.full && !rooms.iter().any(|r| self.filter.tracks(r, "")) {
            return None;
        }
        let mut op = io.of(namespace.as_str())?;
        if !to.is_empty() {
            op = op.to(to.clone());
        }
        if !except.is_empty() {
            op = op.except(except.to_vec());
        }
        Some(op.sockets())
    }

    /// Applies own changes to the replica, queues them for the bus and tells who listens.
    fn commit(&self, changes: Vec<Change>) {
        let now = now_millis();
        let mut events = Vec::new();
        {
            let mut replica = self.replica();
            let mut outbox = self.outbox.lock().unwrap_or_else(PoisonError::into_inner);
            for change in changes {
                events.extend(replica.apply_own(change.clone(), now));
                outbox.push(change);
            }
        }
        self.outbox_ready.notify_one();
        self.dispatch(events);
    }

    /// The changes waiting to be sent, taken.
    pub(crate) fn take_outbox(&self) -> Vec<Change> {
        std::mem::take(&mut *self.outbox.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Tells the view's listeners and the presence rooms' sockets about `events`.
    pub(crate) fn dispatch(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let listening = self.view_changes.receiver_count() > 0;
        let mut diffs = false;
        for event in events {
            match &event {
                Event::UserJoined {
                    nsp,
                    room,
                    user,
                    info,
                } if self.is_presence_room(room) => {
                    self.diffs.joined(nsp, room, user, info.clone());
                    diffs = true;
                }
                Event::UserLeft { nsp, room, user } if self.is_presence_room(room) => {
                    self.diffs.left(nsp, room, user);
                    diffs = true;
                }
                _ => {}
            }
            if listening && let Some(change) = crate::presence::convert::view_change(event) {
                let _ = self.view_changes.send(change);
            }
        }
        if diffs {
            self.diffs.ready.notify_one();
        }
    }

    /// Sends `socket` the state of each presence room among `rooms` it just joined.
    fn send_snapshots(&self, socket: &SocketRef, rooms: &[String]) {
        for room in rooms.iter().filter(|r| self.is_presence_room(r)) {
            let state = self.room(socket.ns(), room);
            if let Err(e) = socket.emit(crate::presence::notify::SNAPSHOT_EVENT, &state) {
                tracing::debug!(sid = %socket.id, room = %room, error = %e, "presence snapshot not sent");
            }
        }
    }

    /// The entry of `socket` in `rooms`.
    fn entry(&self, socket: &SocketRef, rooms: BTreeSet<String>) -> Entry {
        let principal = socket.extensions.get::<Principal>();
        let info = principal.as_ref().and_then(|p| p.info.clone()).filter(|info| {
            let size = serde_json::to_vec(info).map_or(usize::MAX, |b| b.len());
            let fits = size <= self.config.max_info_bytes;
            if !fits {
                tracing::warn!(
                    sid = %socket.id,
                    size,
                    max = self.config.max_info_bytes,
                    "the auth policy's info for presence is larger than presence.max_info_bytes; left out"
                );
            }
            fits
        });
        Entry {
            nsp: socket.ns().to_owned(),
            sid: socket.id.to_string(),
            user: principal.map(|p| p.id),
            info,
            rooms,
            connected_at_ms: now_millis(),
            transport: transport_name(socket),
            handshake: self.full.then(|| handshake(socket)),
        }
    }
}

/// A disconnect reason as socket.io names it (`"transport close"`, `"ping timeout"`...).
pub(crate) fn reason_name(reason: socketioxide::socket::DisconnectReason) -> &'static str {
    use socketioxide::socket::DisconnectReason as R;
    match reason {
        R::TransportClose => "transport close",
        R::MultipleHttpPollingError | R::PacketParsingError => "parse error",
        R::TransportError => "transport error",
        R::HeartbeatTimeout => "ping timeout",
        R::ClientNSDisconnect => "client namespace disconnect",
        R::ServerNSDisconnect => "server namespace disconnect",
        R::ClosingServer => "server shutting down",
    }
}

/// The transport's name as Socket.IO spells it.
fn transport_name(socket: &SocketRef) -> String {
    match socket.transport_type() {
        socketioxide::TransportType::Websocket => "websocket",
        socketioxide::TransportType::Polling => "polling",
    }
    .to_owned()
}

/// The handshake as the Socket.IO Admin UI shows it (`SerializedSocket.handshake`), without the
/// `cookie` and `authorization` headers.
fn handshake(socket: &SocketRef) -> Value {
    let parts = socket.req_parts();
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        if name == axum::http::header::COOKIE || name == axum::http::header::AUTHORIZATION {
            continue;
        }
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
        }
    }
    let peer = crate::identity::request::peer_addr(&parts.extensions);
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // As socket.io's admin UI does: the client's address behind a proxy first.
    let address = header("cf-connecting-ip")
        .or_else(|| header("x-forwarded-for").map(|v| v.split(',').next().unwrap_or(v).trim()))
        .map(str::to_owned)
        .or_else(|| peer.map(|p| p.ip().to_string()))
        .unwrap_or_default();
    let query: Map<String, Value> = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), Value::String(v.to_owned()))
        })
        .collect();
    let now = now_millis();
    let secure =
        parts.uri.scheme_str() == Some("https") || header("x-forwarded-proto") == Some("https");
    let origin = header("origin");
    let host = header("host");
    let xdomain = match (origin, host) {
        (Some(origin), Some(host)) => !origin.ends_with(&format!("//{host}")),
        _ => false,
    };
    json!({
        "address": address,
        "headers": headers,
        "query": query,
        "issued": now,
        "secure": secure,
        "time": httpdate(now),
        "url": parts.uri.to_string(),
        "xdomain": xdomain,
    })
}

/// `ms` since the Unix epoch as a date string, like JavaScript's `Date.toString()` is read by the
/// UI (any parseable date does).
fn httpdate(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::httpdate;

    #[test]
    fn dates_are_iso_8601() {
        assert_eq!(httpdate(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(httpdate(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
