//! A private RabbitMQ node as processes: its own `epmd` and the `rabbitmq-server` script in a
//! process group of their own, the watchdog that cleans up after a test process that died, the
//! node's configuration and temporary directory; starting, stopping, signalling and
//! administering (`rabbitmqctl`) it. The parent module says why it runs that way.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

use super::{STARTUP_DEADLINE, URL_ENV, amqp_handshake};
use crate::process::{self, connect};

/// Where Debian and Ubuntu install the real server scripts (not the `/usr/sbin` wrappers).
const DEBIAN_BIN_DIR: &str = "/usr/lib/rabbitmq/bin";

/// How long an orderly shutdown (`SIGTERM`) may take before the node is killed.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How long one `rabbitmqctl` call may take. Each call boots an Erlang VM (about a second).
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often readiness is polled while the server starts. There is no event to await: the
/// server is another process.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Ports tried before giving up when a free port found was taken by someone else meanwhile.
const PORT_ATTEMPTS: usize = 3;

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

/// How a node of a cluster differs from a lone private node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Membership {
    /// The port of an `epmd` the cluster shares (nodes find each other through it); `None`:
    /// the node starts its own.
    pub(crate) epmd_port: Option<u16>,
    /// The Erlang cookie every node of the cluster shares (written to the node's `HOME`).
    pub(crate) cookie: Option<String>,
    /// A part of the node's name that tells the cluster's nodes apart in logs.
    pub(crate) label: Option<String>,
}

/// A private `rabbitmq-server` node, running or stopped.
#[derive(Debug)]
pub(crate) struct LocalServer {
    node: String,
    epmd_port: u16,
    /// Whether `epmd_port` is an epmd of a cluster's, which this node neither starts nor stops.
    shared_epmd: bool,
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
    /// The private `epmd`, leader of the process group (its PID is the group id); `None` on a
    /// cluster's shared epmd, when the server script leads the group.
    epmd: Option<Child>,
    /// The `rabbitmq-server` script, in the same group; the Erlang VM is its child.
    server: Child,
    /// The cleanup watchdog (own process group), ended when the server is stopped normally.
    watchdog: Option<Child>,
}

impl Processes {
    fn group(&self) -> u32 {
        self.epmd.as_ref().map_or(self.server.id(), Child::id)
    }
}

impl LocalServer {
    /// Starts a private node on free loopback ports, with extra lines for its `rabbitmq.conf`,
    /// and returns it with its AMQP port once it accepts AMQP connections.
    pub(super) async fn start(config_lines: &[&str]) -> (Self, u16) {
        Self::start_member(config_lines, &Membership::default()).await
    }

    /// [`LocalServer::start`] for a node of a cluster: on the cluster's epmd, with its cookie.
    pub(crate) async fn start_member(config_lines: &[&str], member: &Membership) -> (Self, u16) {
        let bin_dir = find_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("sidecast-rabbitmq-")
            .tempdir()
            .unwrap_or_else(|e| {
                panic!("cannot create a temporary directory for rabbitmq-server: {e}")
            });
        write_config(dir.path(), config_lines);
        if let Some(cookie) = &member.cookie {
            write_cookie(dir.path(), cookie);
        }
        let mut dir = dir;
        let n = SERVERS_STARTED.fetch_add(1, Ordering::Relaxed);
        let label = member.label.as_deref().unwrap_or("");
        let node = format!(
            "sidecast-{}-{n}{label}-{}@localhost",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );

        // Free ports are found by binding port 0 and releasing them. Another process may take
        // one before RabbitMQ binds it; the node then fails to start and new ports are tried.
        let mut failure = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let [port, dist_port, own_epmd_port] = process::free_ports();
            let mut local = LocalServer {
                node: node.clone(),
                epmd_port: member.epmd_port.unwrap_or(own_epmd_port),
                shared_epmd: member.epmd_port.is_some(),
                dist_port,
                bin_dir: bin_dir.clone(),
                processes: None,
                dir,
            };
            let addr = format!("127.0.0.1:{port}");
            match local.run(port, &addr).await {
                Ok(()) => return (local, port),
                Err(why) => {
                    local.kill_processes();
                    failure = why;
                    dir = local.into_dir();
                }
            }
        }
        panic!("rabbitmq-server did not start after {PORT_ATTEMPTS} attempts: {failure}");
    }

    /// The Erlang node name (`sidecast-…@localhost`).
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// The temporary directory (data, logs, configuration).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the node runs.
    pub(crate) fn is_running(&self) -> bool {
        self.processes.is_some()
    }

    /// Stops the node in order (`SIGTERM`, `SIGKILL` after [`SHUTDOWN_DEADLINE`]) and waits
    /// until `addr` refuses connections. Idempotent.
    pub(crate) async fn stop(&mut self, addr: &str) {
        let Some(mut processes) = self.processes.take() else {
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
        wait_until_refused(addr).await;
    }

    /// Kills every process of the node and waits until `addr` refuses connections. Idempotent.
    pub(crate) async fn kill(&mut self, addr: &str) {
        self.kill_processes();
        wait_until_refused(addr).await;
    }

    /// Sends signal `name` to every process of the running node; `what` names the caller's
    /// action in the panic for a stopped node.
    pub(super) fn signal_running(&self, what: &str, name: &str) {
        let Some(processes) = self.processes.as_ref() else {
            panic!("cannot {what} a stopped rabbitmq-server");
        };
        signal(&format!("-{}", processes.group()), name);
    }

    /// Starts the stopped node again on AMQP port `port` (`addr`), with the same data.
    pub(crate) async fn restart(&mut self, port: u16, addr: &str) {
        if let Err(why) = self.run(port, addr).await {
            self.kill_processes();
            panic!("rabbitmq-server did not start again on port {port}: {why}");
        }
    }

    /// Runs `rabbitmqctl -n <node> <args>` against the node of AMQP port `port`.
    pub(crate) async fn ctl(&self, port: u16, args: &[&str]) -> Result<String, String> {
        self.tool("rabbitmqctl", port, args).await
    }

    /// Runs RabbitMQ's command-line tool `tool` (`rabbitmqctl`, `rabbitmq-streams`, ...) with
    /// `-n <node> <args>` against the node of AMQP port `port`.
    pub(crate) async fn tool(
        &self,
        tool: &str,
        port: u16,
        args: &[&str],
    ) -> Result<String, String> {
        let mut command = tokio::process::Command::new(self.bin_dir.join(tool));
        self.environment(command.as_std_mut(), port);
        command
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = match timeout(CTL_TIMEOUT, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(format!("cannot run {tool}: {e}")),
            Err(_) => {
                return Err(format!("{tool} {args:?} took more than {CTL_TIMEOUT:?}"));
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{tool} {args:?} failed with {}: {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

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
        let epmd = if self.shared_epmd {
            None
        } else {
            Some(start_epmd(self.epmd_port, &dir).await?)
        };
        // 0: the server leads a new group of its own (on a cluster's epmd).
        let group = epmd.as_ref().map_or(0, Child::id);
        let server = match self.spawn_server(port, group) {
            Ok(server) => server,
            Err(e) => {
                if let Some(epmd) = epmd {
                    reap(epmd);
                }
                return Err(e);
            }
        };
        let group = epmd.as_ref().map_or(server.id(), Child::id);
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

    /// Kills every process of the node, if it runs (`SIGKILL`: for `Drop`, which cannot wait,
    /// and for a node that failed to start).
    pub(crate) fn kill_processes(&mut self) {
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

/// Starts an epmd on `port` (see [`spawn_epmd`]) and waits until it listens: it must before a
/// node starts, or the node starts a daemonized epmd of its own, outside the process group (and
/// outlives every stop).
pub(crate) async fn start_epmd(port: u16, dir: &Path) -> Result<Child, String> {
    let mut epmd = spawn_epmd(port, dir)?;
    let epmd_addr = format!("127.0.0.1:{port}");
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
    Ok(epmd)
}

/// Writes the Erlang cookie where the node (and `rabbitmqctl`, with the same `HOME`) reads it,
/// readable by its owner only, as Erlang requires.
fn write_cookie(dir: &Path, cookie: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(".erlang.cookie");
    std::fs::write(&path, cookie)
        .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)))
        .unwrap_or_else(|e| panic!("cannot write the Erlang cookie for rabbitmq-server: {e}"));
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

pub(crate) fn spawn_watchdog(group: u32, dir: &Path) -> Option<Child> {
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
    if let Some(epmd) = processes.epmd.as_mut() {
        let _ = epmd.kill();
        let _ = epmd.wait();
    }
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
