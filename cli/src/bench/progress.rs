//! The live progress line on stderr: clients, publishes, deliveries, p99 latency and CPU, once a
//! second.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::client::ClientStats;
use super::procfs::{self, Pid};
use super::publish::PublishStats;

/// Prints a progress line on stderr once per second until aborted. `published` are the
/// publishers' counters (warm-up and window): "sent" is their sum.
pub(crate) fn spawn(
    clients: Arc<ClientStats>,
    published: Vec<Arc<PublishStats>>,
    requested: u64,
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
            let deliveries = clients.deliveries();
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
            let (latency, _, _) = clients.latency();
            let p99 = if latency.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2}ms", latency.value_at_quantile(0.99) as f64 / 1000.0)
            };
            let line = format!(
                "[{:>5.0}s] clients {}/{} (refused {}, failed {}, dropped {})  sent {}  deliveries {} (+{:.0}/s)  p99 {}  cpu: bench {:.0}%{}",
                started.elapsed().as_secs_f64(),
                clients.connected.load(Ordering::Relaxed),
                requested,
                clients.refused.load(Ordering::Relaxed),
                clients.failed.load(Ordering::Relaxed),
                clients.disconnected.load(Ordering::Relaxed),
                published
                    .iter()
                    .map(|p| p.accepted.load(Ordering::Relaxed))
                    .sum::<u64>(),
                deliveries,
                deliveries.saturating_sub(last_deliveries) as f64 / elapsed,
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

/// Stops the progress line, ending it on a terminal so that the report starts on its own line.
pub(crate) fn stop(progress: JoinHandle<()>) {
    progress.abort();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}
