//! The bench's results: a JSON object (`--json`) or a table, and the live progress line.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Everything a run measured. Times are milliseconds unless the name says otherwise.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) target: TargetInfo,
    pub(crate) clients: Clients,
    pub(crate) messages: Messages,
    pub(crate) deliveries: Deliveries,
    /// End-to-end latency, publish → receipt; `null` when nothing was received.
    pub(crate) latency_ms: Option<Percentiles>,
    /// The server process, when `--server-pid` was given.
    pub(crate) server: Option<ServerUse>,
    /// The load generator itself.
    pub(crate) bench: BenchUse,
    /// 1-minute load average of the machine at the start and the end.
    pub(crate) load_average: LoadAverage,
    /// How busy the whole machine was over the publish window, all processes included.
    pub(crate) machine: Machine,
}

#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    /// Busy share of all cores (100 = every core busy) over the publish window.
    pub(crate) cpu_busy_percent: Option<f64>,
    /// The part of that not used by the server (when known) or the bench: other processes
    /// (and the broker). Large values mean the figures measure the neighbours too.
    pub(crate) other_busy_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TargetInfo {
    pub(crate) url: String,
    pub(crate) socketio_url: String,
    pub(crate) event: String,
    pub(crate) publish: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Clients {
    pub(crate) requested: u64,
    pub(crate) connected: u64,
    pub(crate) refused: u64,
    pub(crate) failed: u64,
    /// Connected clients whose connection ended before the run did.
    pub(crate) disconnected: u64,
    pub(crate) refusal: Option<String>,
    pub(crate) failure: Option<String>,
    pub(crate) disconnect_reason: Option<String>,
    /// Connected clients per second over the ramp.
    pub(crate) connect_rate_per_s: f64,
    /// Time from TCP connect to the Socket.IO connect answer.
    pub(crate) connect_ms: Option<Percentiles>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Messages {
    pub(crate) rate_per_s: f64,
    pub(crate) duration_s: f64,
    /// Publishes the server (or broker) accepted: what every client should receive.
    pub(crate) sent: u64,
    pub(crate) publish_errors: u64,
    pub(crate) publish_error: Option<String>,
    /// How far the publisher fell behind its schedule at worst.
    pub(crate) max_publish_lag_ms: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Deliveries {
    /// `sent` × connected clients.
    pub(crate) expected: u64,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) loss_percent: f64,
    pub(crate) clients_with_loss: u64,
    /// Deliveries beyond the expected (a publish that timed out may still have been delivered).
    pub(crate) extra: u64,
    /// Received events that carried no timestamp (`"t"`), so had no latency.
    pub(crate) untimed: u64,
    /// Received ÷ time from the first publish to the last delivery.
    pub(crate) per_second: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct ServerUse {
    pub(crate) pid: u32,
    /// CPU time (user + system) from the first publish until the deliveries drained.
    pub(crate) cpu_seconds: f64,
    /// Of one core, over the same window (`null` when the window was under half a second).
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) cpu_us_per_delivery: Option<f64>,
    pub(crate) rss_before_kib: u64,
    /// After every client connected and the idle period passed.
    pub(crate) rss_connected_kib: u64,
    /// (connected − before) ÷ connected clients.
    pub(crate) rss_per_connection_bytes: Option<f64>,
    pub(crate) rss_end_kib: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct BenchUse {
    /// CPU time over the publish window (the server's window).
    pub(crate) cpu_seconds: f64,
    /// Of one core, over the publish window (over the whole run when the window was under half
    /// a second); the machine has `cores` of them.
    pub(crate) cpu_percent: f64,
    pub(crate) cpu_us_per_delivery: Option<f64>,
    /// CPU time over the whole run, ramp included.
    pub(crate) cpu_seconds_total: f64,
    pub(crate) rss_kib: u64,
    pub(crate) cores: usize,
    pub(crate) wall_seconds: f64,
}

#[derive(Debug, Serialize)]
pub(crate) struct LoadAverage {
    pub(crate) start: Option<f64>,
    pub(crate) end: Option<f64>,
}

#[derive(Debug, Serialize, Clone, Copy)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    pub(crate) samples: u64,
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

pub(crate) fn opt_ms(p: Option<Percentiles>) -> String {
    match p {
        Some(p) => format!(
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms",
            p.p50, p.p90, p.p99, p.p999, p.max
        ),
        None => "-".to_owned(),
    }
}

impl Report {
    /// The human-readable table.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let c = &self.clients;
        let m = &self.messages;
        let d = &self.deliveries;
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<22} {v}");
        };
        row(
            "target",
            format!(
                "{} (publish: {}, event: {})",
                self.target.socketio_url, self.target.publish, self.target.event
            ),
        );
        row(
            "clients",
            format!(
                "{} connected / {} requested, {} refused, {} failed, {} disconnected",
                c.connected, c.requested, c.refused, c.failed, c.disconnected
            ),
        );
        if let Some(r) = &c.refusal {
            row("  refused because", r.clone());
        }
        if let Some(r) = &c.failure {
            row("  failed because", r.clone());
        }
        if let Some(r) = &c.disconnect_reason {
            row("  disconnected because", r.clone());
        }
        row(
            "connect rate",
            format!("{:.0} clients/s", c.connect_rate_per_s),
        );
        row("connect time", opt_ms(c.connect_ms));
        if self.target.publish == "none" {
            row(
                "messages sent",
                format!("none (--publish none): held {:.1} s", m.duration_s),
            );
        } else {
            row(
                "messages sent",
                format!(
                    "{} in {:.1} s (asked {:.0}/s), {} publish errors, max lag {:.1} ms",
                    m.sent, m.duration_s, m.rate_per_s, m.publish_errors, m.max_publish_lag_ms
                ),
            );
        }
        if let Some(e) = &m.publish_error {
            row("  publish error", e.clone());
        }
        row(
            "deliveries",
            format!(
                "{} of {} expected, {:.0}/s",
                d.received, d.expected, d.per_second
            ),
        );
        row(
            "loss",
            format!(
                "{} ({:.3} %), {} clients lost some{}",
                d.lost,
                d.loss_percent,
                d.clients_with_loss,
                if d.extra > 0 {
                    format!(", {} extra", d.extra)
                } else {
                    String::new()
                }
            ),
        );
        row("latency", opt_ms(self.latency_ms));
        if let Some(s) = &self.server {
            row(
                "server cpu",
                format!(
                    "{:.2} s ({} of a core){}",
                    s.cpu_seconds,
                    s.cpu_percent
                        .map_or("-".to_owned(), |p| format!("{p:.0} %")),
                    s.cpu_us_per_delivery
                        .map(|us| format!(", {us:.2} µs per delivery"))
                        .unwrap_or_default()
                ),
            );
            row(
                "server rss",
                format!(
                    "{} KiB before, {} KiB connected, {} KiB at the end{}",
                    s.rss_before_kib,
                    s.rss_connected_kib,
                    s.rss_end_kib,
                    s.rss_per_connection_bytes
                        .map(|b| format!(", {:.2} KiB per connection", b / 1024.0))
                        .unwrap_or_default()
                ),
            );
        }
        let b = &self.bench;
        row(
            "bench cpu",
            format!(
                "{:.2} s ({:.0} % of a core, {} cores){}; {:.2} s in all; rss {} KiB",
                b.cpu_seconds,
                b.cpu_percent,
                b.cores,
                b.cpu_us_per_delivery
                    .map(|us| format!(", {us:.2} µs per delivery"))
                    .unwrap_or_default(),
                b.cpu_seconds_total,
                b.rss_kib
            ),
        );
        if let Some(busy) = self.machine.cpu_busy_percent {
            row(
                "machine cpu",
                format!(
                    "{busy:.0} % of all cores busy over the window{}",
                    self.machine
                        .other_busy_percent
                        .map(|o| format!(", {o:.0} % by other processes"))
                        .unwrap_or_default()
                ),
            );
        }
        let la = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.2}"));
        row(
            "load average",
            format!(
                "{} at start, {} at end",
                la(self.load_average.start),
                la(self.load_average.end)
            ),
        );
        out
    }
}
