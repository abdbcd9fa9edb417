//! [`RedisServer`]: a private `redis-server` for tests.
//!
//! Core depends on no Redis client, so this module speaks just enough of the Redis protocol
//! (RESP) over a raw TCP socket to see that the server is up (`PING`) and to send the odd
//! administrative command ([`RedisServer::command`]).

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::TcpStream;
use tokio::process::Command;

use crate::process::{self, ServerProcess, ServerProgram};
use crate::resp;

/// When set, [`RedisServer::start`] uses the Redis server at this URL instead of starting one
/// (for example `redis://127.0.0.1:6379` in a CI job that provides Redis as a service).
pub const URL_ENV: &str = "SIDECAST_TEST_REDIS_URL";

/// A Redis server for one test: a private `redis-server` child process on a free loopback port,
/// or the external server named by [`URL_ENV`].
///
/// The private server runs with `--bind 127.0.0.1 --save '' --appendonly no`, its working
/// directory and log in a temporary directory, and is killed when this value is dropped.
///
/// ```no_run
/// # async fn example() {
/// use sidecast_testkit::RedisServer;
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
    local: Option<ServerProcess<RedisProgram>>,
}

/// `redis-server` with extra command-line arguments, kept to start the server again identically.
#[derive(Debug)]
struct RedisProgram {
    args: Vec<String>,
}

impl RedisProgram {
    /// `redis-server` with `args` after the ones this helper sets.
    fn new<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The `--requirepass` password among the arguments.
    fn requirepass(&self) -> Option<String> {
        self.args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.args.get(i + 1))
            .cloned()
    }
}

impl ServerProgram for RedisProgram {
    fn name(&self) -> &str {
        "redis-server"
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        let mut command = Command::new("redis-server");
        command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(self.log_file(dir))
            .args(&self.args);
        command
    }

    fn log_file(&self, dir: &Path) -> PathBuf {
        dir.join("redis.log")
    }

    fn not_installed(&self) -> String {
        format!(
            "redis-server is not installed (not found on PATH); install it with \
             `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), or \
             set {URL_ENV} to the URL of a running Redis server"
        )
    }

    fn probe(&self, addr: &str) -> impl Future<Output = io::Result<()>> {
        ping(addr)
    }
}

impl RedisServer {
    /// The server for a test: the one at [`URL_ENV`] if that is set, otherwise a private
    /// `redis-server` (see [`RedisServer::start_local`]).
    ///
    /// An external server cannot be stopped or restarted: tests that need that use
    /// [`RedisServer::start_local`].
    pub async fn start() -> Self {
        match process::external_url(URL_ENV) {
            Some(url) => Self::external(&url).await,
            None => Self::start_local().await,
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
        let program = RedisProgram::new(args);
        let password = program.requirepass();
        Self::local(ServerProcess::start(program).await, password)
    }

    /// A private `redis-server` that is not running yet: its URL and port are known, connections
    /// to it are refused until [`RedisServer::restart`] starts it on that port. For tests of
    /// what starts before Redis does.
    pub fn reserve_local() -> Self {
        Self::reserve_local_with_args(std::iter::empty::<&str>())
    }

    /// [`RedisServer::reserve_local`] with extra command-line arguments, as in
    /// [`RedisServer::start_local_with_args`].
    pub fn reserve_local_with_args<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let program = RedisProgram::new(args);
        let password = program.requirepass();
        Self::local(ServerProcess::reserve(program), password)
    }

    /// A private server on `local`'s port, started or not, whose `--requirepass` is `password`.
    fn local(local: ServerProcess<RedisProgram>, password: Option<String>) -> Self {
        Self {
            addr: local.addr().to_owned(),
            port: local.port(),
            url: format!("redis://{}", local.addr()),
            password,
            local: Some(local),
        }
    }

    /// Uses an already running server, checking that it answers.
    async fn external(url: &str) -> Self {
        let (addr, port) = host_port(url)
            .unwrap_or_else(|| panic!("{URL_ENV}={url:?} is not a redis://host:port URL"));
        let password = url_password(url);
        process::await_external(
            "Redis server",
            URL_ENV,
            url,
            process::STARTUP_DEADLINE,
            || ping(&addr),
        )
        .await;
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
        self.local.as_ref().is_none_or(ServerProcess::is_running)
    }

    /// Kills the server (`SIGKILL`, like a crash: clients see their connections drop) and waits
    /// until the process is gone, so that its port refuses connections. Idempotent.
    ///
    /// Panics for an external server.
    pub async fn stop(&mut self) {
        self.local_mut("stop").stop().await;
    }

    /// Stops the server if it runs, then starts it again **on the same port** with the same
    /// arguments, and waits until it answers `PING`. The dataset starts empty (no persistence).
    /// A server of [`RedisServer::reserve_local`] starts here for the first time.
    ///
    /// Panics for an external server, or if the server cannot start again within the deadline.
    pub async fn restart(&mut self) {
        self.local_mut("restart").restart().await;
    }

    /// Sends one command over a fresh raw TCP connection (after `AUTH` when the server was started
    /// with `--requirepass`) and returns the first line of the reply, such as `+OK`, `:1` or
    /// `-ERR ...`. Enough for administrative commands like `ACL SETUSER`.
    pub async fn command(&self, args: &[&str]) -> io::Result<String> {
        self.commands(&[args]).await
    }

    /// Sends `commands` one after the other over one fresh raw TCP connection (after `AUTH` as in
    /// [`RedisServer::command`]) and returns the first line of the last reply. For commands that
    /// depend on the connection's own earlier ones, such as `WAIT` after a write.
    pub async fn commands(&self, commands: &[&[&str]]) -> io::Result<String> {
        let mut stream = process::connect(&self.addr).await?;
        if let Some(password) = &self.password {
            let reply = exchange(&mut stream, &["AUTH", password]).await?;
            if !reply.starts_with("+OK") {
                return Err(io::Error::other(format!("AUTH refused: {reply}")));
            }
        }
        let mut last = String::new();
        for args in commands {
            last = exchange(&mut stream, args).await?;
        }
        Ok(last)
    }

    /// A private `redis-server` that replicates this one (`--replicaof`, with `--masterauth`
    /// when this server has a password), returned once this server counts it as a connected
    /// replica (`WAIT 1` answers 1). Stop it with [`RedisServer::stop`] or freeze it with
    /// [`RedisServer::pause`] to take the replica away.
    ///
    /// Panics if the replica does not come up, or does not finish its first synchronisation
    /// within [`crate::conformance::DEADLINE`].
    pub async fn start_replica(&self) -> RedisServer {
        let (host, port) = self
            .addr
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("the address {} has no port", self.addr));
        let mut args = vec!["--replicaof".to_owned(), host.to_owned(), port.to_owned()];
        if let Some(password) = &self.password {
            args.extend(["--masterauth".to_owned(), password.clone()]);
        }
        let replica = Self::start_local_with_args(args).await;
        self.await_replicas(1).await;
        replica
    }

    /// Waits until this server has at least `count` replicas that acknowledged a write made now
    /// (a write, then `WAIT count 100` on the same connection, answers at least `count`), so that
    /// their first synchronisation is over; panics after [`crate::conformance::DEADLINE`].
    pub async fn await_replicas(&self, count: u32) {
        let deadline = tokio::time::Instant::now() + crate::conformance::DEADLINE;
        let count_arg = count.to_string();
        loop {
            // WAIT on a connection that wrote nothing counts the replicas merely connected, even
            // one still loading its first copy of the data, which may then take seconds to
            // acknowledge the next write.
            let reply = self
                .commands(&[
                    &["INCR", "sidecast-testkit:replication-probe"],
                    &["WAIT", &count_arg, "100"],
                ])
                .await;
            let acknowledged = reply
                .as_deref()
                .ok()
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|n| n.parse::<u32>().ok());
            if acknowledged.is_some_and(|n| n >= count) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not count {count} replicas within {:?} (last WAIT reply: {reply:?})",
                self.addr,
                crate::conformance::DEADLINE
            );
        }
    }

    /// Freezes the server process (`SIGSTOP`): it keeps its connections but answers nothing, as a
    /// server that hangs or a replica that stopped acknowledging. [`RedisServer::resume`] undoes
    /// it. Panics for an external server or one that is stopped.
    #[cfg(unix)]
    pub fn pause(&mut self) {
        self.signal("STOP");
    }

    /// Lets a [`RedisServer::pause`]d server run again (`SIGCONT`).
    #[cfg(unix)]
    pub fn resume(&mut self) {
        self.signal("CONT");
    }

    #[cfg(unix)]
    fn signal(&mut self, signal: &str) {
        let pid = self
            .local_mut("signal")
            .pid()
            .unwrap_or_else(|| panic!("cannot send SIG{signal} to a stopped Redis server"));
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{signal}: {e}"));
        assert!(status.success(), "kill -{signal} {pid} failed: {status}");
    }

    fn local_mut(&mut self, what: &str) -> &mut ServerProcess<RedisProgram> {
        match self.local.as_mut() {
            Some(local) => local,
            None => panic!(
                "cannot {what} the external Redis server of {URL_ENV}; tests that stop or \
                 restart Redis must use RedisServer::start_local()"
            ),
        }
    }
}

/// `PING` over raw TCP. A server started with `--requirepass` answers `-NOAUTH`, which also
/// proves it is up; `-LOADING` means it is not ready yet.
async fn ping(addr: &str) -> io::Result<()> {
    let mut stream = process::connect(addr).await?;
    let reply = exchange(&mut stream, &["PING"]).await?;
    if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "unexpected reply to PING: {reply}"
        )))
    }
}

/// Writes one command and reads its whole reply; returns the reply's first line (`+OK`, `:1`,
/// `-ERR ...`).
async fn exchange(stream: &mut TcpStream, args: &[&str]) -> io::Result<String> {
    Ok(resp::exchange(stream, args).await?.first_line())
}

/// `host:port` and the port of a `redis://` or `rediss://` URL (port 6379 when omitted, as in
/// every Redis client).
fn host_port(url: &str) -> Option<(String, u16)> {
    url.contains("://")
        .then(|| process::host_port(url, 6379))
        .flatten()
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
        let at = |host_port: &str, port| Some((host_port.to_owned(), port));
        assert_eq!(
            host_port("redis://127.0.0.1:7000"),
            at("127.0.0.1:7000", 7000)
        );
        assert_eq!(
            host_port("redis://u:p@localhost:7001/0"),
            at("localhost:7001", 7001)
        );
        assert_eq!(host_port("redis://localhost"), at("localhost:6379", 6379));
        assert_eq!(host_port("redis://localhost:x"), None);
        assert_eq!(url_password("redis://u:p@h:1/0"), Some("p".to_owned()));
        assert_eq!(url_password("redis://h:1"), None);
    }
}
