//! `sidecast bench`: a load generator for any Socket.IO server (Engine.IO 4 / Socket.IO 5).
//!
//! It connects N websocket clients at a given rate, publishes timestamped events at a given rate
//! (through `POST {url}/api/`, or straight through the configured broker), and measures what
//! arrives: deliveries, loss per client, end-to-end latency percentiles, connect times, and, given
//! the server's PID, its CPU time per delivery and memory per connection. It also measures its own
//! CPU use, so that one can tell whether the load generator was the bottleneck.
//!
//! A run has four phases: ramp (connect the clients), idle (`--idle` seconds, then the server's
//! RSS is read), publish (`--rate` × `--duration` events), drain (until every client received
//! every event, at most `--drain` seconds). With `--warmup N`, N events are published and drained
//! between idle and publish (the server's RSS is read again after them), and the publish window
//! then counts its own events only.
//!
//! Past the ephemeral port range of one source address, clients connect from several (see
//! [`source`]).
//!
//! `--floor` measures no server: the same fan-out over raw loopback TCP (see [`floor`]).

mod client;
mod floor;
mod prepare;
mod procfs;
mod progress;
mod publish;
mod report;
mod source;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use figment::Figment;
use tokio::task::JoinHandle;

use client::{ClientSetup, ClientStats};
use prepare::prepare;
use procfs::Pid;
use publish::{EventSource, PublishStats};
use report::Report;
use source::Choice;

/// Below this, the publish/hold window is too short for a CPU percentage (ticks are 10 ms).
const MIN_WINDOW_SECONDS: f64 = 0.5;

/// Deliveries per second of the warm-up by default (`--warmup-rate` unset): events at
/// `max(1, this ÷ clients)` per second. A tenth of the ≈ 1,000,000 deliveries/s a 2-core machine
/// sustained with 1,000 clients (docs/performance.md), and twice the `fanout` scenario's 50,000:
/// enough to warm every connection in seconds (41 events to 20,000 clients in 8 s), without
/// overloading a server whose limit the run is meant to measure.
const WARMUP_DELIVERIES_PER_S: f64 = 100_000.0;

/// Options of `sidecast bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Base URL of the server: http://host:port (ws:// works too; TLS is not supported).
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    url: String,
    /// The server's Socket.IO path.
    #[arg(long, default_value = "/ws/socket.io")]
    path: String,
    /// Number of Socket.IO clients.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Clients connected per second during the ramp; 0 connects them all at once.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 1000.0)]
    connect_rate: f64,
    /// A URL (or a path on --url) to GET once for a session cookie, e.g. /login.
    #[arg(long, value_name = "URL")]
    login_url: Option<String>,
    /// A token: sent as the Socket.IO auth payload {"token": ...} and as a bearer token.
    #[arg(long)]
    token: Option<String>,
    /// Percent of the clients (0-100) that ask for connection state recovery (`"offset":""` in
    /// their CONNECT auth, as `/sidecast-recovery.js` sends): they get each event's offset as
    /// its last argument. The others get the published arguments only.
    #[arg(long, value_name = "PERCENT", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    recovery_clients: u8,
    /// The event the clients count.
    #[arg(long, default_value = "message")]
    event: String,
    /// Events published per second (each reaches every client).
    #[arg(long, value_name = "PER_SECOND", default_value_t = 10.0)]
    rate: f64,
    /// Seconds of publishing (with --publish none: seconds to hold the clients connected).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    duration: f64,
    /// How events are published: POST {url}/api/, the configured broker, or not at all.
    #[arg(long, value_enum, default_value_t = PublishVia::Http)]
    publish: PublishVia,
    /// The server's process id: reports its CPU time per delivery and RSS per connection.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Seconds to wait with every client connected before publishing (the server's RSS is read
    /// at the end of it).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    idle: f64,
    /// Seconds to wait after the last publish for events still on their way.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    drain: f64,
    /// Seconds one client may take to connect (TCP, websocket, Socket.IO).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    connect_timeout: f64,
    /// Comma-separated source addresses, e.g. 127.0.0.2,127.0.0.3: client i connects from the
    /// (i mod n)-th. Default: the kernel chooses; against a server on IPv4 loopback with more
    /// clients than one address has ephemeral ports, 127.0.0.1, 127.0.0.2, ... as needed.
    #[arg(long, value_name = "LIST")]
    source_addresses: Option<String>,
    /// Events published (and drained) after --idle, before the measured window: every client
    /// then has received traffic, and the server's RSS is read again.
    #[arg(long, value_name = "EVENTS", default_value_t = 0)]
    warmup: u64,
    /// Warm-up events per second [default: max(1, 100000 / --clients)].
    #[arg(long, value_name = "PER_SECOND")]
    warmup_rate: Option<f64>,
    /// Publishes in flight at most (HTTP requests or broker publishes).
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_in_flight: usize,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Measure this machine's floor instead of a server: --clients loopback TCP connections, one
    /// write of a 60-byte frame per connection per event at --rate for --duration, no server.
    #[arg(long)]
    floor: bool,
    /// With --floor: threads sharing the writes (like a server's worker threads).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "floor")]
    floor_writers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PublishVia {
    /// POST {url}/api/ with the session cookie or token.
    Http,
    /// Sidecast's native envelope through the broker of the configuration (as `sidecast emit`).
    Broker,
    /// Only connect and hold the clients.
    None,
}

impl PublishVia {
    fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Broker => "broker",
            Self::None => "none",
        }
    }
}

/// Runs a bench and prints its report. Fails (after the report) when a client did not connect.
pub(crate) async fn run(args: BenchArgs, figment: Figment) -> anyhow::Result<()> {
    validate(&args)?;
    if args.floor {
        return run_floor(&args).await;
    }
    let baseline = Baseline::now();
    let prepared = prepare(&args, &figment).await?;
    let clients = Arc::new(ClientStats::new(args.clients).context("cannot create the histograms")?);
    let warmup_published = Arc::new(PublishStats::default());
    let published = Arc::new(PublishStats::default());
    let server = args.server_pid.map(Pid::Other);
    let rss_before = server.and_then(procfs::rss_kib).unwrap_or(0);
    let progress = (!args.quiet).then(|| {
        progress::spawn(
            Arc::clone(&clients),
            vec![Arc::clone(&warmup_published), Arc::clone(&published)],
            args.clients as u64,
            server,
        )
    });

    let ramp = ramp(&args, &prepared.setup, &clients).await;
    let rss_connected = idle(&args, ramp.connected, server).await;
    let warmup = match &prepared.publisher {
        Some(publisher) if args.warmup > 0 && ramp.connected > 0 => Some(
            warm_up(
                &args,
                publisher,
                &clients,
                warmup_published,
                ramp.connected,
                server,
            )
            .await,
        ),
        _ => None,
    };
    let window = publish_and_drain(
        &args,
        prepared.publisher.as_ref(),
        &clients,
        &published,
        ramp.connected,
        server,
    )
    .await;
    if let Some(progress) = progress {
        progress::stop(progress);
    }
    for task in &ramp.tasks {
        task.abort();
    }
    if let Some(publisher) = &prepared.publisher {
        publisher.close().await;
    }

    let measured = Measured {
        args: &args,
        socketio_url: prepared.setup.uri.to_string(),
        sources: prepared.sources,
        expecting: prepared.publisher.is_some(),
        baseline,
        ramp_seconds: ramp.seconds,
        connected: ramp.connected,
        rss_before_kib: rss_before,
        rss_connected_kib: rss_connected,
        warmup,
        window,
    };
    let report = Report::new(&measured, &clients, &published);
    report.print(args.json)?;
    report.all_connected()
}

/// Readings taken when the run starts, before anything connects.
struct Baseline {
    started: Instant,
    load_average: Option<f64>,
    own_cpu: Duration,
}

impl Baseline {
    fn now() -> Self {
        Self {
            started: Instant::now(),
            load_average: procfs::load_average(),
            own_cpu: procfs::cpu_time(Pid::OwnProcess).unwrap_or_default(),
        }
    }
}

/// How the ramp went.
struct Ramp {
    /// The client tasks, aborted when the run ends.
    tasks: Vec<JoinHandle<()>>,
    seconds: f64,
    connected: u64,
}

/// What the warm-up did.
struct WarmUp {
    /// Events asked for (`--warmup`) and their pace.
    events: u64,
    rate: f64,
    published: Arc<PublishStats>,
    /// Events received by the connected clients, and what they should have received.
    received: u64,
    expected: u64,
    /// From the first publish until every client had every event (or `--drain` ran out).
    seconds: f64,
    /// Text packets each connected client had received at its end.
    packets: Vec<u64>,
    /// The server's RSS at its end (KiB; 0 when unknown).
    rss_kib: u64,
}

/// Readings over the publish window: publishing (or holding the clients), then draining.
struct Window {
    seconds: f64,
    /// When it began, in µs since the Unix epoch (the clock of the delivery times).
    start_us: u64,
    own_cpu_start: Duration,
    own_cpu_end: Duration,
    /// The server's CPU seconds over the window, when its PID was given.
    server_cpu: Option<f64>,
    /// Busy share of all cores, when the window was long enough to tell.
    machine_busy: Option<f64>,
    /// The server's RSS at the end (KiB; 0 when unknown).
    rss_end_kib: u64,
}

/// What the report is computed from, besides the clients' and the publisher's counters.
struct Measured<'a> {
    args: &'a BenchArgs,
    socketio_url: String,
    sources: Choice,
    /// Whether events were published, so that every client should have received them.
    expecting: bool,
    baseline: Baseline,
    ramp_seconds: f64,
    connected: u64,
    rss_before_kib: u64,
    rss_connected_kib: u64,
    warmup: Option<WarmUp>,
    window: Window,
}

/// Connects `--clients` clients at `--connect-rate`, then waits until each has connected or
/// given up.
async fn ramp(args: &BenchArgs, setup: &Arc<ClientSetup>, clients: &Arc<ClientStats>) -> Ramp {
    let ramp_start = Instant::now();
    let mut tasks: Vec<JoinHandle<()>> = Vec::with_capacity(args.clients);
    for id in 0..args.clients {
        if args.connect_rate > 0.0 {
            let due = ramp_start + Duration::from_secs_f64(id as f64 / args.connect_rate);
            tokio::time::sleep_until(due.into()).await;
        }
        tasks.push(tokio::spawn(client::run(
            id,
            Arc::clone(setup),
            Arc::clone(clients),
        )));
    }
    // Every client settles within its connect time-out.
    let settle_deadline = Instant::now() + setup.connect_timeout + Duration::from_secs(1);
    while clients.settled() < args.clients as u64 && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ramp {
        tasks,
        seconds: ramp_start.elapsed().as_secs_f64(),
        connected: clients.connected.load(Ordering::Relaxed),
    }
}

/// Waits `--idle` seconds with the clients connected; returns the memory they cost the server
/// then (its RSS in KiB; 0 when unknown).
async fn idle(args: &BenchArgs, connected: u64, server: Option<Pid>) -> u64 {
    if connected > 0 {
        tokio::time::sleep(Duration::from_secs_f64(args.idle)).await;
    }
    server.and_then(procfs::rss_kib).unwrap_or(0)
}

/// Warm-up events per second: `--warmup-rate`, or about [`WARMUP_DELIVERIES_PER_S`] deliveries
/// per second, at least one event.
fn warmup_rate(args: &BenchArgs) -> f64 {
    args.warmup_rate
        .unwrap_or_else(|| (WARMUP_DELIVERIES_PER_S / args.clients.max(1) as f64).max(1.0))
}

/// Publishes `--warmup` events at the warm-up rate, waits (at most `--drain` seconds) until every
/// connected client received them, reads the server's RSS and the clients' packet counts, then
/// starts the measured window afresh. Drained, no warm-up event is left on its way to count in
/// the window.
async fn warm_up(
    args: &BenchArgs,
    publisher: &Arc<EventSource>,
    clients: &ClientStats,
    published: Arc<PublishStats>,
    connected: u64,
    server: Option<Pid>,
) -> WarmUp {
    let started = Instant::now();
    let rate = warmup_rate(args);
    publish::run(
        Arc::clone(publisher),
        Arc::clone(&published),
        rate,
        args.warmup,
        args.max_in_flight,
    )
    .await;
    let accepted = published.accepted.load(Ordering::Relaxed);
    drain(args, clients, accepted, connected).await;
    let seconds = started.elapsed().as_secs_f64();
    let per_client = clients.received_per_connected_client();
    let warm = WarmUp {
        events: args.warmup,
        rate,
        published,
        received: per_client.iter().sum(),
        expected: accepted * per_client.len() as u64,
        seconds,
        packets: clients.packets_per_connected_client(),
        rss_kib: server.and_then(procfs::rss_kib).unwrap_or(0),
    };
    clients.reset_window();
    warm
}

/// Waits at most `--drain` seconds until every client still connected received `accepted`
/// events.
async fn drain(args: &BenchArgs, clients: &ClientStats, accepted: u64, connected: u64) {
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while Instant::now() < drain_deadline {
        let alive = connected - clients.disconnected.load(Ordering::Relaxed);
        if clients.deliveries() >= accepted * alive {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publishes `--rate` × `--duration` events and waits (at most `--drain` seconds) until every
/// connected client received them, or with `--publish none` holds the clients for `--duration`.
async fn publish_and_drain(
    args: &BenchArgs,
    publisher: Option<&Arc<EventSource>>,
    clients: &ClientStats,
    published: &Arc<PublishStats>,
    connected: u64,
    server: Option<Pid>,
) -> Window {
    let window_start = Instant::now();
    let start_us = client::now_micros();
    let server_cpu_start = server.and_then(procfs::cpu_time);
    let own_cpu_start = procfs::cpu_time(Pid::OwnProcess).unwrap_or_default();
    let machine_start = procfs::machine_ticks();
    let total = (args.rate * args.duration).round() as u64;
    match publisher {
        Some(publisher) if connected > 0 => {
            publish::run(
                Arc::clone(publisher),
                Arc::clone(published),
                args.rate,
                total,
                args.max_in_flight,
            )
            .await;
            let accepted = published.accepted.load(Ordering::Relaxed);
            drain(args, clients, accepted, connected).await;
        }
        None if connected > 0 => {
            tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        }
        _ => {}
    }
    let seconds = window_start.elapsed().as_secs_f64();
    let server_cpu = match (server_cpu_start, server.and_then(procfs::cpu_time)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let own_cpu_end = procfs::cpu_time(Pid::OwnProcess).unwrap_or_default();
    let machine_busy = match (machine_start, procfs::machine_ticks()) {
        (Some(a), Some(b)) if seconds >= MIN_WINDOW_SECONDS => procfs::busy_percent(a, b),
        _ => None,
    };
    Window {
        seconds,
        start_us,
        own_cpu_start,
        own_cpu_end,
        server_cpu,
        machine_busy,
        rss_end_kib: server.and_then(procfs::rss_kib).unwrap_or(0),
    }
}

/// `--floor`: the loopback measurement on its own threads, then its table or JSON.
async fn run_floor(args: &BenchArgs) -> anyhow::Result<()> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(args.rate) || !positive(args.duration) {
        bail!("--floor needs a positive --rate and --duration");
    }
    if args.floor_writers == 0 {
        bail!("--floor-writers must be at least 1");
    }
    let options = floor::FloorOptions {
        clients: args.clients,
        rate: args.rate,
        duration: args.duration,
        writers: args.floor_writers,
    };
    let report = tokio::task::spawn_blocking(move || floor::measure(options))
        .await
        .context("the floor measurement stopped")??;
    if args.json {
        println!("{}", serde_json::json!({ "floor": report }));
    } else {
        print!("{}", report.table());
    }
    if report.delivered != report.expected {
        bail!(
            "the loopback readers got {} of {} frames",
            report.delivered,
            report.expected
        );
    }
    Ok(())
}

fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let non_negative = |v: f64| v.is_finite() && v >= 0.0;
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !non_negative(args.connect_rate) {
        bail!("--connect-rate must be a number of clients per second (0: all at once)");
    }
    if args.publish != PublishVia::None && !positive(args.rate) {
        bail!("--rate must be a positive number of events per second");
    }
    if !non_negative(args.duration) || !non_negative(args.idle) || !non_negative(args.drain) {
        bail!("--duration, --idle and --drain must be numbers of seconds");
    }
    if !positive(args.connect_timeout) {
        bail!("--connect-timeout must be a positive number of seconds");
    }
    if args.event.is_empty() {
        bail!("--event must not be empty");
    }
    if args.login_url.is_some() && args.token.is_some() {
        bail!("give --login-url or --token, not both");
    }
    if args.warmup > 0 && args.publish == PublishVia::None {
        bail!(
            "--warmup publishes events, which --publish none does not: give --publish http or broker, or drop --warmup"
        );
    }
    if let Some(rate) = args.warmup_rate {
        if args.warmup == 0 {
            bail!("--warmup-rate needs --warmup N (the number of warm-up events)");
        }
        if !positive(rate) {
            bail!("--warmup-rate must be a positive number of events per second");
        }
    }
    if args.floor && (args.source_addresses.is_some() || args.warmup > 0) {
        bail!("--floor measures raw loopback TCP: --source-addresses and --warmup do not apply");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(line: &[&str]) -> BenchArgs {
        Cli::try_parse_from([&["bench"][..], line].concat())
            .unwrap()
            .bench
    }

    #[test]
    fn the_default_warmup_rate_keeps_deliveries_near_100000_per_second() {
        assert_eq!(
            warmup_rate(&args(&["--clients", "20", "--warmup", "41"])),
            5000.0
        );
        assert_eq!(
            warmup_rate(&args(&["--clients", "1000", "--warmup", "41"])),
            100.0
        );
        assert_eq!(
            warmup_rate(&args(&["--clients", "20000", "--warmup", "41"])),
            5.0
        );
        assert_eq!(
            warmup_rate(&args(&["--clients", "500000", "--warmup", "41"])),
            1.0
        );
        let given = args(&["--warmup", "41", "--warmup-rate", "7"]);
        assert_eq!(warmup_rate(&given), 7.0);
    }

    #[test]
    fn warmup_needs_a_publisher() {
        let err = validate(&args(&["--warmup", "41", "--publish", "none"])).unwrap_err();
        assert!(err.to_string().contains("--publish none"), "{err}");
        let err = validate(&args(&["--warmup-rate", "5"])).unwrap_err();
        assert!(err.to_string().contains("--warmup N"), "{err}");
        let err = validate(&args(&["--warmup", "4", "--warmup-rate", "0"])).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
        assert!(validate(&args(&["--warmup", "41"])).is_ok());
    }
}
