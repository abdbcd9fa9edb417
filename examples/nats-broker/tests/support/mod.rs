//! Test support: a private `nats-server` per test ([`NatsServer`]) and a broker factory over it
//! ([`Nats`]).
//!
//! The server helper lives here, not in sidecast-core: core knows no NATS. It is modelled on
//! core's `testing::RedisServer`: a child process on a free loopback port, its log in a temporary
//! directory, killed on drop; or the external server named by `SIDECAST_TEST_NATS_URL`.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sidecast_core::testing::conformance::MakeBroker;
use sidecast_example_nats::{NatsBroker, NatsOptions};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// When set, [`NatsServer::start`] uses the NATS server at this URL instead of starting one (for
/// example `nats://127.0.0.1:4222` in a CI job that provides NATS as a service).
pub(crate) const URL_ENV: &str = "SIDECAST_TEST_NATS_URL";

/// How long a freshly started `nats-server` may take to greet a client. It usually takes a few
/// milliseconds; the margin is for loaded CI machines.
const STARTUP_DEADLINE: Duration = Duration::from_secs(15);

/// Bound on each step of the readiness probe (connect, read the greeting).
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// How often readiness is polled while the server starts: it is another process, there is no
/// event to await.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Ports tried before giving up when the free port found was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Where Debian puts the binary; `/usr/sbin` is not on every user's `PATH`.
const DEBIAN_BINARY: &str = "/usr/sbin/nats-server";

/// Options for a test server, with a short backoff so that reconnect tests do not wait long.
pub(crate) fn options(url: &str) -> NatsOptions {
    NatsOptions {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..NatsOptions::new(url)
    }
}

/// Makes a new `NatsBroker` (a new "node", with its own connection) on the server at each call.
pub(crate) struct Nats(pub(crate) NatsOptions);

impl Nats {
    pub(crate) fn on(server: &NatsServer) -> Self {
        Self(options(server.url()))
    }
}

impl MakeBroker for Nats {
    type Broker = NatsBroker;

    async fn make(&self) -> NatsBroker {
        NatsBroker::connect(self.0.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test NATS server: {e}"))
    }
}

/// A NATS server for one test: a private `nats-server -a 127.0.0.1 -p <free port>` child
/// process, or the external server named by [`URL_ENV`].
#[derive(Debug)]
pub(crate) struct NatsServer {
    /// `host:port`.
    addr: String,
    port: u16,
    url: String,
    /// `None` for an external server.
    local: Option<LocalServer>,
}

#[derive(Debug)]
struct LocalServer {
    /// `None` while stopped.
    child: Option<Child>,
    dir: TempDir,
}

impl NatsServer {
    /// The server for a test: the one at [`URL_ENV`] if that is set, otherwise a private one.
    pub(crate) async fn start() -> Self {
        match std::env::var(URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::external(url.trim()).await,
            _ => Self::start_local().await,
        }
    }

    /// A private `nats-server` on a free loopback port, whatever [`URL_ENV`] says (tests that
    /// stop and restart the server).
    pub(crate) async fn start_local() -> Self {
        let dir = TempDir::new();
        // A free port is found by binding port 0 and releasing it. Another process may take it
        // before nats-server binds it; nats-server then exits and the next port is tried.
        let mut failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut child = spawn(port, dir.path());
            match wait_until_ready(&addr, &mut child, dir.path()).await {
                Ok(()) => {
                    return Self {
                        addr,
                        port,
                        url: format!("nats://127.0.0.1:{port}"),
                        local: Some(LocalServer {
                            child: Some(child),
                            dir,
                        }),
                    };
                }
                Err(why) => {
                    let _ = child.kill().await;
                    failure = why;
                }
            }
        }
        panic!("nats-server did not start after {PORT_ATTEMPTS} attempts: {failure}");
    }

    async fn external(url: &str) -> Self {
        let addr = host_port(url)
            .unwrap_or_else(|| panic!("{URL_ENV}={url:?} is not a nats://host[:port] URL"));
        let port = addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(4222);
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            match greeting(&addr).await {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => panic!(
                    "the NATS server at {URL_ENV}={} does not greet clients: {e}",
                    sidecast_core::broker::redact_url(url)
                ),
                Err(_) => sleep(POLL_INTERVAL).await,
            }
        }
        Self {
            addr,
            port,
            url: url.to_owned(),
            local: None,
        }
    }

    /// The URL to connect to, `nats://127.0.0.1:<port>` for a private server.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (`SIGKILL`, like a crash: clients see their connections drop) and waits
    /// until the process is gone, so that its port refuses connections. Idempotent.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.local_mut("stop").child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server if it runs, then starts it again **on the same port**, and waits until it
    /// greets clients.
    pub(crate) async fn restart(&mut self) {
        self.stop().await;
        let addr = self.addr.clone();
        let port = self.port;
        let local = self.local_mut("restart");
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            let mut child = spawn(port, local.dir.path());
            match wait_until_ready(&addr, &mut child, local.dir.path()).await {
                Ok(()) => {
                    local.child = Some(child);
                    return;
                }
                // The port may linger for a moment after the kill; retry until the deadline.
                Err(why) if Instant::now() < deadline => {
                    let _ = child.kill().await;
                    eprintln!("nats-server restart failed, retrying: {why}");
                    sleep(POLL_INTERVAL * 10).await;
                }
                Err(why) => {
                    let _ = child.kill().await;
                    panic!("nats-server did not start again on port {port}: {why}");
                }
            }
        }
    }

    fn local_mut(&mut self, what: &str) -> &mut LocalServer {
        match self.local.as_mut() {
            Some(local) => local,
            None => panic!(
                "cannot {what} the external NATS server of {URL_ENV}; tests that stop or restart \
                 NATS must use NatsServer::start_local()"
            ),
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.local.as_mut().and_then(|l| l.child.as_mut()) {
            let _ = child.start_kill();
        }
    }
}

/// The `nats-server` binary: on `PATH`, or where Debian installs it.
fn binary() -> &'static str {
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("nats-server").is_file())
    });
    if on_path {
        "nats-server"
    } else {
        DEBIAN_BINARY
    }
}

fn spawn(port: u16, dir: &Path) -> Child {
    let mut command = Command::new(binary());
    command
        .args(["-a", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-l")
        .arg(log_path(dir))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
            "nats-server is not installed (neither on PATH nor at {DEBIAN_BINARY}); install it \
             with `apt-get install nats-server` (Debian/Ubuntu) or `brew install nats-server` \
             (macOS), or set {URL_ENV} to the URL of a running NATS server"
        ),
        Err(e) => panic!("cannot start nats-server: {e}"),
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("nats-server.log")
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(log_path(dir)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Polls until the server greets a client, failing early when the process exits.
async fn wait_until_ready(addr: &str, child: &mut Child, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "nats-server exited with {status}; end of its log:\n{}",
                log_tail(dir)
            ));
        }
        let last_error = match greeting(addr).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "nats-server on {addr} did not greet a client within {STARTUP_DEADLINE:?} \
                 ({last_error}); end of its log:\n{}",
                log_tail(dir)
            ));
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Connects over raw TCP and reads the server's first line: a NATS server greets every client
/// with `INFO {...}`, which proves it is up and is NATS (not whatever else took the port).
async fn greeting(addr: &str) -> io::Result<()> {
    let mut stream = timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut buf = [0u8; 4];
    timeout(IO_TIMEOUT, stream.read_exact(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no greeting"))??;
    if &buf == b"INFO" {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "unexpected greeting {:?}, not a NATS server",
            String::from_utf8_lossy(&buf)
        )))
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

/// `host:port` of a `nats://` or `tls://` URL (port 4222 when omitted).
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        None
    } else if host_port.contains(':') {
        Some(host_port.to_owned())
    } else {
        Some(format!("{host_port}:4222"))
    }
}

/// A directory removed on drop (the server's log), without a dependency for it.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sidecast-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for nats-server: {e}"));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
