//! [`RedisServer`]: a private `redis-server` for tests.
//!
//! Core depends on no Redis client, so this module speaks just enough of the Redis protocol
//! (RESP) over a raw TCP socket to see that the server is up (`PING`) and to send the odd
//! administrative command ([`RedisServer::command`]).

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// When set, [`RedisServer::start`] uses the Redis server at this URL instead of starting one
/// (for example `redis://127.0.0.1:6379` in a CI job that provides Redis as a service).
pub const URL_ENV: &str = "SIDECAST_TEST_REDIS_URL";

/// How long a freshly started `redis-server` may take to answer `PING`. It usually takes well
/// under 0.5 s; the margin is for loaded CI machines.
const STARTUP_DEADLINE: Duration = Duration::from_secs(15);

/// Bound on each step of a raw protocol exchange (connect, write, read).
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// How often readiness is polled while the server starts. There is no event to await: the
/// server is another process.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Ports tried before giving up when the free port found was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// A Redis server for one test: a private `redis-server` child process on a free loopback port,
/// or the external server named by [`URL_ENV`].
///
/// The private server runs with `--bind 127.0.0.1 --save '' --appendonly no`, its working
/// directory and log in a temporary directory, and is killed when this value is dropped.
///
/// ```no_run
/// # async fn example() {
/// use sidecast_core::testing::RedisServer;
///
/// let mut server = RedisServer::start_local().await;
/// let url = server.url().to_owned(); // redis://127.0.0.1:<port>
/// server.stop().await; // connections break, the port refuses connections
/// server.restart().await; // back on the same port, with an empty dataset
/// # }
/// ```
///
/// # Panics
///
/// Starting panics when `redis-server` is not installed (the message names the fix:
/// `apt-get install redis-server`, or set [`URL_ENV`]) or does not answer in time (the message
/// includes the end of its log).
#[derive(Debug)]
pub struct RedisServer {
    /// `host:port` of the server.
    addr: String,
    port: u16,
    url: String,
    /// The `--requirepass` password, used by [`RedisServer::command`].
    password: Option<String>,
    /// `None` for an external server.
    local: Option<LocalServer>,
}

#[derive(Debug)]
struct LocalServer {
    /// Extra command-line arguments, kept to start the server again identically.
    args: Vec<String>,
    /// `None` while stopped. Declared before `dir` so that the process dies before its directory
    /// is removed.
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// The server for a test: the one at [`URL_ENV`] if that is set, otherwise a private
    /// `redis-server` (see [`RedisServer::start_local`]).
    ///
    /// An external server cannot be stopped or restarted: tests that need that use
    /// [`RedisServer::start_local`].
    pub async fn start() -> Self {
        match std::env::var(URL_ENV) {
            Ok(url) if !url.trim().is_empty() => Self::external(url.trim()).await,
            _ => Self::start_local().await,
        }
    }

    /// A private `redis-server` on a free loopback port, whatever [`URL_ENV`] says.
    pub async fn start_local() -> Self {
        Self::start_local_with_args(std::iter::empty::<&str>()).await
    }

    /// A private `redis-server` with extra command-line arguments, for example
    /// `["--requirepass", "secret"]`. The port, bind address, persistence, directory and log file
    /// are set by this helper and must not be repeated.
    pub async fn start_local_with_args<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let password = args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let dir = tempfile::Builder::new()
            .prefix("sidecast-redis-")
            .tempdir()
            .unwrap_or_else(|e| {
                panic!("cannot create a temporary directory for redis-server: {e}")
            });

        // A free port is found by binding port 0 and releasing it. Another process may take it
        // before redis-server binds it; redis-server then exits and the next port is tried.
        let mut failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut child = spawn_redis(port, dir.path(), &args);
            match wait_until_ready(&addr, &mut child, dir.path()).await {
                Ok(()) => {
                    return Self {
                        addr,
                        port,
                        url: format!("redis://127.0.0.1:{port}"),
                        password,
                        local: Some(LocalServer {
                            args,
                            child: Some(child),
                            dir,
                        }),
                    };
                }
                Err(why) => {
                    // Already exited, or hung: make sure it is gone before trying again.
                    let _ = child.kill().await;
                    failure = why;
                }
            }
        }
        panic!("redis-server did not start after {PORT_ATTEMPTS} attempts: {failure}");
    }

    /// Uses an already running server, checking that it answers.
    async fn external(url: &str) -> Self {
        let (addr, port) = host_port(url)
            .unwrap_or_else(|| panic!("{URL_ENV}={url:?} is not a redis://host:port URL"));
        let password = url_password(url);
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            match ping(&addr).await {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => panic!(
                    "the Redis server at {URL_ENV}={} does not answer PING: {e}",
                    crate::broker::redact_url(url)
                ),
                Err(_) => sleep(POLL_INTERVAL).await,
            }
        }
        Self {
            addr,
            port,
            url: url.to_owned(),
            password,
            local: None,
        }
    }

    /// The URL to connect to, `redis://127.0.0.1:<port>` for a private server (no credentials:
    /// see [`RedisServer::url_with_credentials`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `redis://[user]:password@127.0.0.1:<port>`, for servers started with `--requirepass` or
    /// with ACL users.
    pub fn url_with_credentials(&self, user: Option<&str>, password: &str) -> String {
        format!(
            "redis://{}:{password}@{}",
            user.unwrap_or_default(),
            self.addr
        )
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is the external server of [`URL_ENV`] (which cannot be stopped or restarted).
    pub fn is_external(&self) -> bool {
        self.local.is_none()
    }

    /// Whether the server process is running (always `true` for an external server).
    pub fn is_running(&self) -> bool {
        self.local.as_ref().is_none_or(|l| l.child.is_some())
    }

    /// Kills the server (`SIGKILL`, like a crash: clients see their connections drop) and waits
    /// until the process is gone, so that its port refuses connections. Idempotent.
    ///
    /// Panics for an external server.
    pub async fn stop(&mut self) {
        let local = self.local_mut("stop");
        if let Some(mut child) = local.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server if it runs, then starts it again **on the same port** with the same
    /// arguments, and waits until it answers `PING`. The dataset starts empty (no persistence).
    ///
    /// Panics for an external server, or if the server cannot start again within the deadline.
    pub async fn restart(&mut self) {
        self.stop().await;
        let addr = self.addr.clone();
        let port = self.port;
        let local = self.local_mut("restart");
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            let mut child = spawn_redis(port, local.dir.path(), &local.args);
            match wait_until_ready(&addr, &mut child, local.dir.path()).await {
                Ok(()) => {
                    local.child = Some(child);
                    return;
                }
                // The port may linger for a moment after the kill; retry until the deadline.
                Err(why) if Instant::now() < deadline => {
                    let _ = child.kill().await;
                    tracing::debug!(%why, "redis-server restart failed, retrying");
                    sleep(POLL_INTERVAL * 10).await;
                }
                Err(why) => {
                    let _ = child.kill().await;
                    panic!("redis-server did not start again on port {port}: {why}");
                }
            }
        }
    }

    /// Sends one command over a fresh raw TCP connection (after `AUTH` when the server was started
    /// with `--requirepass`) and returns the first line of the reply, such as `+OK`, `:1` or
    /// `-ERR ...`. Enough for administrative commands like `ACL SETUSER`.
    pub async fn command(&self, args: &[&str]) -> io::Result<String> {
        let mut stream = connect(&self.addr).await?;
        if let Some(password) = &self.password {
            let reply = exchange(&mut stream, &["AUTH", password]).await?;
            if !reply.starts_with("+OK") {
                return Err(io::Error::other(format!("AUTH refused: {reply}")));
            }
        }
        exchange(&mut stream, args).await
    }

    fn local_mut(&mut self, what: &str) -> &mut LocalServer {
        match self.local.as_mut() {
            Some(local) => local,
            None => panic!(
                "cannot {what} the external Redis server of {URL_ENV}; tests that stop or \
                 restart Redis must use RedisServer::start_local()"
            ),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // kill_on_drop would do it too; being explicit documents that dropping stops the server.
        if let Some(child) = self.local.as_mut().and_then(|l| l.child.as_mut()) {
            let _ = child.start_kill();
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free loopback port: {e}"))
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("redis.log")
}

fn spawn_redis(port: u16, dir: &Path, args: &[String]) -> Child {
    let mut command = Command::new("redis-server");
    command
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(log_path(dir))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
            "redis-server is not installed (not found on PATH); install it with \
             `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), or \
             set {URL_ENV} to the URL of a running Redis server"
        ),
        Err(e) => panic!("cannot start redis-server: {e}"),
    }
}

/// Polls until the server answers `PING`, failing early when the process exits.
async fn wait_until_ready(addr: &str, child: &mut Child, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "redis-server exited with {status}; end of its log:\n{}",
                log_tail(dir)
            ));
        }
        let last_error = match ping(addr).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "redis-server on {addr} did not answer PING within {STARTUP_DEADLINE:?} \
                 ({last_error}); end of its log:\n{}",
                log_tail(dir)
            ));
        }
        sleep(POLL_INTERVAL).await;
    }
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(log_path(dir)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `PING` over raw TCP. A server started with `--requirepass` answers `-NOAUTH`, which also
/// proves it is up; `-LOADING` means it is not ready yet.
async fn ping(addr: &str) -> io::Result<()> {
    let mut stream = connect(addr).await?;
    let reply = exchange(&mut stream, &["PING"]).await?;
    if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "unexpected reply to PING: {reply}"
        )))
    }
}

async fn connect(addr: &str) -> io::Result<TcpStream> {
    timeout(IO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Writes one command as a RESP array of bulk strings and reads the first line of the reply.
async fn exchange(stream: &mut TcpStream, args: &[&str]) -> io::Result<String> {
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    timeout(IO_TIMEOUT, stream.write_all(&request))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))??;

    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    while !reply.windows(2).any(|w| w == b"\r\n") {
        let n = timeout(IO_TIMEOUT, stream.read(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a reply",
            ));
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&reply);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// `host:port` and the port of a `redis://` or `rediss://` URL (port 6379 when omitted, as in
/// every Redis client).
fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((host, port)) => {
            let port = port.parse().ok()?;
            (!host.is_empty()).then(|| (host_port.to_owned(), port))
        }
        None => Some((format!("{host_port}:6379"), 6379)),
    }
}

/// The password of a `redis://user:password@host` URL.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo
        .split_once(':')
        .map(|(_, p)| p.to_owned())
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_host_and_port() {
        assert_eq!(
            host_port("redis://127.0.0.1:7000"),
            Some(("127.0.0.1:7000".to_owned(), 7000))
        );
        assert_eq!(
            host_port("redis://u:p@localhost:7001/0"),
            Some(("localhost:7001".to_owned(), 7001))
        );
        assert_eq!(
            host_port("redis://localhost"),
            Some(("localhost:6379".to_owned(), 6379))
        );
        assert_eq!(host_port("redis://localhost:x"), None);
        assert_eq!(url_password("redis://u:p@h:1/0"), Some("p".to_owned()));
        assert_eq!(url_password("redis://h:1"), None);
    }
}
