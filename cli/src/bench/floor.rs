//! `sidecast bench --floor`: what fanning small events out over loopback TCP costs this machine's
//! kernel, with no server at all.
//!
//! Writer threads play an ideal server (no HTTP, broker, framing, queue or task: one `write` of a
//! ready 60-byte frame per client per event) and a reader runtime ideal clients (one tokio task
//! per connection reading frames, one worker thread per CPU, as the bench's clients run), over
//! `--clients` loopback connections with `TCP_NODELAY`, at `--rate` events per second for
//! `--duration` seconds. The result is a floor under what the bench can measure for any
//! Socket.IO server on the same machine: CPU per delivery on each side, and the latency from an
//! event's first write to each read.

use std::cell::Cell;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::client::histogram;
use super::procfs;
use super::report::{Percentiles, Table, opt_ms};

/// Bytes per event: about a Socket.IO event frame with a small JSON body.
pub(crate) const FRAME_BYTES: usize = 60;

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FloorOptions {
    /// Loopback connections.
    pub(crate) clients: usize,
    /// Events per second, each written to every connection.
    pub(crate) rate: f64,
    /// Seconds of writing.
    pub(crate) duration: f64,
    /// Threads sharing the writes (a server's worker threads).
    pub(crate) writers: usize,
}

/// The measurement (`--json` prints it as `{"floor": ...}`).
#[derive(Debug, Serialize)]
pub(crate) struct FloorReport {
    pub(crate) clients: usize,
    pub(crate) rate_per_s: f64,
    pub(crate) duration_s: f64,
    pub(crate) writer_threads: usize,
    pub(crate) frame_bytes: usize,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    /// CPU time of the writer threads per delivery: the kernel's share of one `send` on this
    /// machine (on loopback it includes the receiving side's TCP input).
    pub(crate) writer_cpu_us_per_delivery: f64,
    /// CPU time of the reader thread per delivery.
    pub(crate) reader_cpu_us_per_delivery: f64,
    /// From an event's first `write` to each connection's read of it.
    pub(crate) latency_ms: Option<Percentiles>,
}

impl FloorReport {
    /// The human-readable table.
    pub(crate) fn table(&self) -> String {
        let rows = [
            (
                "what",
                "no server: raw loopback TCP, one write per client per event".to_owned(),
            ),
            (
                "connections",
                format!(
                    "{}, {} writer thread(s), {}-byte frames",
                    self.clients, self.writer_threads, self.frame_bytes
                ),
            ),
            (
                "events",
                format!("{:.0}/s for {:.1} s", self.rate_per_s, self.duration_s),
            ),
            (
                "deliveries",
                format!("{} of {} expected", self.delivered, self.expected),
            ),
            (
                "writer CPU",
                format!(
                    "{:.2} µs per delivery (an ideal server's floor)",
                    self.writer_cpu_us_per_delivery
                ),
            ),
            (
                "reader CPU",
                format!(
                    "{:.2} µs per delivery (ideal clients)",
                    self.reader_cpu_us_per_delivery
                ),
            ),
            ("latency", opt_ms(self.latency_ms)),
        ];
        let mut table = Table::default();
        for (key, value) in &rows {
            table.row(key, value);
        }
        table.finish()
    }
}

/// Runs the measurement on its own threads; blocks until it is done.
pub(crate) fn measure(options: FloorOptions) -> anyhow::Result<FloorReport> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    let address = listener.local_addr()?;
    let mut clients = Vec::with_capacity(options.clients);
    let mut servers = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        let client = TcpStream::connect(address).with_context(|| {
            format!(
                "cannot open loopback connection {} of {}; raise the open-files limit (ulimit -n)",
                clients.len() + 1,
                options.clients
            )
        })?;
        client.set_nodelay(true)?;
        client.set_nonblocking(true)?;
        clients.push(client);
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        servers.push(server);
    }
    let events = (options.rate * options.duration).round().max(1.0) as u64;
    let start = Instant::now();
    // Microseconds after `start` at which each event's first write began.
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
    let latency = Arc::new(Mutex::new(histogram()?));
    let delivered = Arc::new(AtomicU64::new(0));

    let reader = {
        let (sent, latency, delivered) = (sent.clone(), latency.clone(), delivered.clone());
        std::thread::Builder::new()
            .name("floor-reader".into())
            .spawn(move || read_all(clients, events, start, &sent, &latency, &delivered))?
    };

    // The writers share the connections; each writes every event to its own share.
    let per_writer = options.clients.div_ceil(options.writers.max(1)).max(1);
    let mut writers = Vec::new();
    while !servers.is_empty() {
        let rest = servers.split_off(per_writer.min(servers.len()));
        let share = std::mem::replace(&mut servers, rest);
        let sent = sent.clone();
        let rate = options.rate;
        writers.push(
            std::thread::Builder::new()
                .name("floor-writer".into())
                .spawn(move || write_all(share, events, rate, start, &sent))?,
        );
    }
    let mut writer_cpu = Duration::ZERO;
    for writer in writers {
        writer_cpu += writer
            .join()
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
    }
    let reader_cpu = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;

    let expected = events * options.clients as u64;
    let per_delivery = |cpu: Duration| cpu.as_secs_f64() * 1e6 / expected.max(1) as f64;
    let latency = latency.lock().unwrap_or_else(|e| e.into_inner());
    Ok(FloorReport {
        clients: options.clients,
        rate_per_s: options.rate,
        duration_s: options.duration,
        writer_threads: options.writers.max(1),
        frame_bytes: FRAME_BYTES,
        expected,
        delivered: delivered.load(Ordering::Relaxed),
        writer_cpu_us_per_delivery: per_delivery(writer_cpu),
        reader_cpu_us_per_delivery: per_delivery(reader_cpu),
        latency_ms: Percentiles::from_micros(&latency),
    })
}

/// One writer: every event, at its due time, to each connection of its share. Returns the
/// thread's CPU time.
fn write_all(
    mut share: Vec<TcpStream>,
    events: u64,
    rate: f64,
    start: Instant,
    sent: &[AtomicU64],
) -> anyhow::Result<Duration> {
    let cpu = thread_cpu();
    let mut frame = [b'x'; FRAME_BYTES];
    for event in 0..events {
        let due = Duration::from_secs_f64(event as f64 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        frame[..8].copy_from_slice(&event.to_le_bytes());
        // The first writer to start an event stamps it.
        let _ = sent[event as usize].compare_exchange(
            0,
            micros_since(start),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        for connection in &mut share {
            connection
                .write_all(&frame)
                .context("a loopback write failed")?;
        }
    }
    Ok(thread_cpu().saturating_sub(cpu))
}

/// The reader: one task per connection on a multi-threaded runtime with one worker per CPU (as
/// the bench's own clients run), recording each frame's latency. Returns the CPU time of the
/// runtime's threads and the calling thread.
fn read_all(
    clients: Vec<TcpStream>,
    events: u64,
    start: Instant,
    sent: &Arc<Vec<AtomicU64>>,
    latency: &Arc<Mutex<Histogram<u64>>>,
    delivered: &Arc<AtomicU64>,
) -> anyhow::Result<Duration> {
    thread_local! {
        static STARTED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }
    // Each worker thread adds what it used, in nanoseconds, when the runtime stops it.
    let workers_cpu = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .thread_name("floor-reader")
        .on_thread_start(|| STARTED.with(|started| started.set(thread_cpu())))
        .on_thread_stop({
            let workers_cpu = workers_cpu.clone();
            move || {
                let used = thread_cpu().saturating_sub(STARTED.with(Cell::get));
                let nanos = u64::try_from(used.as_nanos()).unwrap_or(u64::MAX);
                workers_cpu.fetch_add(nanos, Ordering::Relaxed);
            }
        })
        .build()
        .context("cannot start the reader's runtime")?;
    let cpu = thread_cpu();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for client in clients {
            let (sent, latency, delivered) = (sent.clone(), latency.clone(), delivered.clone());
            tasks.spawn(async move {
                let mut stream = tokio::net::TcpStream::from_std(client)?;
                let mut buffer = [0u8; 64 * FRAME_BYTES];
                let (mut filled, mut received) = (0usize, 0u64);
                while received < events {
                    let n = stream.read(&mut buffer[filled..]).await?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                    let now = micros_since(start);
                    let whole = filled - filled % FRAME_BYTES;
                    let mut histogram = latency.lock().unwrap_or_else(|e| e.into_inner());
                    for frame in buffer[..whole].chunks_exact(FRAME_BYTES) {
                        let mut index = [0u8; 8];
                        index.copy_from_slice(&frame[..8]);
                        let event = u64::from_le_bytes(index) as usize;
                        let at = sent.get(event).map_or(now, |t| t.load(Ordering::Relaxed));
                        let _ = histogram.record(now.saturating_sub(at).max(1));
                        received += 1;
                    }
                    drop(histogram);
                    buffer.copy_within(whole..filled, 0);
                    filled -= whole;
                }
                delivered.fetch_add(received, Ordering::Relaxed);
                Ok::<_, std::io::Error>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("a reader task failed")?
                .context("a loopback read failed")?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let own = thread_cpu().saturating_sub(cpu);
    // Waits for the worker threads to stop (and report their CPU time).
    runtime.shutdown_timeout(Duration::from_secs(10));
    Ok(own + Duration::from_nanos(workers_cpu.load(Ordering::Relaxed)))
}

fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn thread_cpu() -> Duration {
    procfs::thread_cpu_time().unwrap_or_default()
}
