//! [`RabbitMqCluster`]: three private `rabbitmq-server` nodes clustered on loopback.
//!
//! Each node runs as [`crate::RabbitMqServer`]'s private nodes do (its own directory, AMQP and
//! distribution ports, node name), with two differences that make a cluster: the three share
//! one private `epmd` (Erlang nodes find each other through the port mapper of their host, so
//! one per cluster rather than one per node), and one Erlang cookie (written to each node's
//! `HOME`, where `rabbitmqctl` run with the node's environment reads it too). The second and
//! third nodes then `join_cluster` the first (`stop_app`, `join_cluster`, `start_app`).
//!
//! Starting takes tens of seconds (three Erlang VMs booted side by side, then six `rabbitmqctl`
//! calls, each of which boots a VM): start one cluster per test binary.

use std::path::Path;
use std::process::Child;

use crate::rabbitmq_server::node::{LocalServer, Membership, spawn_watchdog, start_epmd};

/// How many nodes a cluster has: the smallest that survives the loss of one (streams and quorum
/// queues need a majority).
pub const NODES: usize = 3;

/// One node of a [`RabbitMqCluster`].
#[derive(Debug)]
struct Node {
    local: LocalServer,
    port: u16,
    url: String,
}

impl Node {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Three clustered RabbitMQ nodes on loopback for tests.
///
/// ```no_run
/// # async fn example() {
/// use sidecast_testkit::RabbitMqCluster;
///
/// let mut cluster = RabbitMqCluster::start().await;
/// let urls = cluster.urls(); // one amqp://guest:guest@127.0.0.1:<port>/%2f per node
/// cluster.kill(0).await; // SIGKILL the first node
/// cluster.restart(0).await; // back, and in the cluster again
/// # let _ = urls;
/// # }
/// ```
///
/// # Panics
///
/// Starting panics when RabbitMQ is not installed, a node does not start in time, or a node
/// cannot join (the message includes `rabbitmqctl`'s output).
#[derive(Debug)]
pub struct RabbitMqCluster {
    nodes: Vec<Node>,
    /// The shared epmd; declared after the nodes so that it outlives them on drop.
    epmd: Child,
    /// The epmd's watchdog (cleans up after a test process that died).
    watchdog: Option<Child>,
    /// The epmd's log and the watchdog's target.
    dir: tempfile::TempDir,
}

impl RabbitMqCluster {
    /// Starts three nodes and clusters them; returns once each accepts AMQP connections and
    /// the cluster has all three running.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sidecast-rabbitmq-cluster-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let [epmd_port] = crate::process::free_ports();
        let epmd = start_epmd(epmd_port, dir.path())
            .await
            .unwrap_or_else(|why| panic!("the cluster's epmd did not start: {why}"));
        let watchdog = spawn_watchdog(epmd.id(), dir.path());
        let cookie = format!("SIDECAST{}", uuid::Uuid::new_v4().simple()).to_uppercase();
        // The nodes boot side by side (each boot is mostly waiting); they join afterwards.
        let starting: Vec<_> = (0..NODES)
            .map(|i| {
                let member = Membership {
                    epmd_port: Some(epmd_port),
                    cookie: Some(cookie.clone()),
                    label: Some(format!("-c{i}")),
                };
                tokio::spawn(async move { LocalServer::start_member(&[], &member).await })
            })
            .collect();
        let mut nodes = Vec::with_capacity(NODES);
        for started in starting {
            let (local, port) = match started.await {
                Ok(started) => started,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("a RabbitMQ node's start was cancelled: {e}"),
            };
            nodes.push(Node {
                local,
                port,
                url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            });
        }
        let cluster = Self {
            nodes,
            epmd,
            watchdog,
            dir,
        };
        let first = cluster.node_name(0).to_owned();
        for i in 1..NODES {
            for args in [
                &["stop_app"][..],
                &["join_cluster", first.as_str()][..],
                &["start_app"][..],
            ] {
                if let Err(e) = cluster.ctl(i, args).await {
                    panic!("node {i} did not join the cluster: {e}");
                }
            }
        }
        cluster.await_running(NODES).await;
        cluster
    }

    /// The AMQP URL of each node (`guest` on the default virtual host), in node order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.url.clone()).collect()
    }

    /// The URLs of every node separated by commas, the form `broker.url` takes for a cluster.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// The AMQP port of node `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// The Erlang node name of node `i` (`sidecast-…@localhost`).
    pub fn node_name(&self, i: usize) -> &str {
        self.nodes[i].local.node()
    }

    /// Which node (index) an Erlang node name is, if one of this cluster's.
    pub fn index_of(&self, node_name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.local.node() == node_name)
    }

    /// The temporary directory of node `i`.
    pub fn dir(&self, i: usize) -> &Path {
        self.nodes[i].local.dir()
    }

    /// Whether node `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].local.is_running()
    }

    /// Kills node `i` (`SIGKILL`, as in a crash) and waits until its port refuses connections.
    pub async fn kill(&mut self, i: usize) {
        let addr = self.nodes[i].addr();
        self.nodes[i].local.kill(&addr).await;
    }

    /// Stops node `i` in order (`SIGTERM`).
    pub async fn stop(&mut self, i: usize) {
        let addr = self.nodes[i].addr();
        self.nodes[i].local.stop(&addr).await;
    }

    /// Starts node `i` again (stopping it first if it runs) on the same ports and data, and
    /// waits until it accepts AMQP connections and the cluster has all its nodes running.
    pub async fn restart(&mut self, i: usize) {
        self.stop(i).await;
        let node = &mut self.nodes[i];
        let addr = node.addr();
        node.local.restart(node.port, &addr).await;
        self.await_running(NODES).await;
    }

    /// Runs `rabbitmqctl -n <node i> <args>` with node `i`'s environment.
    pub async fn ctl(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let node = &self.nodes[i];
        node.local.ctl(node.port, args).await
    }

    /// Runs `rabbitmq-streams -n <node i> <args>` with node `i`'s environment (for example
    /// `delete_replica <queue> <node name>`).
    pub async fn streams(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let node = &self.nodes[i];
        node.local.tool("rabbitmq-streams", node.port, args).await
    }

    /// The nodes (indexes, ascending) that hold a replica of stream or quorum queue `queue` on
    /// the default virtual host, from `rabbitmqctl list_queues name members`; empty when the
    /// queue does not exist or no node answers.
    pub async fn members(&self, queue: &str) -> Vec<usize> {
        let Ok(out) = self
            .ctl_any(&[
                "list_queues",
                "--quiet",
                "--no-table-headers",
                "name",
                "members",
            ])
            .await
        else {
            return Vec::new();
        };
        let Some(line) = out
            .lines()
            .find(|line| line.split_whitespace().next() == Some(queue))
        else {
            return Vec::new();
        };
        // `<queue>\t[sidecast-…@localhost,sidecast-…@localhost]` (or with spaces and quotes).
        let mut members: Vec<usize> = line[queue.len()..]
            .split(|c: char| matches!(c, '[' | ']' | ',' | '\'' | '"') || c.is_whitespace())
            .filter_map(|name| self.index_of(name))
            .collect();
        members.sort_unstable();
        members.dedup();
        members
    }

    /// Runs `rabbitmqctl` through the first running node.
    async fn ctl_any(&self, args: &[&str]) -> Result<String, String> {
        let mut failure = String::from("no node runs");
        for i in (0..NODES).filter(|&i| self.is_running(i)) {
            match self.ctl(i, args).await {
                Ok(out) => return Ok(out),
                Err(e) => failure = e,
            }
        }
        Err(failure)
    }

    /// The node (index) that leads stream or quorum queue `queue` on the default virtual host,
    /// from `rabbitmqctl list_queues name leader`; `None` when it has none (yet) or the queue
    /// does not exist.
    pub async fn leader(&self, queue: &str) -> Option<usize> {
        let out = self
            .ctl_any(&[
                "list_queues",
                "--quiet",
                "--no-table-headers",
                "name",
                "leader",
            ])
            .await
            .ok()?;
        out.lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next()? == queue)
                .then(|| fields.next())
                .flatten()
                .and_then(|leader| self.index_of(leader))
        })
    }

    /// How many nodes the cluster reports running, asked through any running node; 0 when
    /// none answers.
    pub async fn running_nodes(&self) -> usize {
        self.ctl_any(&["eval", "length(rabbit_nodes:all_running())."])
            .await
            .ok()
            .and_then(|out| out.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits (bounded) until the cluster reports `count` running nodes.
    async fn await_running(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + crate::conformance::DEADLINE * 3;
        loop {
            let running = self.running_nodes().await;
            if running >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the RabbitMQ cluster reports {running} running nodes, not {count}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

impl Drop for RabbitMqCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.local.kill_processes();
        }
        let _ = self.epmd.kill();
        let _ = self.epmd.wait();
        if let Some(watchdog) = self.watchdog.as_mut() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = &self.dir;
    }
}
