//! `sidecast-rabbitmq-cluster`: a [`RabbitMqCluster`] for test suites in other languages (the
//! JavaScript end-to-end suite), so that they do not set up a cluster themselves.
//!
//! Starts the three nodes, prints one line of JSON with their addresses, then reads commands
//! from standard input, one a line, and answers each with one line of JSON (`{"ok":true,...}`
//! or `{"ok":false,"error":"..."}`):
//!
//! | command | answer |
//! |---|---|
//! | `kill I` | SIGKILLs node `I`; `killed_at`: when the signal was sent (ms since the epoch) |
//! | `restart I` | node `I` back in the cluster |
//! | `leader QUEUE` | `leader`: the node that leads stream `QUEUE`, or `null` |
//! | `members QUEUE` | `members`: the nodes that hold a replica of `QUEUE` |
//! | `stop` | stops the cluster and exits (so does the end of standard input) |
//!
//! The first line: `{"urls":[...],"ports":[...],"nodes":[...],"started_ms":N}` (node names,
//! and how long the start took).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sidecast_testkit::RabbitMqCluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"));
    runtime.block_on(run());
}

/// A JSON string literal of `text`.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list<T>(items: impl IntoIterator<Item = T>, show: impl Fn(T) -> String) -> String {
    let items: Vec<String> = items.into_iter().map(show).collect();
    format!("[{}]", items.join(","))
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

async fn run() {
    let started = Instant::now();
    let mut cluster = RabbitMqCluster::start().await;
    let nodes = 0..sidecast_testkit::rabbitmq_cluster::NODES;
    let first = format!(
        "{{\"urls\":{},\"ports\":{},\"nodes\":{},\"started_ms\":{}}}",
        list(cluster.urls(), |url| quoted(&url)),
        list(nodes.clone(), |i| cluster.port(i).to_string()),
        list(nodes.clone(), |i| quoted(cluster.node_name(i))),
        started.elapsed().as_millis()
    );
    let mut stdout = tokio::io::stdout();
    let mut say = async |line: String| {
        let _ = stdout.write_all(format!("{line}\n").as_bytes()).await;
        let _ = stdout.flush().await;
    };
    say(first).await;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.split_whitespace();
        let (command, argument) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let node = argument.parse::<usize>().ok().filter(|i| nodes.contains(i));
        let answer = match (command, node) {
            ("kill", Some(i)) => {
                let at = now_ms();
                cluster.kill(i).await;
                format!("{{\"ok\":true,\"killed_at\":{at}}}")
            }
            ("restart", Some(i)) => {
                cluster.restart(i).await;
                "{\"ok\":true}".to_owned()
            }
            ("leader", _) if !argument.is_empty() => match cluster.leader(argument).await {
                Some(i) => format!("{{\"ok\":true,\"leader\":{i}}}"),
                None => "{\"ok\":true,\"leader\":null}".to_owned(),
            },
            ("members", _) if !argument.is_empty() => format!(
                "{{\"ok\":true,\"members\":{}}}",
                list(cluster.members(argument).await, |i| i.to_string())
            ),
            ("stop", _) => break,
            _ => format!(
                "{{\"ok\":false,\"error\":{}}}",
                quoted(&format!(
                    "unknown command {line:?}: kill I, restart I, leader QUEUE, members QUEUE, \
                     stop"
                ))
            ),
        };
        say(answer).await;
    }
    drop(cluster);
}
