//! Test servers as child processes: free loopback ports, waiting until a server answers, the end
//! of its log for failure messages, external servers named by an environment variable, and
//! [`ServerProcess`], one server process that can be stopped and restarted on its port.
//!
//! [`crate::RedisServer`] is built on [`ServerProcess`]; [`crate::RabbitMqServer`], which runs a
//! group of processes, on the free functions. A transport of your own writes its server helper
//! the same way: implement [`ServerProgram`] for the server (how to start it, how to see that it
//! answers) and wrap a [`ServerProcess`] of it, as the NATS example's `NatsServer` does
//! (`examples/nats-broker/tests/support/mod.rs`).

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// How long a freshly started server may take to answer. Redis and NATS usually take well under
/// 0.5 s; the margin is for loaded CI machines.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(15);

/// Bound on each step of a raw protocol exchange (connect, write, read).
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// How often readiness is polled while a server starts. There is no event to await: the server
/// is another process.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Ports tried before giving up when the free port found was taken by someone else meanwhile.
pub const PORT_ATTEMPTS: usize = 5;

/// Lines of a server's log shown when it fails to start.
pub const LOG_TAIL_LINES: usize = 20;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct loopback ports nobody listens on right now, and none handed out before in this
/// process.
///
/// A port found by binding port 0 is free only until someone binds it, and the kernel readily
/// hands the same port to the next bind of port 0 once it is released. Two tests starting servers
/// at once could then get the same port: one server fails to bind and exits, but the probe of its
/// test may already have reached the other test's server, which that test later stops. So ports
/// are never reused within a test process.
pub fn free_ports<const N: usize>() -> [u16; N] {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    // Listeners stay bound until the end, so that each bind yields another port.
    let mut listeners = Vec::new();
    let mut ports = Vec::with_capacity(N);
    while ports.len() < N {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"));
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"));
        if handed_out.insert(port) {
            ports.push(port);
        }
        listeners.push(listener);
    }
    std::array::from_fn(|i| ports[i])
}

/// The URL in the environment variable `env`, if it is set and not blank: tests then use that
/// server instead of starting one (a CI job that provides the service, for example).
pub fn external_url(env: &str) -> Option<String> {
    std::env::var(env)
        .ok()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// `host:port` and the port of a `scheme://[user[:password]@]host[:port][/path][?query]` URL (the
/// scheme is optional), with `default_port` when the URL names none.
pub fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return None;
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => {
            let port = port.parse().ok()?;
            (!host.is_empty()).then(|| (host_port.to_owned(), port))
        }
        None => Some((format!("{host_port}:{default_port}"), default_port)),
    }
}

/// A TCP connection to `addr`, within [`IO_TIMEOUT`].
pub async fn connect(addr: &str) -> io::Result<TcpStream> {
    timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

/// `future` within [`IO_TIMEOUT`]; a time-out is an [`io::ErrorKind::TimedOut`] error saying
/// `what` did not happen.
pub async fn within_io_timeout<T>(
    what: &str,
    future: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    timeout(IO_TIMEOUT, future)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, what.to_owned()))?
}

/// A loopback server that accepts TCP connections and never says a word, as a hung server or a
/// black-holing proxy would, for the connect time-outs of clients. It stops when dropped.
#[derive(Debug)]
pub struct SilentServer {
    port: u16,
    accepting: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    /// Listens on a free loopback port; needs a Tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on a loopback port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"))
            .port();
        let accepting = tokio::spawn(async move {
            // Held, not dropped: a closed connection would be an answer.
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { port, accepting }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `probe` until it succeeds, for at most `deadline`, failing early when `exited` reports
/// that the server's process ended. The error says what happened and ends with `log()`, the end
/// of the server's log.
pub async fn wait_until_ready<Probe, Fut>(
    name: &str,
    addr: &str,
    deadline: Duration,
    mut exited: impl FnMut() -> Option<ExitStatus>,
    mut probe: Probe,
    log: impl Fn() -> String,
) -> Result<(), String>
where
    Probe: FnMut() -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        if let Some(status) = exited() {
            return Err(format!(
                "{name} exited with {status}; end of its log:\n{}",
                log()
            ));
        }
        let last_error = match probe().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= give_up {
            return Err(format!(
                "{name} on {addr} did not answer within {deadline:?} ({last_error}); end of its \
                 log:\n{}",
                log()
            ));
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Waits until the external server at `url` (named by the environment variable `env`) passes
/// `probe`, for at most `deadline`. Panics naming the server (`what`, such as "Redis server")
/// if it does not; the URL in the message has its password redacted.
pub async fn await_external<Probe, Fut>(
    what: &str,
    env: &str,
    url: &str,
    deadline: Duration,
    mut probe: Probe,
) where
    Probe: FnMut() -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    let give_up = Instant::now() + deadline;
    loop {
        match probe().await {
            Ok(()) => return,
            Err(e) if Instant::now() >= give_up => panic!(
                "the {what} at {env}={} does not answer: {e}",
                sidecast_core::broker::redact_url(url)
            ),
            Err(_) => sleep(POLL_INTERVAL).await,
        }
    }
}

/// A server program that [`ServerProcess`] runs: how to start it on a port, where it logs, and
/// how to see that it answers.
pub trait ServerProgram {
    /// The program's name in messages, such as `redis-server`.
    fn name(&self) -> &str;

    /// The command that starts the server on `127.0.0.1:<port>`, with its files in `dir`. The
    /// server runs in the foreground and writes its log to [`ServerProgram::log_file`].
    fn command(&self, port: u16, dir: &Path) -> Command;

    /// Where the server writes its log in `dir`, shown when it fails to start.
    fn log_file(&self, dir: &Path) -> PathBuf;

    /// The panic message when the program is not installed: what to install, or which
    /// environment variable names an external server instead.
    fn not_installed(&self) -> String;

    /// Succeeds once the server at `addr` answers its protocol (which also proves that it is
    /// this server and not whatever else took the port).
    fn probe(&self, addr: &str) -> impl Future<Output = io::Result<()>>;
}

/// One private server process on a free loopback port, with its files in a temporary
/// directory. It can be stopped (`SIGKILL`, like a crash) and restarted on the same port, and it
/// is killed when this value is dropped.
#[derive(Debug)]
pub struct ServerProcess<P: ServerProgram> {
    program: P,
    /// `127.0.0.1:<port>`.
    addr: String,
    port: u16,
    /// `None` while stopped. Declared before `dir` so that the process dies before its directory
    /// is removed.
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl<P: ServerProgram> ServerProcess<P> {
    /// Starts `program` on a free loopback port and waits until it answers.
    ///
    /// Panics if the program is not installed ([`ServerProgram::not_installed`]) or does not
    /// start after [`PORT_ATTEMPTS`] ports (the message includes the end of its log).
    pub async fn start(program: P) -> Self {
        let name = program.name().to_owned();
        let dir = tempfile::Builder::new()
            .prefix(&format!("sidecast-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for {name}: {e}"));

        // A free port is found by binding port 0 and releasing it. Another process may take it
        // before the server binds it; the server then exits and the next port is tried.
        let mut failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut child = spawn(&program, port, dir.path());
            match ready(&program, &addr, &mut child, dir.path()).await {
                Ok(()) => {
                    return Self {
                        program,
                        addr,
                        port,
                        child: Some(child),
                        dir,
                    };
                }
                Err(why) => {
                    // Already exited, or hung: make sure it is gone before trying again.
                    let _ = child.kill().await;
                    failure = why;
                }
            }
        }
        panic!("{name} did not start after {PORT_ATTEMPTS} attempts: {failure}");
    }

    /// Prepares `program` on a free loopback port without starting it: its port refuses
    /// connections until [`ServerProcess::restart`] starts it there. For tests of a client that
    /// starts before its server.
    ///
    /// Another process may take the port meanwhile (as with any free port); `restart` then
    /// panics after [`STARTUP_DEADLINE`] with the server's log.
    pub fn reserve(program: P) -> Self {
        let name = program.name().to_owned();
        let dir = tempfile::Builder::new()
            .prefix(&format!("sidecast-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for {name}: {e}"));
        let port = free_port();
        Self {
            program,
            addr: format!("127.0.0.1:{port}"),
            port,
            child: None,
            dir,
        }
    }

    /// The program this process runs.
    pub fn program(&self) -> &P {
        &self.program
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temporary directory (its data and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id of the running server, `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Kills the server (`SIGKILL`, like a crash: clients see their connections drop) and waits
    /// until the process is gone, so that its port refuses connections. Idempotent.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server if it runs, then starts it again **on the same port**, and waits until
    /// it answers. Panics if it cannot start again within [`STARTUP_DEADLINE`].
    pub async fn restart(&mut self) {
        self.stop().await;
        let name = self.program.name().to_owned();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            let mut child = spawn(&self.program, self.port, self.dir.path());
            match ready(&self.program, &self.addr, &mut child, self.dir.path()).await {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                // The port may linger for a moment after the kill; retry until the deadline.
                Err(why) if Instant::now() < deadline => {
                    let _ = child.kill().await;
                    tracing::debug!(%why, "{name} restart failed, retrying");
                    sleep(POLL_INTERVAL * 10).await;
                }
                Err(why) => {
                    let _ = child.kill().await;
                    panic!("{name} did not start again on port {}: {why}", self.port);
                }
            }
        }
    }
}

impl<P: ServerProgram> Drop for ServerProcess<P> {
    fn drop(&mut self) {
        // kill_on_drop would do it too; being explicit documents that dropping stops the server.
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Starts one run of the server, its output discarded (it logs to its log file).
fn spawn<P: ServerProgram>(program: &P, port: u16, dir: &Path) -> Child {
    let mut command = program.command(port, dir);
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!("{}", program.not_installed()),
        Err(e) => panic!("cannot start {}: {e}", program.name()),
    }
}

/// Waits until one run of the server answers, failing early when it exits.
async fn ready<P: ServerProgram>(
    program: &P,
    addr: &str,
    child: &mut Child,
    dir: &Path,
) -> Result<(), String> {
    let log_file = program.log_file(dir);
    wait_until_ready(
        program.name(),
        addr,
        STARTUP_DEADLINE,
        || child.try_wait().ok().flatten(),
        || program.probe(addr),
        || {
            tail(
                &std::fs::read_to_string(&log_file).unwrap_or_default(),
                LOG_TAIL_LINES,
            )
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_host_and_port() {
        let cases = [
            ("redis://127.0.0.1:7000", Some(("127.0.0.1:7000", 7000))),
            (
                "redis://u:p@localhost:7001/0",
                Some(("localhost:7001", 7001)),
            ),
            ("redis://localhost", Some(("localhost:6379", 6379))),
            ("nats.example", Some(("nats.example:6379", 6379))),
            ("redis://localhost:x", None),
            ("redis://", None),
        ];
        for (url, expected) in cases {
            let expected = expected.map(|(host_port, port)| (host_port.to_owned(), port));
            assert_eq!(host_port(url, 6379), expected, "{url}");
        }
    }

    #[test]
    fn tails_text() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn free_ports_differ() {
        let [a, b, c] = free_ports();
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn a_port_is_handed_out_once_per_process() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
