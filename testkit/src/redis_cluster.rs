//! [`RedisCluster`]: a private Redis Cluster for tests — three primaries with one replica each,
//! six `redis-server` processes on free loopback ports.
//!
//! The cluster is created with `redis-cli --cluster create` (redis-cli comes with Debian's
//! redis-server, in redis-tools) and inspected with `CLUSTER NODES` through redis-cli, whose
//! multi-line answers the kit's one-line RESP probe cannot read.

use std::io;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::{Instant, sleep};

use crate::process::{self, POLL_INTERVAL};
use crate::redis_server::RedisServer;

/// How long a primary may be unreachable before its replica is promoted: short, so that a test's
/// failover takes a few seconds (Redis' default is 15 s).
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// The bound on creating the cluster and on a failover ([`RedisCluster::wait_for_promotion`]).
pub const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// The number of primaries; each has one replica.
const PRIMARIES: usize = 3;

/// A Redis Cluster for one test: three primaries, each with one replica, with the slots spread
/// evenly. Every node is killed when this value is dropped.
///
/// ```no_run
/// # async fn example() {
/// use sidecast_testkit::RedisCluster;
///
/// let mut cluster = RedisCluster::start().await;
/// let url = cluster.url(); // redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>
/// let killed = cluster.kill_primary_of("{sidecast}").await;
/// let promoted = cluster.wait_for_promotion("{sidecast}", &killed).await;
/// assert_ne!(killed, promoted);
/// # let _ = url;
/// # }
/// ```
///
/// # Panics
///
/// Starting panics when `redis-server` or `redis-cli` is missing (install `redis-server`, which
/// brings both on Debian) or when the cluster does not become healthy within
/// [`CLUSTER_DEADLINE`] (the message includes what `CLUSTER NODES` said last).
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node id.
    pub id: String,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Whether the node is a primary (flag `master`).
    pub primary: bool,
    /// Whether the others consider it failed (flag `fail` or `fail?`).
    pub failing: bool,
    /// The id of its primary, for a replica.
    pub primary_id: Option<String>,
    /// The slot ranges it serves, `(first, last)` inclusive; empty for a replica.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster and waits until every slot is served by a primary
    /// that has a connected replica.
    pub async fn start() -> Self {
        let mut nodes = Vec::with_capacity(PRIMARIES * 2);
        for _ in 0..PRIMARIES * 2 {
            // The cluster bus port is given explicitly (Redis 7: `cluster-port`), because the
            // default, port + 10000, may be above 65535 or taken.
            let bus = process::free_port().to_string();
            let timeout = NODE_TIMEOUT.as_millis().to_string();
            let args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                timeout.as_str(),
                "--cluster-port",
                bus.as_str(),
                // A replica starts its first sync at once rather than after the default 5 s:
                // until it has synced, it refuses to take over from a failed primary.
                "--repl-diskless-sync-delay",
                "0",
            ];
            nodes.push(RedisServer::start_local_with_args(args).await);
        }
        let cluster = Self { nodes };
        let addrs: Vec<String> = cluster.nodes.iter().map(addr_of).collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addrs.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let output = redis_cli(&create)
            .await
            .unwrap_or_else(|e| panic!("redis-cli --cluster create failed: {e}"));
        if !output.contains("[OK] All 16384 slots covered") {
            panic!(
                "redis-cli --cluster create did not cover every slot:\n{}",
                process::tail(&output, 20)
            );
        }
        cluster
            .wait_until("every slot served and every primary replicated", |nodes| {
                healthy(nodes)
            })
            .await;
        // One node's CLUSTER NODES can be complete before another node has seen every slot
        // assigned: until then that node answers CLUSTERDOWN. And a replica that has not
        // finished its first sync does not take over when its primary fails.
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        for addr in &addrs {
            for (command, ready) in [
                (["CLUSTER", "INFO"], &["cluster_state:ok"][..]),
                (
                    ["INFO", "replication"],
                    &["role:master", "master_link_status:up"][..],
                ),
            ] {
                loop {
                    let info = cluster.cli(addr, &command).await;
                    if info
                        .as_deref()
                        .is_ok_and(|i| ready.iter().any(|r| i.contains(r)))
                    {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{addr} did not report {ready:?} within {CLUSTER_DEADLINE:?}: {info:?}"
                    );
                    sleep(POLL_INTERVAL * 10).await;
                }
            }
        }
        cluster
    }

    /// `redis+cluster://` with the primaries' addresses as seed nodes.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().take(PRIMARIES).map(addr_of).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// `redis://<addr>` of every node, primaries and replicas, in start order.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url().to_owned()).collect()
    }

    /// The cluster's slot of `key` (CRC16 of the key, or of its `{hash tag}`, modulo 16384).
    pub fn slot_of(key: &str) -> u16 {
        let tagged = key
            .find('{')
            .and_then(|open| {
                let rest = &key[open + 1..];
                rest.find('}')
                    .filter(|&close| close > 0)
                    .map(|close| &rest[..close])
            })
            .unwrap_or(key);
        crc16(tagged.as_bytes()) % 16384
    }

    /// What `CLUSTER NODES` says, asked of the first running node.
    pub async fn nodes(&self) -> io::Result<Vec<ClusterNode>> {
        let mut last = io::Error::other("no node is running");
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            match cli_at(node, &["CLUSTER", "NODES"]).await {
                Ok(text) => return Ok(parse_nodes(&text)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The address of the primary that serves `key`'s slot now.
    pub async fn primary_of(&self, key: &str) -> String {
        let slot = Self::slot_of(key);
        let nodes = self
            .nodes()
            .await
            .unwrap_or_else(|e| panic!("CLUSTER NODES failed: {e}"));
        owner(&nodes, slot)
            .map(|n| n.addr.clone())
            .unwrap_or_else(|| panic!("no primary serves slot {slot}: {nodes:?}"))
    }

    /// Kills (`SIGKILL`) the primary that serves `key`'s slot and returns its address.
    pub async fn kill_primary_of(&mut self, key: &str) -> String {
        let addr = self.primary_of(key).await;
        let node = self
            .nodes
            .iter_mut()
            .find(|n| addr_of(n) == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of this cluster"));
        node.stop().await;
        addr
    }

    /// Waits until a primary other than `old` serves `key`'s slot, the cluster reports
    /// `cluster_state:ok` and the new primary answers; returns the new primary's address.
    pub async fn wait_for_promotion(&self, key: &str, old: &str) -> String {
        let slot = Self::slot_of(key);
        let nodes = self
            .wait_until(&format!("a new primary for slot {slot}"), |nodes| {
                owner(nodes, slot).is_some_and(|n| n.addr != old && !n.failing)
            })
            .await;
        let promoted = owner(&nodes, slot)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        loop {
            let info = self.cli(&promoted, &["CLUSTER", "INFO"]).await;
            if info
                .as_deref()
                .is_ok_and(|i| i.contains("cluster_state:ok"))
            {
                return promoted;
            }
            assert!(
                Instant::now() < deadline,
                "{promoted} was promoted but the cluster state did not become ok: {info:?}"
            );
            sleep(POLL_INTERVAL * 10).await;
        }
    }

    /// Runs one command with redis-cli against the node at `addr` and returns its output.
    pub async fn cli(&self, addr: &str, args: &[&str]) -> io::Result<String> {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| io::Error::other(format!("{addr} is not host:port")))?;
        let mut all = vec!["-h", host, "-p", port];
        all.extend_from_slice(args);
        redis_cli(&all).await
    }

    /// Polls `CLUSTER NODES` until `condition` holds and returns the nodes it held for.
    async fn wait_until(
        &self,
        what: &str,
        condition: impl Fn(&[ClusterNode]) -> bool,
    ) -> Vec<ClusterNode> {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        loop {
            let nodes = self.nodes().await;
            if let Ok(nodes) = &nodes
                && condition(nodes)
            {
                return nodes.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {CLUSTER_DEADLINE:?} waiting for {what}; CLUSTER NODES: {nodes:?}"
            );
            sleep(POLL_INTERVAL * 10).await;
        }
    }
}

/// `127.0.0.1:<port>` of a node.
fn addr_of(node: &RedisServer) -> String {
    format!("127.0.0.1:{}", node.port())
}

/// redis-cli against one node.
async fn cli_at(node: &RedisServer, args: &[&str]) -> io::Result<String> {
    let port = node.port().to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", port.as_str()];
    all.extend_from_slice(args);
    redis_cli(&all).await
}

/// Runs redis-cli with `args`, bounded by [`CLUSTER_DEADLINE`]; its standard output, or an error
/// with its standard error when it fails.
async fn redis_cli(args: &[&str]) -> io::Result<String> {
    let mut command = Command::new("redis-cli");
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(CLUSTER_DEADLINE, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Err(io::Error::other(
                "redis-cli is not installed; install it with `apt-get install redis-server` \
                 (Debian/Ubuntu: it comes with redis-tools)",
            ));
        }
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(io::Error::other(format!("redis-cli {args:?} hung"))),
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(io::Error::other(format!(
            "redis-cli {args:?} exited with {}: {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// The lines of `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch>
/// <link> <slot>...`.
fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, address, flags) = (fields.first()?, fields.get(1)?, fields.get(2)?);
            let addr = address.split('@').next()?.to_owned();
            let flags: Vec<&str> = flags.split(',').collect();
            let slots = fields
                .iter()
                .skip(8)
                // Slots being imported or migrated are written `[slot->-id]`: not served yet.
                .filter(|f| !f.starts_with('['))
                .filter_map(|range| match range.split_once('-') {
                    Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
                    None => range.parse().ok().map(|slot| (slot, slot)),
                })
                .collect();
            Some(ClusterNode {
                id: (*id).to_owned(),
                addr,
                primary: flags.contains(&"master"),
                failing: flags.iter().any(|f| *f == "fail" || *f == "fail?"),
                primary_id: fields
                    .get(3)
                    .filter(|p| **p != "-")
                    .map(|p| (*p).to_owned()),
                slots,
            })
        })
        .collect()
}

/// The primary that serves `slot`, if one does.
fn owner(nodes: &[ClusterNode], slot: u16) -> Option<&ClusterNode> {
    nodes.iter().find(|n| {
        n.primary
            && n.slots
                .iter()
                .any(|&(first, last)| (first..=last).contains(&slot))
    })
}

/// Every slot is served by a healthy primary, and each primary has a healthy replica.
fn healthy(nodes: &[ClusterNode]) -> bool {
    let served: u32 = nodes
        .iter()
        .filter(|n| n.primary && !n.failing)
        .flat_map(|n| n.slots.iter())
        .map(|&(first, last)| u32::from(last - first) + 1)
        .sum();
    let primaries = nodes.iter().filter(|n| n.primary && !n.slots.is_empty());
    let replicated = primaries.clone().all(|p| {
        nodes
            .iter()
            .any(|r| !r.primary && !r.failing && r.primary_id.as_deref() == Some(&p.id))
    });
    served == 16384 && primaries.count() == PRIMARIES && replicated
}

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster assigns slots with.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_redis_cluster_specification() {
        // The specification's check value: CRC16("123456789") = 0x31C3.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(RedisCluster::slot_of("foo"), 12182);
        // Only the hash tag counts, so that related keys share a slot.
        assert_eq!(
            RedisCluster::slot_of("{user1000}.following"),
            RedisCluster::slot_of("{user1000}.followers")
        );
        // An empty tag does not count: the whole key is hashed.
        assert_eq!(
            RedisCluster::slot_of("foo{}{bar}"),
            crc16(b"foo{}{bar}") % 16384
        );
    }

    #[test]
    fn parses_cluster_nodes() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001 slave a1 0 1 1 connected\n\
                    c3 127.0.0.1:7002@17002 master,fail - 0 1 2 disconnected 5461 [5462->-a1]\n";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].addr, "127.0.0.1:7000");
        assert!(nodes[0].primary && !nodes[0].failing);
        assert_eq!(nodes[0].slots, vec![(0, 5460)]);
        assert!(!nodes[1].primary && nodes[1].slots.is_empty());
        assert_eq!(nodes[1].primary_id.as_deref(), Some("a1"));
        assert_eq!(nodes[0].primary_id, None);
        assert!(nodes[2].failing);
        assert_eq!(nodes[2].slots, vec![(5461, 5461)]);
        assert_eq!(owner(&nodes, 100).map(|n| n.id.as_str()), Some("a1"));
    }
}
