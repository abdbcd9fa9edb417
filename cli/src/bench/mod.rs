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
//! every event, at most `--drain` seconds).
//!
//! `--floor` measures no server: the same fan-out over raw loopback TCP (see [`floor`]).

mod client;
mod floor;
mod procfs;
mod publish;
mod report;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use figment::Figment;
use reqwest::Url;
use sidecast_core::config::BrokerKind;
use sidecast_core::{Config, Emitter};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};

use client::{Shared, Target};
use procfs::Pid;
use publish::{PublishStats, Publisher};
use report::{
    BenchUse, Clients, Deliveries, LoadAverage, Machine, Messages, Percentiles, Report, ServerUse,
    TargetInfo,
};

/// Below this, the publish/hold window is too short for a CPU percentage (ticks are 10 ms).
const MIN_WINDOW_SECONDS: f64 = 0.5;

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
    let started = Instant::now();
    let load_start = procfs::load_average();
    let own_cpu_start = procfs::cpu_time(Pid::OwnProcess).unwrap_or_default();
    let base = parse_base_url(&args.url)?;
    let (socketio_uri, addr) = socketio_target(&base, &args.path).await?;
    if let Some(pid) = args.server_pid
        && !procfs::exists(pid)
    {
        bail!(
            "no process with id {pid} can be read in /proc (--server-pid); is the server running on this machine?"
        );
    }
    if let Some(limit) = procfs::open_files_limit()
        && limit < args.clients as u64 + 64
    {
        eprintln!(
            "warning: this process may open {limit} files, fewer than --clients {} needs; raise the limit first (ulimit -n 65536)",
            args.clients
        );
    }

    // Credentials, and a reachable server, before any client starts.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")?;
    let cookie = match &args.login_url {
        Some(login) => {
            let login_url = join_url(&base, login)?;
            Some(publish::login(&http, &login_url).await?)
        }
        None => {
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| anyhow::anyhow!("cannot connect to {addr} ({}): timed out; is the server running, and is --url right?", args.url))?
                .map_err(|e| anyhow::anyhow!("cannot connect to {addr} ({}): {e}; is the server running, and is --url right?", args.url))?;
            None
        }
    };
    let publisher = match args.publish {
        PublishVia::Http => Some(Arc::new(Publisher::http(
            join_url(&base, "/api/")?,
            &args.event,
            cookie.as_deref(),
            args.token.as_deref(),
            args.max_in_flight,
        )?)),
        PublishVia::Broker => Some(Arc::new(broker_publisher(&figment, &args.event).await?)),
        PublishVia::None => None,
    };

    let target = Arc::new(Target {
        addr,
        uri: socketio_uri.clone(),
        cookie: cookie
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .context("the login cookie is not a valid header value")?,
        connect_packet: connect_packet(args.token.as_deref()),
        event_prefix: event_prefix(&args.event),
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
    });
    let shared = Arc::new(Shared::new(args.clients).context("cannot create the histograms")?);
    let stats = Arc::new(PublishStats::default());
    let server = args.server_pid.map(Pid::Other);
    let rss_before = server.and_then(procfs::rss_kib).unwrap_or(0);

    let progress = (!args.quiet).then(|| {
        spawn_progress(
            Arc::clone(&shared),
            Arc::clone(&stats),
            args.clients as u64,
            server,
        )
    });

    // Ramp.
    let ramp_start = Instant::now();
    let mut tasks: Vec<JoinHandle<()>> = Vec::with_capacity(args.clients);
    for id in 0..args.clients {
        if args.connect_rate > 0.0 {
            let due = ramp_start + Duration::from_secs_f64(id as f64 / args.connect_rate);
            tokio::time::sleep_until(due.into()).await;
        }
        tasks.push(tokio::spawn(client::run(
            id,
            Arc::clone(&target),
            Arc::clone(&shared),
        )));
    }
    // Every client settles within its connect time-out.
    let settle_deadline = Instant::now() + target.connect_timeout + Duration::from_secs(1);
    while shared.settled() < args.clients as u64 && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ramp_seconds = ramp_start.elapsed().as_secs_f64();
    let connected = shared.connected.load(Ordering::Relaxed);

    // Idle, then the memory the connections cost the server.
    if connected > 0 {
        tokio::time::sleep(Duration::from_secs_f64(args.idle)).await;
    }
    let rss_connected = server.and_then(procfs::rss_kib).unwrap_or(0);

    // Publish (or hold), then drain.
    let window_start = Instant::now();
    let window_start_us = client::now_micros();
    let server_cpu_start = server.and_then(procfs::cpu_time);
    let own_cpu_window_start = procfs::cpu_time(Pid::OwnProcess).unwrap_or_default();
    let machine_start = procfs::machine_ticks();
    let total = (args.rate * args.duration).round() as u64;
    match &publisher {
        Some(publisher) if connected > 0 => {
            publish::run(
                Arc::clone(publisher),
                Arc::clone(&stats),
                args.rate,
                total,
                args.max_in_flight,
            )
            .await;
            let accepted = stats.accepted.load(Ordering::Relaxed);
            let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain);
            while Instant::now() < drain_deadline {
                let alive = connected - shared.disconnected.load(Ordering::Relaxed);
                if shared.deliveries() >= accepted * alive {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        None if connected > 0 => {
            tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        }
        _ => {}
    }
    let window = window_start.elapsed().as_secs_f64();
    let server_cpu = match (server_cpu_start, server.and_then(procfs::cpu_time)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
        _ => None,
    };
    let own_cpu_end = procfs::cpu_time(Pid::OwnProcess).unwrap_or_default();
    let machine_busy = match (machine_start, procfs::machine_ticks()) {
        (Some(a), Some(b)) if window >= MIN_WINDOW_SECONDS => procfs::busy_percent(a, b),
        _ => None,
    };
    let rss_end = server.and_then(procfs::rss_kib).unwrap_or(0);
    if let Some(progress) = progress {
        progress.abort();
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
    for task in &tasks {
        task.abort();
    }
    if let Some(publisher) = &publisher {
        publisher.close().await;
    }

    // The report.
    let sent = stats.accepted.load(Ordering::Relaxed);
    let per_client = shared.received_per_connected_client();
    let (latency, untimed, last_delivery_us) = shared.latency();
    let mut received = 0;
    let mut lost = 0;
    let mut extra = 0;
    let mut clients_with_loss = 0;
    let expecting = publisher.is_some();
    for &got in &per_client {
        received += got;
        if expecting {
            if got < sent {
                lost += sent - got;
                clients_with_loss += 1;
            } else {
                extra += got - sent;
            }
        }
    }
    let expected = if expecting {
        sent * per_client.len() as u64
    } else {
        0
    };
    let delivery_seconds = if last_delivery_us > window_start_us {
        (last_delivery_us - window_start_us) as f64 / 1e6
    } else {
        window
    };
    let per_delivery = |cpu: f64| (received > 0).then(|| cpu * 1e6 / received as f64);
    let own_window_cpu = own_cpu_end
        .saturating_sub(own_cpu_window_start)
        .as_secs_f64();
    let own_total_cpu = own_cpu_end.saturating_sub(own_cpu_start).as_secs_f64();
    // A percentage over a window shorter than a clock tick or two means nothing: use the run's.
    let (own_pct, server_pct) = if window >= MIN_WINDOW_SECONDS {
        (
            own_window_cpu * 100.0 / window,
            server_cpu.map(|c| c * 100.0 / window),
        )
    } else {
        (
            own_total_cpu * 100.0 / started.elapsed().as_secs_f64(),
            None,
        )
    };
    let report = Report {
        target: TargetInfo {
            url: args.url.clone(),
            socketio_url: socketio_uri.to_string(),
            event: args.event.clone(),
            publish: args.publish.name().to_owned(),
        },
        clients: Clients {
            requested: args.clients as u64,
            connected,
            refused: shared.refused.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
            disconnected: shared.disconnected.load(Ordering::Relaxed),
            refusal: shared.first_refusal.get().cloned(),
            failure: shared.first_failure.get().cloned(),
            disconnect_reason: shared.first_disconnect.get().cloned(),
            connect_rate_per_s: if ramp_seconds > 0.0 {
                connected as f64 / ramp_seconds
            } else {
                0.0
            },
            connect_ms: Percentiles::from_micros(&shared.connect_times()),
        },
        messages: Messages {
            rate_per_s: if expecting { args.rate } else { 0.0 },
            duration_s: args.duration,
            sent,
            publish_errors: stats.errors.load(Ordering::Relaxed),
            publish_error: stats.first_error.get().cloned(),
            max_publish_lag_ms: stats.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
        },
        deliveries: Deliveries {
            expected,
            received,
            lost,
            loss_percent: if expected > 0 {
                lost as f64 * 100.0 / expected as f64
            } else {
                0.0
            },
            clients_with_loss,
            extra,
            untimed,
            per_second: if delivery_seconds > 0.0 {
                received as f64 / delivery_seconds
            } else {
                0.0
            },
        },
        latency_ms: Percentiles::from_micros(&latency),
        server: args.server_pid.map(|pid| ServerUse {
            pid,
            cpu_seconds: server_cpu.unwrap_or(0.0),
            cpu_percent: server_pct,
            cpu_us_per_delivery: server_cpu.and_then(per_delivery),
            rss_before_kib: rss_before,
            rss_connected_kib: rss_connected,
            rss_per_connection_bytes: (connected > 0).then(|| {
                rss_connected.saturating_sub(rss_before) as f64 * 1024.0 / connected as f64
            }),
            rss_end_kib: rss_end,
        }),
        bench: BenchUse {
            cpu_seconds: own_window_cpu,
            cpu_percent: own_pct,
            cpu_us_per_delivery: per_delivery(own_window_cpu),
            cpu_seconds_total: own_total_cpu,
            rss_kib: procfs::rss_kib(Pid::OwnProcess).unwrap_or(0),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            wall_seconds: started.elapsed().as_secs_f64(),
        },
        machine: Machine {
            cpu_busy_percent: machine_busy,
            // Our processes' CPU as a share of all cores, taken out of the machine's.
            other_busy_percent: machine_busy.map(|busy| {
                let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
                let ours = own_window_cpu + server_cpu.unwrap_or(0.0);
                (busy - ours * 100.0 / (window * cores)).max(0.0)
            }),
        },
        load_average: LoadAverage {
            start: load_start,
            end: procfs::load_average(),
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    let missing = report.clients.requested - report.clients.connected;
    if missing > 0 {
        let why = report
            .clients
            .refusal
            .as_deref()
            .or(report.clients.failure.as_deref())
            .unwrap_or("unknown");
        bail!(
            "{missing} of {} clients did not connect ({} refused, {} failed); first reason: {why}",
            report.clients.requested,
            report.clients.refused,
            report.clients.failed
        );
    }
    Ok(())
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
    Ok(())
}

/// `http://host:port[/prefix]`, checked.
fn parse_base_url(url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).with_context(|| {
        format!(
            "--url {url:?} is not a URL; give the server's base URL, e.g. http://127.0.0.1:5000"
        )
    })?;
    match parsed.scheme() {
        "http" | "ws" => {}
        "https" | "wss" => bail!(
            "--url {url}: TLS is not supported by sidecast bench; point it at the plain-HTTP address of a node (e.g. behind the proxy), which also keeps TLS cost out of the measurement"
        ),
        other => bail!("--url {url}: unsupported scheme {other:?}; use http://host:port"),
    }
    if parsed.host_str().is_none() {
        bail!("--url {url} has no host");
    }
    Ok(parsed)
}

/// A path on the base URL (`/login`), or an absolute URL.
fn join_url(base: &Url, path_or_url: &str) -> anyhow::Result<Url> {
    if path_or_url.starts_with('/') {
        let mut url = base.clone();
        let prefix = base.path().trim_end_matches('/');
        let (path, query) = match path_or_url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_or_url, None),
        };
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(query);
        if url.scheme() == "ws" {
            // Only http(s) and ws(s) reach here; the HTTP client wants http.
            let text = url.as_str().replacen("ws://", "http://", 1);
            return Url::parse(&text).context("invalid URL");
        }
        Ok(url)
    } else {
        Url::parse(path_or_url)
            .with_context(|| format!("{path_or_url:?} is neither a path (/login) nor a URL"))
    }
}

/// The websocket URI of the Socket.IO endpoint, and the resolved address.
async fn socketio_target(base: &Url, path: &str) -> anyhow::Result<(Uri, std::net::SocketAddr)> {
    let host = base.host_str().unwrap_or("127.0.0.1");
    let port = base.port_or_known_default().unwrap_or(80);
    if !path.starts_with('/') {
        bail!("--path {path:?} must start with /, e.g. /ws/socket.io");
    }
    let prefix = base.path().trim_end_matches('/');
    let path = path.trim_end_matches('/');
    let text = format!("ws://{host}:{port}{prefix}{path}/?EIO=4&transport=websocket");
    let uri: Uri = text
        .parse()
        .with_context(|| format!("{text} is not a valid websocket URL; check --url and --path"))?;
    let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    Ok((uri, addr))
}

/// `40`, or `40{"token":"..."}`.
fn connect_packet(token: Option<&str>) -> Utf8Bytes {
    match token {
        Some(token) => format!("40{}", serde_json::json!({ "token": token })).into(),
        None => Utf8Bytes::from_static("40"),
    }
}

/// `42["<event>"`: how the counted events start on the wire.
fn event_prefix(event: &str) -> Vec<u8> {
    let quoted = serde_json::Value::String(event.to_owned()).to_string();
    format!("42[{quoted}").into_bytes()
}

async fn broker_publisher(figment: &Figment, event: &str) -> anyhow::Result<Publisher> {
    let config = Config::from_figment(figment)?;
    if config.broker.kind == BrokerKind::Memory {
        bail!(
            "--publish broker: broker.kind is \"memory\", whose events stay inside one process; \
             give the server's broker (SIDECAST_BROKER__KIND=redis SIDECAST_BROKER__URL=...), or \
             use --publish http"
        );
    }
    let broker = sidecast_web::connect_broker(&config).await?;
    let emitter =
        Emitter::new(broker.clone(), config.broker.channel.clone()).with_origin("sidecast-bench");
    Ok(Publisher::Broker {
        emitter,
        broker,
        event: event.to_owned(),
    })
}

/// Prints a progress line on stderr once per second until aborted.
fn spawn_progress(
    shared: Arc<Shared>,
    stats: Arc<PublishStats>,
    clients: u64,
    server: Option<Pid>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let terminal = std::io::stderr().is_terminal();
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut last_deliveries = 0;
        let mut last_own = procfs::cpu_time(Pid::OwnProcess).unwrap_or_default();
        let mut last_server = server.and_then(procfs::cpu_time);
        let mut last_at = Instant::now();
        loop {
            tick.tick().await;
            let elapsed = last_at.elapsed().as_secs_f64().max(0.001);
            last_at = Instant::now();
            let deliveries = shared.deliveries();
            let own = procfs::cpu_time(Pid::OwnProcess).unwrap_or_default();
            let own_pct = own.saturating_sub(last_own).as_secs_f64() * 100.0 / elapsed;
            last_own = own;
            let server_now = server.and_then(procfs::cpu_time);
            let server_pct = match (last_server, server_now) {
                (Some(a), Some(b)) => {
                    format!(
                        " server {:.0}%",
                        b.saturating_sub(a).as_secs_f64() * 100.0 / elapsed
                    )
                }
                _ => String::new(),
            };
            last_server = server_now;
            let (latency, _, _) = shared.latency();
            let p99 = if latency.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2}ms", latency.value_at_quantile(0.99) as f64 / 1000.0)
            };
            let line = format!(
                "[{:>5.0}s] clients {}/{} (refused {}, failed {}, dropped {})  sent {}  deliveries {} (+{:.0}/s)  p99 {}  cpu: bench {:.0}%{}",
                started.elapsed().as_secs_f64(),
                shared.connected.load(Ordering::Relaxed),
                clients,
                shared.refused.load(Ordering::Relaxed),
                shared.failed.load(Ordering::Relaxed),
                shared.disconnected.load(Ordering::Relaxed),
                stats.accepted.load(Ordering::Relaxed),
                deliveries,
                (deliveries - last_deliveries) as f64 / elapsed,
                p99,
                own_pct,
                server_pct,
            );
            last_deliveries = deliveries;
            let mut err = std::io::stderr().lock();
            if terminal {
                let _ = write!(err, "\r\x1b[K{line}");
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let base = parse_base_url("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            join_url(&base, "/login").unwrap().as_str(),
            "http://127.0.0.1:5000/login"
        );
        assert_eq!(
            join_url(&base, "/api/").unwrap().as_str(),
            "http://127.0.0.1:5000/api/"
        );
        let prefixed = parse_base_url("http://h:1/app/").unwrap();
        assert_eq!(
            join_url(&prefixed, "/login?x=1").unwrap().as_str(),
            "http://h:1/app/login?x=1"
        );
        assert!(
            parse_base_url("https://h")
                .unwrap_err()
                .to_string()
                .contains("TLS")
        );
        assert!(parse_base_url("nope").is_err());
        let ws = parse_base_url("ws://h:2").unwrap();
        assert_eq!(join_url(&ws, "/api/").unwrap().as_str(), "http://h:2/api/");
    }

    #[test]
    fn packets() {
        assert_eq!(connect_packet(None).as_str(), "40");
        assert_eq!(
            connect_packet(Some("a\"b")).as_str(),
            r#"40{"token":"a\"b"}"#
        );
        assert_eq!(event_prefix("message"), br#"42["message""#.to_vec());
    }
}
