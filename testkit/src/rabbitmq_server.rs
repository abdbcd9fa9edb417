//! [`RabbitMqServer`]: a private `rabbitmq-server` for tests.
//!
//! RabbitMQ takes seconds to boot, so a test process starts it once and shares it
//! ([`RabbitMqServer::shared`]); only tests that stop or restart RabbitMQ start their own
//! ([`RabbitMqServer::start_local`]).
//!
//! # How a private server runs
//!
//! Every port is private and on loopback: the AMQP port, the Erlang distribution port and the
//! port of a private `epmd` (the Erlang port mapper, which would otherwise be shared with any
//! other Erlang node on the machine). All state (Mnesia database, logs, the Erlang cookie in
//! `HOME`, the configuration) lives in a temporary directory, and the node has a unique name,
//! so several servers can run side by side and nothing of the machine's own RabbitMQ is used.
//!
//! `/usr/lib/rabbitmq/bin/rabbitmq-server` is called directly (as root, Debian's
//! `/usr/sbin/rabbitmq-server` wrapper switches to the `rabbitmq` user, which cannot read the
//! temporary directory, and the node dies silently), in the foreground, as a child of the test
//! process. `epmd` and the server share one process group of their own, so that stopping the
//! server ends every process it started.
//!
//! # Cleanup when the test process exits
//!
//! A test binary exits without dropping statics, so the shared server cannot rely on `Drop`;
//! a test killed by a time-out or Ctrl-C does not drop anything either. Every private server is
//! therefore watched by a small `sh` process: it polls the test process' PID and, once the test
//! process is gone, stops the server's process group (`SIGTERM`, then `SIGKILL` after a grace
//! period) and deletes the temporary directory. The watchdog lives in its own process group, so
//! the Ctrl-C that ends the tests does not end it before it has cleaned up.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;
use tokio::time::{Instant, sleep, timeout};

use crate::process::{self, connect, within_io_timeout};

/// When set, [`RabbitMqServer::start`] and [`RabbitMqServer::shared`] use the RabbitMQ server at
/// this URL instead of starting one, for example `amqp://guest:guest@127.0.0.1:5672/%2f` in a CI
/// job that provides RabbitMQ as a service.
pub const URL_ENV: &str = "SIDECAST_TEST_AMQP_URL";

/// Where Debian and Ubuntu install the real server scripts (not the `/usr/sbin` wrappers).
const DEBIAN_BIN_DIR: &str = "/usr/lib/rabbitmq/bin";

/// How long a freshly started node may take to accept AMQP connections. A cold start takes 3 to
/// 7 s on a quiet machine; CI machines compiling in parallel are much slower.
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// How long an orderly shutdown (`SIGTERM`) may take before the node is killed.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How long one `rabbitmqctl` call may take. Each call boots an Erlang VM (about a second).
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often readiness is polled while the server starts. There is no event to await: the
/// server is another process.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Ports tried before giving up when a free port found was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// The AMQP 0-9-1 protocol header a client sends first; the server answers with a
/// `Connection.Start` method frame (frame type 1) once its listener is up.
const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

/// Watches the test process and cleans up after it. Arguments: test PID, server process group,
/// temporary directory. Polling is the only portable way for a shell to wait for a process that
/// is not its child.
const WATCHDOG: &str = r#"
while kill -s 0 "$1" 2>/dev/null; do sleep 0.5; done
kill -s TERM -- "-$2" 2>/dev/null
i=0
while [ "$i" -lt 40 ] && kill -s 0 -- "-$2" 2>/dev/null; do sleep 0.25; i=$((i+1)); done
kill -s KILL -- "-$2" 2>/dev/null
rm -rf "$3"
"#;

/// Distinguishes the servers one test process starts.
static SERVERS_STARTED: AtomicU32 = AtomicU32::new(0);

/// The server of [`RabbitMqServer::shared`].
static SHARED: OnceCell<RabbitMqServer> = OnceCell::const_new();

/// The server of [`RabbitMqServer::shared_local`] when [`URL_ENV`] is set.
static SHARED_LOCAL: OnceCell<RabbitMqServer> = OnceCell::const_new();

/// A RabbitMQ server for tests: a private `rabbitmq-server` on free loopback ports, or the
/// external server named by [`URL_ENV`].
///
/// ```no_run
/// # async fn example() {
/// use sidecast_testkit::RabbitMqServer;
///
/// // Most tests: one server per test process, started by the first test that asks.
/// let shared = RabbitMqServer::shared().await;
/// let url = shared.url(); // amqp://guest:guest@127.0.0.1:<port>/%2f
///
/// // Tests that stop or restart RabbitMQ: their own server.
/// let mut server = RabbitMqServer::start_local().await;
/// server.stop().await; // orderly shutdown: clients get CONNECTION_FORCED
/// server.restart().await; // back on the same ports, same data directory
/// # let _ = url;
/// # }
/// ```
///
/// # Panics
///
/// Starting panics when RabbitMQ is not installed (the message names the fix:
/// `apt-get install rabbitmq-server`, or set [`URL_ENV`]) or does not accept connections in time
/// (the message includes the end of its log).
#[derive(Debug)]
pub struct RabbitMqServer {
    url: String,
    /// `host:port` of the AMQP listener.
    addr: String,
    port: u16,
    /// `None` for an external server.
    local: Option<LocalServer>,
}

#[derive(Debug)]
struct LocalServer {
    node: String,
    epmd_port: u16,
    dist_port: u16,
    /// Where the `rabbitmq-server` and `rabbitmqctl` scripts are.
    bin_dir: PathBuf,
    /// The running processes; `None` while stopped.
    processes: Option<Processes>,
    /// Declared last so that the processes are gone before the directory is removed.
    dir: tempfile::TempDir,
}

/// The processes of one run of the server.
#[derive(Debug)]
struct Processes {
    /// The private `epmd`, leader of the process group (its PID is the group id).
    epmd: Child,
    /// The `rabbitmq-server` script, in the same group; the Erlang VM is its child.
    server: Child,
    /// The cleanup watchdog (own process group), ended when the server is stopped normally.
    watchdog: Option<Child>,
}

impl Processes {
    fn group(&self) -> u32 {
        self.epmd.id()
    }
}

impl RabbitMqServer {
    /// The server for a test: the one at [`URL_ENV`] if that is set, otherwise a new private
    /// `rabbitmq-server` (see [`RabbitMqServer::start_local`]). Prefer
    /// [`RabbitMqServer::shared`]: starting RabbitMQ takes seconds.
    pub async fn start() -> Self {
        match external_url() {
            Some(url) => Self::external(&url).await,
            None => Self::start_local().await,
        }
    }

    /// The server shared by every test of this process: the one at [`URL_ENV`] if that is set,
    /// otherwise a private `rabbitmq-server` started by the first caller.
    ///
    /// It cannot be stopped or restarted (tests that do that use
    /// [`RabbitMqServer::start_local`]), and it is stopped when the test process exits (see
    /// the module documentation). Tests sharing it use unique names
    /// ([`crate::unique_channel`]) so that they do not see each other's messages.
    pub async fn shared() -> &'static Self {
        SHARED.get_or_init(Self::start).await
    }

    /// Like [`RabbitMqServer::shared`], but always a private server, for tests that administer
    /// it with [`RabbitMqServer::ctl`] (virtual hosts, users). It is the same server as
    /// `shared()` when [`URL_ENV`] is not set.
    pub async fn shared_local() -> &'static Self {
        if external_url().is_none() {
            return Self::shared().await;
        }
        SHARED_LOCAL.get_or_init(Self::start_local).await
    }

    /// A private `rabbitmq-server` on free loopback ports, whatever [`URL_ENV`] says.
    pub async fn start_local() -> Self {
        Self::start_local_with_config(&[]).await
    }

    /// A private `rabbitmq-server` with extra lines for its `rabbitmq.conf`, for example a TLS
    /// listener (`listeners.ssl.default = 127.0.0.1:<port>` and `ssl_options.*`). The AMQP port,
    /// node name and directories are set by this helper and must not be repeated.
    pub async fn start_local_with_config(config_lines: &[&str]) -> Self {
        let bin_dir = find_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("sidecast-rabbitmq-")
            .tempdir()
            .unwrap_or_else(|e| {
                panic!("cannot create a temporary directory for rabbitmq-server: {e}")
            });
        write_config(dir.path(), config_lines);
        let mut dir = dir;
        let n = SERVERS_STARTED.fetch_add(1, Ordering::Relaxed);
        let node = format!(
            "sidecast-{}-{n}-{}@localhost",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );

        // Free ports are found by binding port 0 and releasing them. Another process may take
        // one before RabbitMQ binds it; the node then fails to start and new ports are tried.
        let mut failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let [port, dist_port, epmd_port] = process::free_ports();
            let mut local = LocalServer {
                node: node.clone(),
                epmd_port,
                dist_port,
                bin_dir: bin_dir.clone(),
                processes: None,
                dir,
            };
            let addr = format!("127.0.0.1:{port}");
            match local.run(port, &addr).await {
                Ok(()) => {
                    return Self {
                        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
                        addr,
                        port,
                        local: Some(local),
                    };
                }
                Err(why) => {
                    local.kill_processes();
                    failure = why;
                    dir = local.into_dir();
                }
            }
        }
        panic!("rabbitmq-server did not start after {PORT_ATTEMPTS} attempts: {failure}");
    }

    /// Uses an already running server, checking that it accepts TCP connections.
    async fn external(url: &str) -> Self {
        let (addr, port) = host_port(url).unwrap_or_else(|| {
            panic!(
                "{URL_ENV}={} is not an amqp://[user:password@]host[:port][/vhost] URL",
                sidecast_core::broker::redact_url(url)
            )
        });
        let tls = url.starts_with("amqps://");
        process::await_external(
            "RabbitMQ server",
            URL_ENV,
            url,
            STARTUP_DEADLINE,
            || async {
                // The AMQP handshake cannot be checked in plain TCP on a TLS port.
                if tls {
                    connect(&addr).await.map(drop)
                } else {
                    amqp_handshake(&addr).await
                }
            },
        )
        .await;
        Self {
            url: url.to_owned(),
            addr,
            port,
            local: None,
        }
    }

    /// The URL to connect to as the `guest` user on the default virtual host `/`:
    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` for a private server.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `amqp://user:password@127.0.0.1:<port>/<vhost>`, with each part percent-encoded, for users
    /// and virtual hosts created with [`RabbitMqServer::ctl`].
    pub fn url_with(&self, user: &str, password: &str, vhost: &str) -> String {
        format!(
            "amqp://{}:{}@{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.addr,
            percent_encode(vhost)
        )
    }

    /// The AMQP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Erlang node name of a private server (`sidecast-…@localhost`), for `rabbitmqctl -n`.
    pub fn node_name(&self) -> Option<&str> {
        self.local.as_ref().map(|l| l.node.as_str())
    }

    /// The temporary directory of a private server (data, logs, configuration).
    pub fn dir(&self) -> Option<&Path> {
        self.local.as_ref().map(|l| l.dir.path())
    }

    /// Whether this is the external server of [`URL_ENV`] (which cannot be stopped, restarted
    /// or administered).
    pub fn is_external(&self) -> bool {
        self.local.is_none()
    }

    /// Whether the server runs (always `true` for an external server).
    pub fn is_running(&self) -> bool {
        self.local.as_ref().is_none_or(|l| l.processes.is_some())
    }

    /// Stops the server in order, as `systemctl stop rabbitmq-server` would: the node gets
    /// `SIGTERM`, closes every client connection with `CONNECTION_FORCED` and exits; it is killed
    /// if that takes longer than 30 s. Returns once every process of the server is gone and the
    /// port refuses connections. Idempotent.
    ///
    /// Panics for an external server.
    pub async fn stop(&mut self) {
        let addr = self.addr.clone();
        let local = self.local_mut("stop");
        let Some(mut processes) = local.processes.take() else {
            return;
        };
        // A paused server would not act on SIGTERM until continued.
        signal(&format!("-{}", processes.group()), "CONT");
        signal(&processes.server.id().to_string(), "TERM");
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        while matches!(processes.server.try_wait(), Ok(None)) && Instant::now() < deadline {
            sleep(POLL_INTERVAL).await;
        }
        end_processes(&mut processes);
        wait_until_refused(&addr).await;
    }

    /// Kills the server (`SIGKILL` to all its processes, like a crash or a power cut: clients
    /// see their connections drop without a goodbye) and waits until its port refuses
    /// connections. Idempotent.
    ///
    /// Panics for an external server.
    pub async fn kill(&mut self) {
        let addr = self.addr.clone();
        let local = self.local_mut("kill");
        if let Some(mut processes) = local.processes.take() {
            end_processes(&mut processes);
        }
        wait_until_refused(&addr).await;
    }

    /// Freezes the server (`SIGSTOP` to all its processes): connections stay open and the port
    /// accepts TCP connections (the kernel completes the handshake), but nothing answers, as
    /// with a hung VM or a network partition that drops packets. Clients only notice through
    /// time-outs and missed heartbeats. Undo with [`RabbitMqServer::resume`].
    ///
    /// Panics for an external server or a stopped one.
    pub fn pause(&mut self) {
        self.signal_running("pause", "STOP");
    }

    /// Lets a server frozen by [`RabbitMqServer::pause`] run again (`SIGCONT`).
    ///
    /// Panics for an external server or a stopped one.
    pub fn resume(&mut self) {
        self.signal_running("resume", "CONT");
    }

    fn signal_running(&mut self, what: &str, name: &str) {
        let local = self.local_mut(what);
        let Some(processes) = local.processes.as_ref() else {
            panic!("cannot {what} a stopped rabbitmq-server");
        };
        signal(&format!("-{}", processes.group()), name);
    }

    /// Stops the server in order if it runs ([`RabbitMqServer::stop`]), then starts it again
    /// **on the same ports and with the same data** (users, virtual hosts and durable
    /// exchanges survive, as in a real restart), and waits until it accepts AMQP connections.
    ///
    /// Panics for an external server, or if the server does not start again in time.
    pub async fn restart(&mut self) {
        self.stop().await;
        let addr = self.addr.clone();
        let port = self.port;
        let local = self.local_mut("restart");
        if let Err(why) = local.run(port, &addr).await {
            local.kill_processes();
            panic!("rabbitmq-server did not start again on port {port}: {why}");
        }
    }

    /// Runs `rabbitmqctl -n <node> <args>` against this private server and returns its
    /// standard output, or an error with its output when it fails. For example
    /// `["add_vhost", "v"]`, `["add_user", "u", "pw"]`,
    /// `["set_permissions", "-p", "v", "u", ".*", ".*", ".*"]`. Each call takes about a second
    /// (it boots an Erlang VM).
    ///
    /// Panics for an external server.
    pub async fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let Some(local) = self.local.as_ref() else {
            panic!(
                "cannot run rabbitmqctl against the external RabbitMQ server of {URL_ENV}; \
                 tests that administer RabbitMQ use RabbitMqServer::shared_local() or \
                 RabbitMqServer::start_local()"
            );
        };
        let mut command = tokio::process::Command::new(local.bin_dir.join("rabbitmqctl"));
        local.environment(command.as_std_mut(), self.port);
        command
            .arg("-n")
            .arg(&local.node)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = match timeout(CTL_TIMEOUT, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(format!("cannot run rabbitmqctl: {e}")),
            Err(_) => {
                return Err(format!(
                    "rabbitmqctl {args:?} took more than {CTL_TIMEOUT:?}"
                ));
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "rabbitmqctl {args:?} failed with {}: {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn local_mut(&mut self, what: &str) -> &mut LocalServer {
        match self.local.as_mut() {
            Some(local) => local,
            None => panic!(
                "cannot {what} the external RabbitMQ server of {URL_ENV}; tests that stop or \
                 restart RabbitMQ must use RabbitMqServer::start_local()"
            ),
        }
    }
}

impl Drop for RabbitMqServer {
    fn drop(&mut self) {
        // SIGKILL rather than an orderly stop: Drop cannot wait seconds, and the data of a test
        // server is thrown away with its directory anyway.
        if let Some(local) = self.local.as_mut() {
            local.kill_processes();
        }
    }
}

impl LocalServer {
    /// Sets the environment that makes `rabbitmq-server` and `rabbitmqctl` use this server's
    /// private ports, directories and node, and nothing of the machine's own RabbitMQ.
    fn environment(&self, command: &mut Command, port: u16) {
        let dir = self.dir.path();
        command
            .env("HOME", dir)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_PID_FILE", dir.join("rabbitmq.pid"))
            // Keep the distribution port on loopback too (it listens on all interfaces
            // otherwise).
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            // Under systemd the script would run differently (no signal forwarding).
            .env_remove("NOTIFY_SOCKET");
    }

    /// Starts epmd, the server and the watchdog, and waits until the server accepts AMQP
    /// connections on `addr`.
    async fn run(&mut self, port: u16, addr: &str) -> Result<(), String> {
        let dir = self.dir.path().to_owned();
        let mut epmd = spawn_epmd(self.epmd_port, &dir)?;
        let group = epmd.id();
        // epmd must listen before the node starts, or the node starts a daemonized epmd of its
        // own, outside the process group (and outlives every stop).
        let epmd_addr = format!("127.0.0.1:{}", self.epmd_port);
        let deadline = Instant::now() + STARTUP_DEADLINE;
        while connect(&epmd_addr).await.is_err() {
            if Instant::now() >= deadline || !matches!(epmd.try_wait(), Ok(None)) {
                reap(epmd);
                return Err(format!(
                    "epmd did not listen on {epmd_addr}; its output:\n{}",
                    std::fs::read_to_string(dir.join("epmd.log")).unwrap_or_default()
                ));
            }
            sleep(POLL_INTERVAL / 5).await;
        }

        let server = match self.spawn_server(port, group) {
            Ok(server) => server,
            Err(e) => {
                reap(epmd);
                return Err(e);
            }
        };
        let mut processes = Processes {
            epmd,
            server,
            watchdog: spawn_watchdog(group, &dir),
        };
        let ready = process::wait_until_ready(
            "rabbitmq-server",
            addr,
            STARTUP_DEADLINE,
            || processes.server.try_wait().ok().flatten(),
            || amqp_handshake(addr),
            || log_tail(&dir),
        )
        .await;
        // Kept also on failure: the caller ends them.
        self.processes = Some(processes);
        ready
    }

    /// Starts the `rabbitmq-server` script in the foreground, in process group `group`.
    fn spawn_server(&self, port: u16, group: u32) -> Result<Child, String> {
        let dir = self.dir.path();
        let script = self.bin_dir.join("rabbitmq-server");
        let open_output = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("stdout.log"))
                .map_err(|e| format!("cannot create the server's output file: {e}"))
        };
        let mut command = Command::new(&script);
        self.environment(&mut command, port);
        command
            .stdin(Stdio::null())
            .stdout(open_output()?)
            .stderr(open_output()?)
            .process_group(i32::try_from(group).map_err(|e| format!("process group: {e}"))?);
        command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", script.display()))
    }

    fn kill_processes(&mut self) {
        if let Some(mut processes) = self.processes.take() {
            end_processes(&mut processes);
        }
    }

    fn into_dir(mut self) -> tempfile::TempDir {
        self.kill_processes();
        // Moving the directory out is fine: nothing runs in it any more.
        let LocalServer { dir, .. } = self;
        dir
    }
}

/// The external URL from [`URL_ENV`], if set and not blank.
fn external_url() -> Option<String> {
    process::external_url(URL_ENV)
}

/// The directory with the `rabbitmq-server` and `rabbitmqctl` scripts, or a panic that says how
/// to install RabbitMQ.
fn find_bin_dir() -> PathBuf {
    let debian = Path::new(DEBIAN_BIN_DIR);
    if debian.join("rabbitmq-server").is_file() {
        return debian.to_owned();
    }
    // Other systems (Homebrew, generic Unix tarball): the scripts on PATH are the real ones.
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("rabbitmq-server").is_file() && dir.join("rabbitmqctl").is_file())
    });
    match on_path {
        Some(dir) => dir,
        None => panic!(
            "rabbitmq-server is not installed ({DEBIAN_BIN_DIR}/rabbitmq-server not found, and \
             none on PATH); install it with `apt-get install -y rabbitmq-server` \
             (Debian/Ubuntu) or `brew install rabbitmq` (macOS), or set {URL_ENV} to the URL \
             of a running RabbitMQ server"
        ),
    }
}

/// The node's `rabbitmq.conf` plus empty files for everything else the scripts would otherwise
/// read from `/etc/rabbitmq`.
fn write_config(dir: &Path, extra: &[&str]) {
    let mut config = String::from(
        "# Written by sidecast_testkit::RabbitMqServer.\n\
         # Test machines often have little free disk: the default 50 MB alarm would block\n\
         # publishers and look like a broker bug.\n\
         disk_free_limit.absolute = 1MB\n\
         log.console = false\n\
         log.file.level = info\n",
    );
    for line in extra {
        config.push_str(line);
        config.push('\n');
    }
    let files = [
        ("rabbitmq.conf", config.as_str()),
        ("enabled_plugins", "[].\n"),
        ("rabbitmq-env.conf", ""),
    ];
    for (name, content) in files {
        std::fs::write(dir.join(name), content)
            .unwrap_or_else(|e| panic!("cannot write {name} for rabbitmq-server: {e}"));
    }
}

fn spawn_epmd(port: u16, dir: &Path) -> Result<Child, String> {
    let output = std::fs::File::create(dir.join("epmd.log"))
        .map_err(|e| format!("cannot create epmd's output file: {e}"))?;
    Command::new("epmd")
        .args(["-port", &port.to_string()])
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(output)
        // A new process group led by epmd: the server joins it, and the group is signalled as
        // a whole. It also keeps the terminal's Ctrl-C away from it (the watchdog handles that).
        .process_group(0)
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!(
                "epmd is not installed (it comes with Erlang, a dependency of rabbitmq-server); \
                 install RabbitMQ with `apt-get install -y rabbitmq-server`, or set {URL_ENV}"
            ),
            _ => format!("cannot start epmd: {e}"),
        })
}

fn spawn_watchdog(group: u32, dir: &Path) -> Option<Child> {
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sidecast-rabbitmq-watchdog")
        .arg(std::process::id().to_string())
        .arg(group.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(child) => Some(child),
        Err(e) => {
            // The server works without it; only the cleanup after a killed test is lost.
            tracing::warn!("cannot start the rabbitmq-server watchdog: {e}");
            None
        }
    }
}

/// Sends a signal with `kill(1)` (the workspace forbids `unsafe`, hence no `libc::kill`).
/// `target` is a PID, or `-<group>` for a whole process group.
fn signal(target: &str, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills every process of the server's group and the watchdog, and reaps our children.
fn end_processes(processes: &mut Processes) {
    signal(&format!("-{}", processes.group()), "KILL");
    if let Some(mut watchdog) = processes.watchdog.take() {
        let _ = watchdog.kill();
        let _ = watchdog.wait();
    }
    let _ = processes.server.kill();
    let _ = processes.server.wait();
    let _ = processes.epmd.kill();
    let _ = processes.epmd.wait();
}

fn reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits (bounded) until nothing accepts connections on `addr` any more.
async fn wait_until_refused(addr: &str) {
    let deadline = Instant::now() + SHUTDOWN_DEADLINE;
    while connect(addr).await.is_ok() {
        if Instant::now() >= deadline {
            panic!("rabbitmq-server still accepts connections on {addr} after it was stopped");
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// The end of the server's console output and of its log file, for failure messages.
fn log_tail(dir: &Path) -> String {
    let mut text = std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(dir.join("log")) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
    }
    process::tail(&text, 30)
}

/// Sends the AMQP protocol header and checks that the answer is a method frame
/// (`Connection.Start`): the node's AMQP listener is up, which it opens last while booting.
async fn amqp_handshake(addr: &str) -> io::Result<()> {
    let mut stream = connect(addr).await?;
    within_io_timeout("write timed out", stream.write_all(PROTOCOL_HEADER)).await?;
    let mut first = [0u8; 1];
    let n = within_io_timeout("no answer", stream.read(&mut first)).await?;
    match (n, first[0]) {
        (1, 1) => Ok(()),
        (0, _) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before an answer",
        )),
        (_, byte) => Err(io::Error::other(format!(
            "unexpected answer to the AMQP header (first byte {byte})"
        ))),
    }
}

/// `host:port` and the port of an `amqp://` or `amqps://` URL. Without a port, the scheme's
/// IANA port applies, as in every AMQP client.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, _) = url.split_once("://")?;
    let default_port = match scheme {
        "amqp" => 5672,
        "amqps" => 5671,
        _ => return None,
    };
    process::host_port(url, default_port)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for URL user info and
/// path segments.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_host_and_port() {
        for (url, expected) in [
            (
                "amqp://u:p@127.0.0.1:7000/%2f",
                Some(("127.0.0.1:7000", 7000)),
            ),
            (
                "amqps://rabbit.example?heartbeat=5",
                Some(("rabbit.example:5671", 5671)),
            ),
            ("redis://h:1", None),
            ("amqp://h:x", None),
        ] {
            let expected = expected.map(|(host_port, port)| (host_port.to_owned(), port));
            assert_eq!(host_port(url), expected, "{url}");
        }
    }

    #[test]
    fn percent_encodes_url_parts() {
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("a b@c:d"), "a%20b%40c%3Ad");
        assert_eq!(percent_encode("plain-1.2_3~"), "plain-1.2_3~");
    }
}
