//! A minimal Socket.IO client for load generation: Engine.IO 4 / Socket.IO 5 over the websocket
//! transport only, one task per connection.
//!
//! It speaks just what a listening client needs: the Engine.IO open packet (`0{...}`), the
//! Socket.IO connect (`40`, or `40{"token":...}`) and its answer (`40{"sid":...}` or the refusal
//! `44{...}`), pings (`2`, answered `3`), and events (`42["event",...]`), of which it reads only the
//! send timestamp `"t"` (microseconds since the Unix epoch). A delivery costs no allocation here
//! beyond the websocket frame itself.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::source;

/// Latency shards: clients record into `id % SHARDS`, so that two worker threads rarely want the
/// same lock, without a histogram per client (thousands of them would cost megabytes).
const SHARDS: usize = 16;

/// Histograms hold microseconds, from 1 µs to 10 minutes, with 3 significant digits.
const HISTOGRAM_MAX_US: u64 = 600_000_000;

/// A websocket read buffer sized for small Socket.IO packets: tungstenite's default is 128 KiB,
/// which would make 10,000 clients cost more than a gigabyte, and it clears the free part of the
/// buffer before each read, so a small one also saves CPU. Larger frames still fit: it grows.
const READ_BUFFER: usize = 1024;

/// Microseconds since the Unix epoch: the unit of the `"t"` timestamp in published bodies. (Not
/// nanoseconds: JavaScript servers would round integers above 2^53.)
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// An empty microsecond histogram (1 µs to 10 minutes, 3 significant digits).
pub(crate) fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
}

/// Where and how every client connects.
#[derive(Debug)]
pub(crate) struct ClientSetup {
    /// The resolved server address.
    pub(crate) addr: SocketAddr,
    /// `ws://host:port{path}/?EIO=4&transport=websocket`.
    pub(crate) uri: Uri,
    /// The session cookie(s) from the login URL.
    pub(crate) cookie: Option<HeaderValue>,
    /// `40`, or `40{"token":...}`.
    pub(crate) connect_packet: Utf8Bytes,
    /// The same with `"offset":""` in the auth payload: a client that asks for recovery.
    pub(crate) offset_connect_packet: Utf8Bytes,
    /// Percent of the clients that send `offset_connect_packet` (`--recovery-clients`).
    pub(crate) recovery_percent: u8,
    /// `42["<event>"`: the start of the events that count.
    pub(crate) event_prefix: Vec<u8>,
    /// Bound on TCP connect + websocket handshake + Socket.IO connect.
    pub(crate) connect_timeout: Duration,
    /// Source addresses: client `i` binds to `sources[i % n]`, port `source_ports[i / n]` (0,
    /// the kernel's choice, past its end); empty lets the kernel choose both.
    pub(crate) sources: Vec<IpAddr>,
    /// The ports shared by the source addresses (see [`source`]).
    pub(crate) source_ports: Vec<u16>,
}

impl ClientSetup {
    /// The CONNECT packet client `id` sends: every client whose `id % 100` is below
    /// `recovery_percent` asks for recovery, so that any share is spread evenly over the ramp.
    pub(crate) fn connect_packet_of(&self, id: usize) -> &Utf8Bytes {
        if id % 100 < usize::from(self.recovery_percent) {
            &self.offset_connect_packet
        } else {
            &self.connect_packet
        }
    }
}

/// One latency shard.
#[derive(Debug)]
struct Shard {
    latency: Histogram<u64>,
    /// Deliveries that carried no readable timestamp.
    untimed: u64,
    /// When the last delivery of this shard arrived (µs since the epoch).
    last_us: u64,
}

/// What every client task reports to (connect outcomes, deliveries, latencies), read by the
/// progress line and the report.
#[derive(Debug)]
pub(crate) struct ClientStats {
    pub(crate) connected: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Connected clients that lost their connection (or were disconnected by the server).
    pub(crate) disconnected: AtomicU64,
    /// Events received, per client: one slot each, so that no counter is shared.
    received: Box<[AtomicU64]>,
    /// Text packets received after the Socket.IO connect (events, pings, anything), per client.
    packets: Box<[AtomicU64]>,
    /// Connected clients per source address, as the kernel bound them.
    sources: Mutex<BTreeMap<IpAddr, u64>>,
    /// Whether each client got connected (it may have been disconnected since).
    was_connected: Box<[AtomicBool]>,
    shards: Box<[Mutex<Shard>]>,
    connect_times: Mutex<Histogram<u64>>,
    /// An empty histogram to clone.
    empty: Histogram<u64>,
    pub(crate) first_refusal: OnceLock<String>,
    pub(crate) first_failure: OnceLock<String>,
    pub(crate) first_disconnect: OnceLock<String>,
}

impl ClientStats {
    pub(crate) fn new(clients: usize) -> Result<Self, hdrhistogram::CreationError> {
        let empty = histogram()?;
        Ok(Self {
            connected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            received: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            packets: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            sources: Mutex::new(BTreeMap::new()),
            was_connected: (0..clients).map(|_| AtomicBool::new(false)).collect(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        latency: empty.clone(),
                        untimed: 0,
                        last_us: 0,
                    })
                })
                .collect(),
            connect_times: Mutex::new(empty.clone()),
            empty,
            first_refusal: OnceLock::new(),
            first_failure: OnceLock::new(),
            first_disconnect: OnceLock::new(),
        })
    }

    /// Clients whose connect has been decided (connected, refused or failed).
    pub(crate) fn settled(&self) -> u64 {
        self.connected.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }

    /// Events received by all clients so far.
    pub(crate) fn deliveries(&self) -> u64 {
        self.received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .sum()
    }

    /// Events received by each client that got connected.
    pub(crate) fn received_per_connected_client(&self) -> Vec<u64> {
        self.per_connected_client(&self.received)
    }

    /// Text packets received so far by each client that got connected.
    pub(crate) fn packets_per_connected_client(&self) -> Vec<u64> {
        self.per_connected_client(&self.packets)
    }

    /// The values of a per-client counter, for the clients that got connected.
    fn per_connected_client(&self, counters: &[AtomicU64]) -> Vec<u64> {
        counters
            .iter()
            .zip(self.was_connected.iter())
            .filter(|(_, c)| c.load(Ordering::Relaxed))
            .map(|(v, _)| v.load(Ordering::Relaxed))
            .collect()
    }

    /// Connected clients per source address (what their sockets were bound to).
    pub(crate) fn source_counts(&self) -> Vec<(IpAddr, u64)> {
        self.sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(ip, n)| (*ip, *n))
            .collect()
    }

    /// Starts a new measurement window: forgets the events received and their latencies so far
    /// (the warm-up's), keeping the connections' counters (connected, packets, sources). Events
    /// still on their way when it runs would count in the new window.
    pub(crate) fn reset_window(&self) {
        for slot in self.received.iter() {
            slot.store(0, Ordering::Relaxed);
        }
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.latency.reset();
            shard.untimed = 0;
            shard.last_us = 0;
        }
    }

    /// The merged latency histogram, deliveries without a timestamp, and the time of the last
    /// delivery (µs since the epoch; 0 when none).
    pub(crate) fn latency(&self) -> (Histogram<u64>, u64, u64) {
        let mut merged = self.empty.clone();
        let mut untimed = 0;
        let mut last = 0;
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            // Same bounds on both sides: adding cannot fail.
            let _ = merged.add(&shard.latency);
            untimed += shard.untimed;
            last = last.max(shard.last_us);
        }
        (merged, untimed, last)
    }

    pub(crate) fn connect_times(&self) -> Histogram<u64> {
        self.connect_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record_delivery(&self, id: usize, sent_us: Option<u64>) {
        if let Some(slot) = self.received.get(id) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        let now = now_micros();
        let Some(shard) = self.shards.get(id % SHARDS) else {
            return;
        };
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match sent_us {
            Some(sent) => shard
                .latency
                .saturating_record(now.saturating_sub(sent).max(1)),
            None => shard.untimed += 1,
        }
        shard.last_us = now;
    }
}

/// Why a client did not get connected.
enum ConnectError {
    /// The server answered and said no (`44`, or an HTTP 401/403 on the upgrade).
    Refused(String),
    /// Anything else: network, protocol, time-out.
    Failed(String),
}

type Ws = WebSocketStream<TcpStream>;

/// One client: connects, then counts events until its connection ends. Runs until aborted.
pub(crate) async fn run(id: usize, setup: Arc<ClientSetup>, stats: Arc<ClientStats>) {
    let started = Instant::now();
    let n = setup.sources.len();
    let source = (n > 0).then(|| {
        let port = setup.source_ports.get(id / n).copied().unwrap_or(0);
        SocketAddr::new(setup.sources[id % n], port)
    });
    let connected = tokio::time::timeout(setup.connect_timeout, connect(id, &setup, source)).await;
    let (mut ws, local) = match connected {
        Ok(Ok(connection)) => connection,
        Ok(Err(ConnectError::Refused(reason))) => {
            let _ = stats.first_refusal.set(reason);
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Ok(Err(ConnectError::Failed(reason))) => {
            let _ = stats.first_failure.set(reason);
            stats.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_elapsed) => {
            let _ = stats.first_failure.set(format!(
                "no Socket.IO connect within {:?} (raise --connect-timeout or lower --connect-rate)",
                setup.connect_timeout
            ));
            stats.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    stats
        .connect_times
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .saturating_record(micros.max(1));
    if let Some(flag) = stats.was_connected.get(id) {
        flag.store(true, Ordering::Relaxed);
    }
    if let Some(ip) = local {
        *stats
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(ip)
            .or_default() += 1;
    }
    stats.connected.fetch_add(1, Ordering::Relaxed);

    let reason = listen(id, &mut ws, &setup, &stats).await;
    let _ = stats.first_disconnect.set(reason);
    stats.disconnected.fetch_add(1, Ordering::Relaxed);
}

/// Reads packets until the connection ends; returns why it ended.
async fn listen(id: usize, ws: &mut Ws, setup: &ClientSetup, stats: &ClientStats) -> String {
    const PONG: Utf8Bytes = Utf8Bytes::from_static("3");
    let packets = stats.packets.get(id);
    while let Some(message) = ws.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                return match frame {
                    Some(f) => format!("the server closed the websocket: {} {}", f.code, f.reason),
                    None => "the server closed the websocket".to_owned(),
                };
            }
            // Binary attachments, websocket pings (tungstenite answers them) and pongs.
            Ok(_) => continue,
            Err(e) => return format!("connection lost: {e}"),
        };
        if let Some(packets) = packets {
            packets.fetch_add(1, Ordering::Relaxed);
        }
        let bytes = text.as_bytes();
        match bytes {
            [b'2'] => {
                if let Err(e) = ws.send(Message::Text(PONG)).await {
                    return format!("cannot answer ping: {e}");
                }
            }
            [b'4', b'2', ..] if bytes.starts_with(&setup.event_prefix) => {
                stats.record_delivery(id, timestamp(&bytes[setup.event_prefix.len()..]));
            }
            [b'4', b'1', ..] => return "the server disconnected the socket (41)".to_owned(),
            [b'1', ..] => return "the server closed the Engine.IO session (1)".to_owned(),
            _ => {}
        }
    }
    "the connection ended".to_owned()
}

/// The value of the first `"t":` field in an event's arguments, digits only.
fn timestamp(rest: &[u8]) -> Option<u64> {
    // The event name is followed by `,` then the argument: `,{"t":123,"seq":4}]`.
    let at = find(rest, b"\"t\":")?;
    let digits = rest.get(at + 4..)?;
    let mut value: u64 = 0;
    let mut seen = false;
    for &b in digits.iter().skip_while(|b| **b == b' ') {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        seen = true;
    }
    seen.then_some(value)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// TCP connect (from `source` when given), websocket upgrade, Engine.IO open, Socket.IO connect.
/// Returns the connection and the source address the kernel gave it.
async fn connect(
    id: usize,
    setup: &ClientSetup,
    source: Option<SocketAddr>,
) -> Result<(Ws, Option<IpAddr>), ConnectError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| ConnectError::Failed(format!("{what}: {e}"));
    let cannot_connect = |e| failed(&format!("cannot connect to {}", setup.addr), &e);
    let tcp = match source {
        None => TcpStream::connect(setup.addr)
            .await
            .map_err(cannot_connect)?,
        Some(from) => {
            let bind_failed = |e| ConnectError::Failed(source::bind_error(from.ip(), &e));
            let socket = source::new_socket(from.ip()).map_err(bind_failed)?;
            if let Err(e) = socket.bind(from) {
                // A planned port taken since the plan (by another program): the kernel picks one.
                if from.port() == 0 || e.kind() != std::io::ErrorKind::AddrInUse {
                    return Err(bind_failed(e));
                }
                socket
                    .bind(SocketAddr::new(from.ip(), 0))
                    .map_err(bind_failed)?;
            }
            socket.connect(setup.addr).await.map_err(cannot_connect)?
        }
    };
    // Small packets should leave at once.
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().ok().map(|a| a.ip());
    let mut request = setup
        .uri
        .clone()
        .into_client_request()
        .map_err(|e| failed("invalid websocket request", &e))?;
    if let Some(cookie) = &setup.cookie {
        request.headers_mut().insert(header::COOKIE, cookie.clone());
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let (mut ws, _response) =
        tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
            .await
            .map_err(|e| match e {
                WsError::Http(response) => {
                    let status = response.status();
                    let text = format!("HTTP {status} on the websocket upgrade of {}", setup.uri);
                    if status == 401 || status == 403 {
                        ConnectError::Refused(text)
                    } else {
                        ConnectError::Failed(format!(
                            "{text}; check --url and --path (the server's Socket.IO path)"
                        ))
                    }
                }
                other => failed("websocket handshake failed", &other),
            })?;

    // Engine.IO open: `0{"sid":...,"pingInterval":...}`.
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        return Err(ConnectError::Failed(format!(
            "expected the Engine.IO open packet (0{{...}}), got {:?}; is this an Engine.IO 4 server?",
            preview(&open)
        )));
    }
    ws.send(Message::Text(setup.connect_packet_of(id).clone()))
        .await
        .map_err(|e| failed("cannot send the Socket.IO connect", &e))?;
    loop {
        let packet = next_text(&mut ws).await?;
        if packet.starts_with("40") {
            return Ok((ws, local));
        }
        if let Some(detail) = packet.strip_prefix("44") {
            return Err(ConnectError::Refused(refusal_message(detail)));
        }
        if packet == "2" {
            // A ping before the connect answer: answer it and keep waiting.
            ws.send(Message::Text(Utf8Bytes::from_static("3")))
                .await
                .map_err(|e| failed("cannot answer ping", &e))?;
            continue;
        }
        return Err(ConnectError::Failed(format!(
            "unexpected answer to the Socket.IO connect: {:?}",
            preview(&packet)
        )));
    }
}

/// The next text frame, skipping control frames.
async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(_))) | None => {
                return Err(ConnectError::Failed(
                    "the server closed the connection during the Socket.IO handshake".to_owned(),
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return Err(ConnectError::Failed(format!(
                    "connection lost during the Socket.IO handshake: {e}"
                )));
            }
        }
    }
}

/// The `message` of a `44{"message":"..."}` refusal, or the raw text.
fn refusal_message(detail: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(detail)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
    match message {
        Some(m) => format!("connect_error: {m}"),
        None if detail.is_empty() => "connect_error".to_owned(),
        None => format!("connect_error: {}", preview(detail)),
    }
}

fn preview(text: &str) -> String {
    text.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_timestamp() {
        assert_eq!(
            timestamp(br#",{"t":1732500000123456,"seq":5}]"#),
            Some(1732500000123456)
        );
        assert_eq!(timestamp(br#",{"seq":5,"t": 42}]"#), Some(42));
        assert_eq!(timestamp(br#","Hi"]"#), None);
        assert_eq!(timestamp(br#",{"t":"x"}]"#), None);
        assert_eq!(timestamp(br#",{"t":99999999999999999999999}]"#), None);
    }

    #[test]
    fn refusal_messages() {
        assert_eq!(
            refusal_message(r#"{"message":"not authenticated"}"#),
            "connect_error: not authenticated"
        );
        assert_eq!(refusal_message(""), "connect_error");
    }

    #[test]
    fn deliveries_are_counted_per_client_and_timed() {
        let stats = ClientStats::new(3).unwrap();
        stats.record_delivery(0, Some(now_micros() - 1000));
        stats.record_delivery(2, None);
        stats.record_delivery(7, Some(now_micros()));
        for flag in stats.was_connected.iter() {
            flag.store(true, Ordering::Relaxed);
        }
        assert_eq!(stats.received_per_connected_client(), vec![1, 0, 1]);
        let (latency, untimed, last) = stats.latency();
        assert_eq!(latency.len(), 2);
        assert_eq!(untimed, 1);
        assert!(last > 0);
    }

    #[test]
    fn a_new_window_forgets_the_deliveries_not_the_packets() {
        let stats = ClientStats::new(2).unwrap();
        stats.record_delivery(0, Some(now_micros() - 1000));
        stats.record_delivery(1, Some(now_micros() - 1000));
        stats.packets[0].fetch_add(3, Ordering::Relaxed);
        for flag in stats.was_connected.iter() {
            flag.store(true, Ordering::Relaxed);
        }
        stats.reset_window();
        assert_eq!(stats.deliveries(), 0);
        assert_eq!(stats.latency().0.len(), 0);
        assert_eq!(stats.latency().2, 0);
        assert_eq!(stats.packets_per_connected_client(), vec![3, 0]);
    }
}
