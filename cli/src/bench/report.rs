//! The bench's results: [`Report`], computed from what a run measured, printed as a JSON object
//! (`--json`) or as the table of `table`.

// This file is the report and its figures; `table` writes it as text.
mod table;

use std::sync::atomic::Ordering;

use anyhow::bail;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::client::ClientStats;
use super::procfs::{self, Pid};
use super::publish::PublishStats;
use super::source::Choice;
use super::{MIN_WINDOW_SECONDS, Measured, WarmUp};

pub(crate) use table::{Table, opt_ms};

/// Everything a run measured. Times are milliseconds unless the name says otherwise.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    target: TargetInfo,
    clients: Clients,
    messages: Messages,
    deliveries: Deliveries,
    /// The warm-up before the window (`--warmup`); `null` without one.
    warmup: Option<WarmUpReport>,
    /// End-to-end latency, publish → receipt; `null` when nothing was received.
    latency_ms: Option<Percentiles>,
    /// The server process, when `--server-pid` was given.
    server: Option<ServerUse>,
    /// The load generator itself.
    bench: BenchUse,
    /// 1-minute load average of the machine at the start and the end.
    load_average: LoadAverage,
    /// How busy the whole machine was over the publish window, all processes included.
    machine: Machine,
}

#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    /// Busy share of all cores (100 = every core busy) over the publish window.
    cpu_busy_percent: Option<f64>,
    /// The part of that not used by the server (when known) or the bench: other processes
    /// (and the broker). Large values mean the figures measure the neighbours too.
    other_busy_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TargetInfo {
    url: String,
    socketio_url: String,
    event: String,
    publish: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Clients {
    requested: u64,
    connected: u64,
    refused: u64,
    failed: u64,
    /// Connected clients whose connection ended before the run did.
    disconnected: u64,
    refusal: Option<String>,
    failure: Option<String>,
    disconnect_reason: Option<String>,
    /// Connected clients per second over the ramp.
    connect_rate_per_s: f64,
    /// Time from TCP connect to the Socket.IO connect answer.
    connect_ms: Option<Percentiles>,
    /// How the source addresses were chosen: `kernel`, `given` (`--source-addresses`) or
    /// `automatic` (loopback addresses past one address's ports).
    source_addresses_chosen: Choice,
    /// Connected clients per source address, as their sockets were bound.
    source_addresses: Vec<SourceCount>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SourceCount {
    address: String,
    clients: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct WarmUpReport {
    /// Events asked for (`--warmup`).
    events: u64,
    rate_per_s: f64,
    /// Publishes accepted.
    sent: u64,
    publish_errors: u64,
    publish_error: Option<String>,
    /// Warm-up events received by the connected clients, and `sent` × connected clients.
    received: u64,
    expected: u64,
    /// From the first warm-up publish until every client had every event.
    seconds: f64,
    /// Text packets (events, pings, ...) a connected client had received since its Socket.IO
    /// connect at the end of the warm-up: the fewest, and the median.
    packets_per_client_min: u64,
    packets_per_client_p50: u64,
}

impl WarmUpReport {
    fn new(warm: &WarmUp) -> Self {
        let mut packets = warm.packets.clone();
        packets.sort_unstable();
        // Nearest rank: the ⌈n/2⌉-th smallest.
        let p50 = packets
            .get(packets.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0);
        Self {
            events: warm.events,
            rate_per_s: warm.rate,
            sent: warm.published.accepted.load(Ordering::Relaxed),
            publish_errors: warm.published.errors.load(Ordering::Relaxed),
            publish_error: warm.published.first_error.get().cloned(),
            received: warm.received,
            expected: warm.expected,
            seconds: warm.seconds,
            packets_per_client_min: packets.first().copied().unwrap_or(0),
            packets_per_client_p50: p50,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Messages {
    rate_per_s: f64,
    duration_s: f64,
    /// Publishes the server (or broker) accepted: what every client should receive.
    sent: u64,
    publish_errors: u64,
    publish_error: Option<String>,
    /// How far the publisher fell behind its schedule at worst.
    max_publish_lag_ms: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Deliveries {
    /// `sent` × connected clients.
    expected: u64,
    received: u64,
    lost: u64,
    loss_percent: f64,
    clients_with_loss: u64,
    /// Deliveries beyond the expected (a publish that timed out may still have been delivered).
    extra: u64,
    /// Received events that carried no timestamp (`"t"`), so had no latency.
    untimed: u64,
    /// Received ÷ time from the first publish to the last delivery.
    per_second: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ServerUse {
    pid: u32,
    /// CPU time (user + system) from the first publish until the deliveries drained.
    cpu_seconds: f64,
    /// Of one core, over the same window (`null` when the window was under half a second).
    cpu_percent: Option<f64>,
    cpu_us_per_delivery: Option<f64>,
    rss_before_kib: u64,
    /// After every client connected and the idle period passed.
    rss_connected_kib: u64,
    /// (connected − before) ÷ connected clients.
    rss_per_connection_bytes: Option<f64>,
    /// After the warm-up (`--warmup`): every connection has carried traffic.
    rss_after_warmup_kib: Option<u64>,
    /// (after warm-up − before) ÷ connected clients.
    rss_per_connection_after_warmup_bytes: Option<f64>,
    rss_end_kib: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct BenchUse {
    /// CPU time over the publish window (the server's window).
    cpu_seconds: f64,
    /// Of one core, over the publish window (over the whole run when the window was under half
    /// a second); the machine has `cores` of them.
    cpu_percent: f64,
    cpu_us_per_delivery: Option<f64>,
    /// CPU time over the whole run, ramp included.
    cpu_seconds_total: f64,
    rss_kib: u64,
    cores: usize,
    wall_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct LoadAverage {
    start: Option<f64>,
    end: Option<f64>,
}

#[derive(Debug, Serialize, Clone, Copy)]
pub(crate) struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
    samples: u64,
}

impl Percentiles {
    /// From a microsecond histogram, in milliseconds; `None` when empty.
    pub(crate) fn from_micros(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
            samples: h.len(),
        })
    }
}

impl Clients {
    /// The ramp's outcome, from the clients' counters.
    fn new(run: &Measured<'_>, stats: &ClientStats) -> Self {
        Self {
            requested: run.args.clients as u64,
            connected: run.connected,
            refused: stats.refused.load(Ordering::Relaxed),
            failed: stats.failed.load(Ordering::Relaxed),
            disconnected: stats.disconnected.load(Ordering::Relaxed),
            refusal: stats.first_refusal.get().cloned(),
            failure: stats.first_failure.get().cloned(),
            disconnect_reason: stats.first_disconnect.get().cloned(),
            connect_rate_per_s: if run.ramp_seconds > 0.0 {
                run.connected as f64 / run.ramp_seconds
            } else {
                0.0
            },
            connect_ms: Percentiles::from_micros(&stats.connect_times()),
            source_addresses_chosen: run.sources,
            source_addresses: stats
                .source_counts()
                .into_iter()
                .map(|(ip, clients)| SourceCount {
                    address: ip.to_string(),
                    clients,
                })
                .collect(),
        }
    }
}

impl Deliveries {
    /// Counts what each connected client received against `sent`, the events every client should
    /// have received (`None` when nothing was published, so nothing was expected), over `seconds`.
    fn count(per_client: &[u64], sent: Option<u64>, untimed: u64, seconds: f64) -> Self {
        let mut received = 0;
        let mut lost = 0;
        let mut extra = 0;
        let mut clients_with_loss = 0;
        for &got in per_client {
            received += got;
            if let Some(sent) = sent {
                if got < sent {
                    lost += sent - got;
                    clients_with_loss += 1;
                } else {
                    extra += got - sent;
                }
            }
        }
        let expected = sent.map_or(0, |sent| sent * per_client.len() as u64);
        Self {
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
            per_second: if seconds > 0.0 {
                received as f64 / seconds
            } else {
                0.0
            },
        }
    }
}

impl Report {
    /// The report of a run: what `run` measured and what the clients and the publisher counted.
    pub(super) fn new(run: &Measured<'_>, clients: &ClientStats, published: &PublishStats) -> Self {
        let args = run.args;
        let window = &run.window;
        let sent = published.accepted.load(Ordering::Relaxed);
        let (latency, untimed, last_delivery_us) = clients.latency();
        let delivery_seconds = if last_delivery_us > window.start_us {
            (last_delivery_us - window.start_us) as f64 / 1e6
        } else {
            window.seconds
        };
        let expecting = run.expecting;
        let deliveries = Deliveries::count(
            &clients.received_per_connected_client(),
            expecting.then_some(sent),
            untimed,
            delivery_seconds,
        );
        let received = deliveries.received;
        let per_delivery = |cpu: f64| (received > 0).then(|| cpu * 1e6 / received as f64);
        // The server's memory growth since before the ramp, per connected client.
        let per_connection = |rss_kib: u64| {
            (run.connected > 0).then(|| {
                rss_kib.saturating_sub(run.rss_before_kib) as f64 * 1024.0 / run.connected as f64
            })
        };
        let own_window_cpu = window
            .own_cpu_end
            .saturating_sub(window.own_cpu_start)
            .as_secs_f64();
        let own_total_cpu = window
            .own_cpu_end
            .saturating_sub(run.baseline.own_cpu)
            .as_secs_f64();
        // A percentage over a window shorter than a clock tick or two means nothing: use the run's.
        let (own_pct, server_pct) = if window.seconds >= MIN_WINDOW_SECONDS {
            (
                own_window_cpu * 100.0 / window.seconds,
                window.server_cpu.map(|c| c * 100.0 / window.seconds),
            )
        } else {
            (
                own_total_cpu * 100.0 / run.baseline.started.elapsed().as_secs_f64(),
                None,
            )
        };
        Report {
            target: TargetInfo {
                url: args.url.clone(),
                socketio_url: run.socketio_url.clone(),
                event: args.event.clone(),
                publish: args.publish.name().to_owned(),
            },
            clients: Clients::new(run, clients),
            messages: Messages {
                rate_per_s: if expecting { args.rate } else { 0.0 },
                duration_s: args.duration,
                sent,
                publish_errors: published.errors.load(Ordering::Relaxed),
                publish_error: published.first_error.get().cloned(),
                max_publish_lag_ms: published.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
            },
            deliveries,
            warmup: run.warmup.as_ref().map(WarmUpReport::new),
            latency_ms: Percentiles::from_micros(&latency),
            server: args.server_pid.map(|pid| ServerUse {
                pid,
                cpu_seconds: window.server_cpu.unwrap_or(0.0),
                cpu_percent: server_pct,
                cpu_us_per_delivery: window.server_cpu.and_then(per_delivery),
                rss_before_kib: run.rss_before_kib,
                rss_connected_kib: run.rss_connected_kib,
                rss_per_connection_bytes: per_connection(run.rss_connected_kib),
                rss_after_warmup_kib: run.warmup.as_ref().map(|w| w.rss_kib),
                rss_per_connection_after_warmup_bytes: run
                    .warmup
                    .as_ref()
                    .and_then(|w| per_connection(w.rss_kib)),
                rss_end_kib: window.rss_end_kib,
            }),
            bench: BenchUse {
                cpu_seconds: own_window_cpu,
                cpu_percent: own_pct,
                cpu_us_per_delivery: per_delivery(own_window_cpu),
                cpu_seconds_total: own_total_cpu,
                rss_kib: procfs::rss_kib(Pid::OwnProcess).unwrap_or(0),
                cores: std::thread::available_parallelism().map_or(1, usize::from),
                wall_seconds: run.baseline.started.elapsed().as_secs_f64(),
            },
            machine: Machine {
                cpu_busy_percent: window.machine_busy,
                // Our processes' CPU as a share of all cores, taken out of the machine's.
                other_busy_percent: window.machine_busy.map(|busy| {
                    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
                    let ours = own_window_cpu + window.server_cpu.unwrap_or(0.0);
                    (busy - ours * 100.0 / (window.seconds * cores)).max(0.0)
                }),
            },
            load_average: LoadAverage {
                start: run.baseline.load_average,
                end: procfs::load_average(),
            },
        }
    }

    /// Prints the report on stdout: the table, or one JSON object with `--json`.
    pub(super) fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print!("{}", self.table());
        }
        Ok(())
    }

    /// Fails, with the first reason, when a client did not connect.
    pub(super) fn all_connected(&self) -> anyhow::Result<()> {
        let missing = self.clients.requested - self.clients.connected;
        if missing > 0 {
            let why = self
                .clients
                .refusal
                .as_deref()
                .or(self.clients.failure.as_deref())
                .unwrap_or("unknown");
            bail!(
                "{missing} of {} clients did not connect ({} refused, {} failed); first reason: {why}",
                self.clients.requested,
                self.clients.refused,
                self.clients.failed
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_count_loss_and_extra_per_client() {
        let d = Deliveries::count(&[10, 7, 12], Some(10), 1, 2.0);
        assert_eq!((d.expected, d.received), (30, 29));
        assert_eq!((d.lost, d.clients_with_loss, d.extra), (3, 1, 2));
        assert!((d.loss_percent - 10.0).abs() < 1e-9);
        assert!((d.per_second - 14.5).abs() < 1e-9);
        let held = Deliveries::count(&[0, 0], None, 0, 0.0);
        assert_eq!((held.expected, held.lost, held.per_second), (0, 0, 0.0));
    }

    #[test]
    fn warmup_packets_per_client_min_and_median() {
        let published = std::sync::Arc::new(PublishStats::default());
        published.accepted.store(41, Ordering::Relaxed);
        let warm = WarmUp {
            events: 41,
            rate: 5.0,
            published,
            received: 164,
            expected: 164,
            seconds: 8.2,
            packets: vec![44, 42, 43, 45],
            rss_kib: 1,
        };
        let r = WarmUpReport::new(&warm);
        assert_eq!(
            (r.packets_per_client_min, r.packets_per_client_p50),
            (42, 43)
        );
        assert_eq!(r.sent, 41);
        let none = WarmUpReport::new(&WarmUp {
            packets: Vec::new(),
            ..warm
        });
        assert_eq!(
            (none.packets_per_client_min, none.packets_per_client_p50),
            (0, 0)
        );
    }
}
