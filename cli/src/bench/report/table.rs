//! The bench's report as text: [`Table`], the two columns of the bench's tables, and the table of
//! a [`Report`].

use std::fmt::Write as _;

use super::{Percentiles, Report};
use crate::bench::source::Choice;

/// The two columns of the bench's tables: a key padded to 22 characters, then its value.
#[derive(Debug, Default)]
pub(crate) struct Table(String);

impl Table {
    /// Adds a line.
    pub(crate) fn row(&mut self, key: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "  {key:<22} {value}");
    }

    /// Adds a line when there is a value.
    pub(crate) fn row_if(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.row(key, value);
        }
    }

    /// The table's text, one line per row.
    pub(crate) fn finish(self) -> String {
        self.0
    }
}

/// Latency percentiles on one line, or `-` when there were none.
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
        let mut out = Table::default();
        let c = &self.clients;
        let m = &self.messages;
        let d = &self.deliveries;
        out.row(
            "target",
            format!(
                "{} (publish: {}, event: {})",
                self.target.socketio_url, self.target.publish, self.target.event
            ),
        );
        out.row(
            "clients",
            format!(
                "{} connected / {} requested, {} refused, {} failed, {} disconnected",
                c.connected, c.requested, c.refused, c.failed, c.disconnected
            ),
        );
        out.row_if("  refused because", c.refusal.as_deref());
        out.row_if("  failed because", c.failure.as_deref());
        out.row_if("  disconnected because", c.disconnect_reason.as_deref());
        out.row(
            "connect rate",
            format!("{:.0} clients/s", c.connect_rate_per_s),
        );
        let from = c
            .source_addresses
            .iter()
            .map(|s| format!("{} ({})", s.address, s.clients))
            .collect::<Vec<_>>()
            .join(", ");
        let chosen = match c.source_addresses_chosen {
            Choice::Kernel => "chosen by the kernel",
            Choice::Given => "--source-addresses",
            Choice::Automatic => "loopback addresses past one address's ports",
        };
        out.row(
            "source addresses",
            format!("{} ({chosen})", if from.is_empty() { "-" } else { &from }),
        );
        out.row("connect time", opt_ms(c.connect_ms));
        let sent = if self.target.publish == "none" {
            format!("none (--publish none): held {:.1} s", m.duration_s)
        } else {
            format!(
                "{} in {:.1} s (asked {:.0}/s), {} publish errors, max lag {:.1} ms",
                m.sent, m.duration_s, m.rate_per_s, m.publish_errors, m.max_publish_lag_ms
            )
        };
        if let Some(w) = &self.warmup {
            out.row(
                "warm-up",
                format!(
                    "{} of {} events at {:.1}/s, {} of {} deliveries in {:.2} s; packets per client: min {}, median {}",
                    w.sent,
                    w.events,
                    w.rate_per_s,
                    w.received,
                    w.expected,
                    w.seconds,
                    w.packets_per_client_min,
                    w.packets_per_client_p50
                ),
            );
            out.row_if("  publish error", w.publish_error.as_deref());
        }
        out.row("messages sent", sent);
        out.row_if("  publish error", m.publish_error.as_deref());
        out.row(
            "deliveries",
            format!(
                "{} of {} expected, {:.0}/s",
                d.received, d.expected, d.per_second
            ),
        );
        out.row(
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
        out.row("latency", opt_ms(self.latency_ms));
        if let Some(s) = &self.server {
            out.row(
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
            out.row(
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
            if let Some(kib) = s.rss_after_warmup_kib {
                out.row(
                    "  after warm-up",
                    format!(
                        "{kib} KiB{}",
                        s.rss_per_connection_after_warmup_bytes
                            .map(|b| format!(", {:.2} KiB per connection", b / 1024.0))
                            .unwrap_or_default()
                    ),
                );
            }
        }
        let b = &self.bench;
        out.row(
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
            out.row(
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
        out.row(
            "load average",
            format!(
                "{} at start, {} at end",
                la(self.load_average.start),
                la(self.load_average.end)
            ),
        );
        out.finish()
    }
}
