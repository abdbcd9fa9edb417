//! [`RedisSentinelSet`]: a Redis Sentinel topology for tests: a master, two replicas and three
//! sentinels with fast failover settings, all private processes on free loopback ports.
//!
//! Like [`crate::RedisServer`], it speaks just enough RESP over raw TCP (here with whole
//! replies: arrays for `ROLE`, `SENTINEL ...`) to see the topology settle and to follow a
//! failover; the test kit has no Redis client.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tokio::time::{Instant, sleep};

use crate::RedisServer;
use crate::process::{self, POLL_INTERVAL, ServerProcess, ServerProgram};
use crate::resp::{Resp, send};

/// The name the sentinels monitor the master under.
pub const SERVICE: &str = "mymaster";

/// Sentinel's `down-after-milliseconds`: how long the master must be silent before a sentinel
/// thinks it down. Short, so that a failover takes a few seconds.
pub const DOWN_AFTER_MS: u64 = 1_000;

/// Sentinel's `failover-timeout`, in milliseconds.
pub const FAILOVER_TIMEOUT_MS: u64 = 5_000;

/// How long the topology may take to settle (replicas in sync, sentinels aware of each other)
/// and a failover to complete.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(30);

/// A master, two replicas and three sentinels (quorum 2) on free loopback ports, with
/// `down-after-milliseconds` [`DOWN_AFTER_MS`] and `failover-timeout` [`FAILOVER_TIMEOUT_MS`].
/// Every process is killed when this value is dropped.
///
/// ```no_run
/// # async fn example() {
/// use sidecast_testkit::RedisSentinelSet;
///
/// let mut set = RedisSentinelSet::start().await;
/// let url = set.url(); // redis+sentinel://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>/0/mymaster
/// let old = set.kill_master().await; // SIGKILL
/// let new = set.wait_for_promotion(&old).await; // "127.0.0.1:<port>", answers ROLE master
/// # let _ = (url, new);
/// # }
/// ```
///
/// # Panics
///
/// Starting panics when `redis-server` is not installed or the topology does not settle within
/// [`SETTLE_DEADLINE`] (the message says what was missing).
#[derive(Debug)]
pub struct RedisSentinelSet {
    /// The data nodes; index 0 started as the master.
    nodes: Vec<RedisServer>,
    sentinels: Vec<ServerProcess<SentinelProgram>>,
    /// The data nodes' password (`requirepass`, `masterauth`, the sentinels' `auth-pass`).
    password: Option<String>,
}

/// `redis-server <dir>/sentinel.conf --sentinel`, monitoring the master at `master_port`.
#[derive(Debug)]
struct SentinelProgram {
    master_port: u16,
    password: Option<String>,
}

impl ServerProgram for SentinelProgram {
    fn name(&self) -> &str {
        "redis-sentinel"
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        // Each sentinel rewrites its own file (ids, epochs, known replicas), so each has one.
        // A restart keeps the rewritten file: it must not be overwritten then.
        let file = dir.join("sentinel.conf");
        if !file.exists() {
            let auth = self
                .password
                .as_ref()
                .map(|pw| format!("sentinel auth-pass {SERVICE} {pw}\n"))
                .unwrap_or_default();
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master} 2\n{auth}\
                 sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = dir.display(),
                log = self.log_file(dir).display(),
                master = self.master_port,
            );
            if let Err(e) = std::fs::write(&file, text) {
                panic!("cannot write {}: {e}", file.display());
            }
        }
        let mut command = Command::new("redis-server");
        command.arg(&file).arg("--sentinel");
        command
    }

    fn log_file(&self, dir: &Path) -> PathBuf {
        dir.join("sentinel.log")
    }

    fn not_installed(&self) -> String {
        "redis-server is not installed (not found on PATH); install it with \
         `apt-get install redis-server` (Sentinel runs as `redis-server FILE --sentinel`)"
            .to_owned()
    }

    fn probe(&self, addr: &str) -> impl Future<Output = io::Result<()>> {
        let addr = addr.to_owned();
        async move {
            match query(&addr, &["PING"]).await? {
                Resp::Simple(pong) if pong == "PONG" => Ok(()),
                other => Err(io::Error::other(format!(
                    "unexpected reply to PING: {other:?}"
                ))),
            }
        }
    }
}

impl RedisSentinelSet {
    /// Starts the master, two replicas of it and three sentinels, and waits until the replicas
    /// are in sync and every sentinel knows both replicas and the two other sentinels (so that
    /// a failover can be agreed).
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`RedisSentinelSet::start`] with `password` required by the data nodes (`requirepass`,
    /// `masterauth` for the replicas, `auth-pass` for the sentinels); the sentinels themselves
    /// need none. [`RedisSentinelSet::url`] carries it.
    pub async fn start_with_password(password: &str) -> Self {
        Self::start_with(Some(password.to_owned())).await
    }

    async fn start_with(password: Option<String>) -> Self {
        let auth: Vec<String> = password
            .iter()
            .flat_map(|pw| {
                [
                    "--requirepass".to_owned(),
                    pw.clone(),
                    "--masterauth".to_owned(),
                    pw.clone(),
                ]
            })
            .collect();
        let master = RedisServer::start_local_with_args(auth.clone()).await;
        let master_port = master.port();
        let mut nodes = vec![master];
        for _ in 0..2 {
            let mut args = auth.clone();
            args.extend([
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                master_port.to_string(),
            ]);
            nodes.push(RedisServer::start_local_with_args(args).await);
        }
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(
                ServerProcess::start(SentinelProgram {
                    master_port,
                    password: password.clone(),
                })
                .await,
            );
        }
        let set = Self {
            nodes,
            sentinels,
            password,
        };
        set.wait_until_settled().await;
        set
    }

    /// Waits until the set is whole again: every replica in sync with the master, every
    /// sentinel aware of the master, two replicas and the two other sentinels (after
    /// [`RedisSentinelSet::start_node`], or a failover once the old master is back). Panics after
    /// [`SETTLE_DEADLINE`].
    pub async fn wait_until_settled(&self) {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            let missing = self.unsettled().await;
            let Some(missing) = missing else { return };
            if Instant::now() > deadline {
                panic!(
                    "the Sentinel set did not settle within {SETTLE_DEADLINE:?}: {missing}\n{}",
                    self.logs()
                );
            }
            sleep(POLL_INTERVAL * 10).await;
        }
    }

    /// What is still missing before the topology is ready, `None` when nothing is.
    async fn unsettled(&self) -> Option<String> {
        for sentinel in &self.sentinels {
            let reply = match query(sentinel.addr(), &["SENTINEL", "MASTER", SERVICE]).await {
                Ok(reply) => reply,
                Err(e) => return Some(format!("sentinel {}: {e}", sentinel.addr())),
            };
            let fields = reply.pairs();
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            if field("num-slaves") != "2" || field("num-other-sentinels") != "2" {
                return Some(format!(
                    "sentinel {} knows {} replicas and {} other sentinels",
                    sentinel.addr(),
                    field("num-slaves"),
                    field("num-other-sentinels")
                ));
            }
            if field("flags") != "master" {
                return Some(format!(
                    "sentinel {} flags the master {}",
                    sentinel.addr(),
                    field("flags")
                ));
            }
        }
        let master = match master_by_sentinel(self.sentinels[0].addr()).await {
            Ok(master) => master,
            Err(e) => return Some(format!("no master address: {e}")),
        };
        for node in &self.nodes {
            let addr = format!("127.0.0.1:{}", node.port());
            if addr == master {
                continue;
            }
            match query_as(&addr, self.password.as_deref(), &["ROLE"]).await {
                Ok(Resp::Array(parts))
                    if parts.get(3).and_then(Resp::text).as_deref() == Some("connected") => {}
                other => return Some(format!("replica {} is not in sync: {other:?}", node.port())),
            }
        }
        None
    }

    /// `redis+sentinel://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>/0/mymaster`, with
    /// `:password@` before the hosts for a set of [`RedisSentinelSet::start_with_password`].
    pub fn url(&self) -> String {
        let auth = self
            .password
            .as_ref()
            .map(|pw| format!(":{pw}@"))
            .unwrap_or_default();
        format!(
            "redis+sentinel://{auth}{}/0/{SERVICE}",
            self.sentinel_hosts()
        )
    }

    /// The sentinels' `host:port` list, comma-separated (for URLs of other forms).
    pub fn sentinel_hosts(&self) -> String {
        self.sentinels
            .iter()
            .map(ServerProcess::addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port` of the master as the first sentinel that answers gives it.
    pub async fn master_addr(&self) -> String {
        for sentinel in &self.sentinels {
            if let Ok(addr) = master_by_sentinel(sentinel.addr()).await {
                return addr;
            }
        }
        panic!("no sentinel gave the master's address\n{}", self.logs());
    }

    /// Kills the current master (`SIGKILL`) and returns its `host:port`.
    pub async fn kill_master(&mut self) -> String {
        let addr = self.master_addr().await;
        self.node_mut(&addr).stop().await;
        addr
    }

    /// Waits until every running sentinel names a master other than `old` and that master
    /// answers `ROLE` as a master; returns its `host:port`. Panics after [`SETTLE_DEADLINE`].
    pub async fn wait_for_promotion(&self, old: &str) -> String {
        let deadline = Instant::now() + SETTLE_DEADLINE;
        loop {
            if let Some(new) = self.agreed_master().await
                && new != old
                && role(&new, self.password.as_deref()).await.as_deref() == Some("master")
            {
                return new;
            }
            if Instant::now() > deadline {
                panic!(
                    "no replica of {old} was promoted within {SETTLE_DEADLINE:?}\n{}",
                    self.logs()
                );
            }
            sleep(POLL_INTERVAL * 5).await;
        }
    }

    /// The master every running sentinel names, if they agree.
    async fn agreed_master(&self) -> Option<String> {
        let mut agreed: Option<String> = None;
        for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
            let addr = master_by_sentinel(sentinel.addr()).await.ok()?;
            if agreed.as_ref().is_some_and(|a| *a != addr) {
                return None;
            }
            agreed = Some(addr);
        }
        agreed
    }

    /// Asks the sentinels to fail over now (`SENTINEL FAILOVER`), without killing anything: the
    /// old master stays up and is demoted to a replica. Returns the old master's `host:port`.
    pub async fn failover(&self) -> String {
        let old = self.master_addr().await;
        let reply = query(self.sentinels[0].addr(), &["SENTINEL", "FAILOVER", SERVICE]).await;
        assert!(
            matches!(reply, Ok(Resp::Simple(ref ok)) if ok == "OK"),
            "SENTINEL FAILOVER refused: {reply:?}"
        );
        old
    }

    /// The `host:port` of every data node (master and replicas), running or not.
    pub fn node_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect()
    }

    /// Kills (`SIGKILL`) the data node at `addr` (a replica, typically).
    pub async fn stop_node(&mut self, addr: &str) {
        self.node_mut(addr).stop().await;
    }

    /// Starts the data node at `addr` again on its port (empty: no persistence; the sentinels
    /// make it a replica of the current master).
    pub async fn start_node(&mut self, addr: &str) {
        self.node_mut(addr).restart().await;
    }

    /// A data node by `host:port`, for commands ([`RedisServer::command`]).
    pub fn node(&self, addr: &str) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| format!("127.0.0.1:{}", n.port()) == addr)
            .unwrap_or_else(|| panic!("{addr} is no data node of this Sentinel set"))
    }

    /// `CLIENT LIST` of the data node at `addr`, one line per connection.
    pub async fn client_list(&self, addr: &str) -> Vec<String> {
        match query_as(addr, self.password.as_deref(), &["CLIENT", "LIST"]).await {
            Ok(Resp::Bulk(Some(text))) => text.lines().map(str::to_owned).collect(),
            other => panic!("CLIENT LIST at {addr} failed: {other:?}"),
        }
    }

    fn node_mut(&mut self, addr: &str) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| format!("127.0.0.1:{}", n.port()) == addr)
            .unwrap_or_else(|| panic!("{addr} is no data node of this Sentinel set"))
    }

    /// The end of every sentinel's log, for failure messages.
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| {
                let log = std::fs::read_to_string(s.dir().join("sentinel.log")).unwrap_or_default();
                format!(
                    "--- sentinel {} ---\n{}",
                    s.addr(),
                    process::tail(&log, process::LOG_TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` at one sentinel, as `host:port`.
async fn master_by_sentinel(sentinel: &str) -> io::Result<String> {
    match query(sentinel, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE]).await? {
        Resp::Array(parts) => match (
            parts.first().and_then(Resp::text),
            parts.get(1).and_then(Resp::text),
        ) {
            (Some(host), Some(port)) => Ok(format!("{host}:{port}")),
            _ => Err(io::Error::other("malformed master address")),
        },
        other => Err(io::Error::other(format!("no master address: {other:?}"))),
    }
}

/// The first element of `ROLE` at `addr` (`master`, `slave`), `None` if it does not answer.
async fn role(addr: &str, password: Option<&str>) -> Option<String> {
    match query_as(addr, password, &["ROLE"]).await.ok()? {
        Resp::Array(parts) => parts.first().and_then(Resp::text),
        _ => None,
    }
}

/// Sends one command over a fresh TCP connection and reads the whole reply.
async fn query(addr: &str, args: &[&str]) -> io::Result<Resp> {
    query_as(addr, None, args).await
}

/// [`query`], after `AUTH password` when one is given.
async fn query_as(addr: &str, password: Option<&str>, args: &[&str]) -> io::Result<Resp> {
    let mut stream = process::connect(addr).await?;
    if let Some(password) = password {
        send(&mut stream, &["AUTH", password]).await?;
    }
    send(&mut stream, args).await
}
