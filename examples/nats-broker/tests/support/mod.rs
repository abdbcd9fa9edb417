//! Test support: a private `nats-server` per test ([`NatsServer`]) and a broker factory over it
//! ([`Nats`]).
//!
//! The server helper lives here, not in sidecast-testkit: the kit knows no NATS. It is what a
//! third-party transport writes, on the kit's process helper: a [`ServerProgram`] that says how to
//! start `nats-server` and how to see that it answers, wrapped in a [`ServerProcess`] (a child
//! process on a free loopback port, its log in a temporary directory, killed on drop); or the
//! external server named by `SIDECAST_TEST_NATS_URL`.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sidecast_example_nats::{NatsBroker, NatsOptions};
use sidecast_testkit::conformance::{Connect, MakeBroker};
use sidecast_testkit::process::{self, ServerProcess, ServerProgram, within_io_timeout};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// When set, [`NatsServer::start`] uses the NATS server at this URL instead of starting one (for
/// example `nats://127.0.0.1:4222` in a CI job that provides NATS as a service).
pub(crate) const URL_ENV: &str = "SIDECAST_TEST_NATS_URL";

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

/// Makes a new `NatsBroker` (a new "node", with its own connection) on `server` at each call.
pub(crate) fn nats_on(server: &NatsServer) -> impl MakeBroker<Broker = NatsBroker> + use<> {
    Connect::new(options(server.url()), NatsBroker::connect)
}

/// A NATS server for one test: a private `nats-server -a 127.0.0.1 -p <free port>` child
/// process, or the external server named by [`URL_ENV`].
#[derive(Debug)]
pub(crate) struct NatsServer {
    port: u16,
    url: String,
    /// `None` for an external server.
    local: Option<ServerProcess<NatsProgram>>,
}

impl NatsServer {
    /// The server for a test: the one at [`URL_ENV`] if that is set, otherwise a private one.
    pub(crate) async fn start() -> Self {
        let Some(url) = process::external_url(URL_ENV) else {
            return Self::start_local().await;
        };
        let (addr, port) = process::host_port(&url, 4222)
            .unwrap_or_else(|| panic!("{URL_ENV}={url:?} is not a nats://host[:port] URL"));
        process::await_external(
            "NATS server",
            URL_ENV,
            &url,
            process::STARTUP_DEADLINE,
            || greeting(&addr),
        )
        .await;
        Self {
            port,
            url,
            local: None,
        }
    }

    /// A private `nats-server` on a free loopback port, whatever [`URL_ENV`] says (tests that
    /// stop and restart the server).
    pub(crate) async fn start_local() -> Self {
        let local = ServerProcess::start(NatsProgram).await;
        Self {
            port: local.port(),
            url: format!("nats://{}", local.addr()),
            local: Some(local),
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
    /// until the process is gone. Idempotent.
    pub(crate) async fn stop(&mut self) {
        self.local_mut("stop").stop().await;
    }

    /// Stops the server if it runs, then starts it again **on the same port**, and waits until it
    /// greets clients.
    pub(crate) async fn restart(&mut self) {
        self.local_mut("restart").restart().await;
    }

    fn local_mut(&mut self, what: &str) -> &mut ServerProcess<NatsProgram> {
        match self.local.as_mut() {
            Some(local) => local,
            None => panic!(
                "cannot {what} the external NATS server of {URL_ENV}; tests that stop or restart \
                 NATS must use NatsServer::start_local()"
            ),
        }
    }
}

/// `nats-server` for [`ServerProcess`].
#[derive(Debug)]
pub(crate) struct NatsProgram;

impl ServerProgram for NatsProgram {
    fn name(&self) -> &str {
        "nats-server"
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        // On `PATH`, or where Debian installs it.
        let on_path = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("nats-server").is_file())
        });
        let mut command = Command::new(if on_path {
            "nats-server"
        } else {
            DEBIAN_BINARY
        });
        command
            .args(["-a", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-l")
            .arg(self.log_file(dir));
        command
    }

    fn log_file(&self, dir: &Path) -> PathBuf {
        dir.join("nats-server.log")
    }

    fn not_installed(&self) -> String {
        format!(
            "nats-server is not installed (neither on PATH nor at {DEBIAN_BINARY}); install it \
             with `apt-get install nats-server` (Debian/Ubuntu) or `brew install nats-server` \
             (macOS), or set {URL_ENV} to the URL of a running NATS server"
        )
    }

    fn probe(&self, addr: &str) -> impl Future<Output = io::Result<()>> {
        greeting(addr)
    }
}

/// Connects over raw TCP and reads the server's first line: a NATS server greets every client
/// with `INFO {...}`, which proves it is up and is NATS (not whatever else took the port).
async fn greeting(addr: &str) -> io::Result<()> {
    let mut stream = process::connect(addr).await?;
    let mut buf = [0u8; 4];
    within_io_timeout("no greeting", stream.read_exact(&mut buf)).await?;
    if &buf == b"INFO" {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "unexpected greeting {:?}, not a NATS server",
            String::from_utf8_lossy(&buf)
        )))
    }
}
