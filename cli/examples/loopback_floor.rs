//! What fanning small events out over loopback TCP costs this machine's kernel, with no server.
//!
//! A writer thread plays an ideal server (no framing, no queues, no tasks: one `write` of a
//! pre-built 60-byte frame per client per event) and a reader thread an ideal client set (one
//! tokio task per connection reading frames), over `--clients` loopback connections with
//! `TCP_NODELAY`, at `--rate` events per second. It reports the CPU each side spends per delivery
//! and the end-to-end latency of every delivery: a floor under what `sidecast bench` can measure
//! for any Socket.IO server on the same machine.
//!
//! ```sh
//! cargo run --release -p sidecast --example loopback_floor -- --clients 1000 --rate 50 --duration 10
//! ```

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::AsyncReadExt;

/// Bytes per event: about a Socket.IO event frame with a small JSON body.
const FRAME: usize = 60;

struct Options {
    clients: usize,
    rate: u64,
    duration: u64,
    writers: usize,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        clients: 1000,
        rate: 50,
        duration: 10,
        writers: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--clients" => options.clients = number()? as usize,
            "--rate" => options.rate = number()?.max(1),
            "--duration" => options.duration = number()?.max(1),
            "--writers" => options.writers = (number()? as usize).max(1),
            _ => {
                return Err(format!(
                    "unknown option {flag}; options: --clients N --rate R --duration S --writers W"
                ));
            }
        }
    }
    Ok(options)
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Fields 14 and 15 of the stat line; after the command's ')' they are the 12th and 13th.
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / 100)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let mut clients = Vec::with_capacity(options.clients);
    let mut servers = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        let client = TcpStream::connect(address)?;
        client.set_nodelay(true)?;
        client.set_nonblocking(true)?;
        clients.push(client);
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        servers.push(server);
    }
    let events = options.rate * options.duration;
    let start = Instant::now();
    // Microseconds after `start` at which each event's first write began.
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));

    let reader = {
        let (sent, latency) = (sent.clone(), latency.clone());
        std::thread::spawn(move || -> std::io::Result<Duration> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let cpu = thread_cpu();
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for client in clients {
                    let (sent, latency) = (sent.clone(), latency.clone());
                    tasks.spawn(async move {
                        let mut stream = tokio::net::TcpStream::from_std(client)?;
                        let mut buffer = [0u8; 64 * FRAME];
                        let (mut filled, mut received) = (0usize, 0u64);
                        while received < events {
                            let n = stream.read(&mut buffer[filled..]).await?;
                            if n == 0 {
                                break;
                            }
                            filled += n;
                            let now = start.elapsed().as_micros() as u64;
                            let mut histogram = latency.lock().unwrap_or_else(|e| e.into_inner());
                            for frame in buffer[..filled - filled % FRAME].chunks_exact(FRAME) {
                                let event =
                                    u64::from_le_bytes(frame[..8].try_into().unwrap_or([0; 8]));
                                let at = sent[event as usize].load(Ordering::Relaxed);
                                let _ = histogram.record(now.saturating_sub(at).max(1));
                                received += 1;
                            }
                            let whole = filled - filled % FRAME;
                            buffer.copy_within(whole..filled, 0);
                            filled -= whole;
                        }
                        Ok::<_, std::io::Error>(())
                    });
                }
                while let Some(done) = tasks.join_next().await {
                    done.map_err(std::io::Error::other)??;
                }
                Ok::<_, std::io::Error>(())
            })?;
            Ok(thread_cpu() - cpu)
        })
    };

    // The writers share the connections; each writes every event to its own share.
    let per_writer = options.clients.div_ceil(options.writers);
    let mut writers = Vec::new();
    let mut shares = Vec::new();
    while !servers.is_empty() {
        let rest = servers.split_off(per_writer.min(servers.len()));
        shares.push(std::mem::replace(&mut servers, rest));
    }
    for mut share in shares {
        let sent = sent.clone();
        let rate = options.rate;
        writers.push(std::thread::spawn(move || -> std::io::Result<Duration> {
            let cpu = thread_cpu();
            let mut frame = [b'x'; FRAME];
            for event in 0..events {
                let due = Duration::from_micros(event * 1_000_000 / rate);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                frame[..8].copy_from_slice(&event.to_le_bytes());
                let _ = sent[event as usize].compare_exchange(
                    0,
                    start.elapsed().as_micros() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                for server in &mut share {
                    server.write_all(&frame)?;
                }
            }
            Ok(thread_cpu() - cpu)
        }));
    }
    let mut writer_cpu = Duration::ZERO;
    for writer in writers {
        writer_cpu += writer.join().map_err(|_| "a writer thread panicked")??;
    }
    let reader_cpu = reader.join().map_err(|_| "the reader thread panicked")??;
    let deliveries = events * options.clients as u64;
    let latency = latency.lock().unwrap_or_else(|e| e.into_inner());
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "loopback floor: {} clients, {} events/s for {} s, {} writer thread(s): {} deliveries",
        options.clients,
        options.rate,
        options.duration,
        options.writers,
        latency.len()
    );
    println!(
        "  writer (an ideal server): {:.2} µs CPU per delivery; reader (ideal clients): {:.2} µs",
        writer_cpu.as_secs_f64() * 1e6 / deliveries as f64,
        reader_cpu.as_secs_f64() * 1e6 / deliveries as f64
    );
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    Ok(())
}
