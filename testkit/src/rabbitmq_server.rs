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

// This file is the test's view of a server; `node` runs a private one's processes.
pub(crate) mod node;

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

use crate::process::{self, connect, within_io_timeout};
use node::LocalServer;

/// When set, [`RabbitMqServer::start`] and [`RabbitMqServer::shared`] use the RabbitMQ server at
/// this URL instead of starting one, for example `amqp://guest:guest@127.0.0.1:5672/%2f` in a CI
/// job that provides RabbitMQ as a service.
pub const URL_ENV: &str = "SIDECAST_TEST_AMQP_URL";

/// How long a freshly started node may take to accept AMQP connections. A cold start takes 3 to
/// 7 s on a quiet machine; CI machines compiling in parallel are much slower.
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// The AMQP 0-9-1 protocol header a client sends first; the server answers with a
/// `Connection.Start` method frame (frame type 1) once its listener is up.
const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

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
        let (local, port) = LocalServer::start(config_lines).await;
        Self {
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            addr: format!("127.0.0.1:{port}"),
            port,
            local: Some(local),
        }
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
        self.local.as_ref().map(LocalServer::node)
    }

    /// The temporary directory of a private server (data, logs, configuration).
    pub fn dir(&self) -> Option<&Path> {
        self.local.as_ref().map(LocalServer::dir)
    }

    /// Whether this is the external server of [`URL_ENV`] (which cannot be stopped, restarted
    /// or administered).
    pub fn is_external(&self) -> bool {
        self.local.is_none()
    }

    /// Whether the server runs (always `true` for an external server).
    pub fn is_running(&self) -> bool {
        self.local.as_ref().is_none_or(LocalServer::is_running)
    }

    /// Stops the server in order, as `systemctl stop rabbitmq-server` would: the node gets
    /// `SIGTERM`, closes every client connection with `CONNECTION_FORCED` and exits; it is killed
    /// if that takes longer than 30 s. Returns once every process of the server is gone and the
    /// port refuses connections. Idempotent.
    ///
    /// Panics for an external server.
    pub async fn stop(&mut self) {
        let addr = self.addr.clone();
        self.local_mut("stop").stop(&addr).await;
    }

    /// Kills the server (`SIGKILL` to all its processes, like a crash or a power cut: clients
    /// see their connections drop without a goodbye) and waits until its port refuses
    /// connections. Idempotent.
    ///
    /// Panics for an external server.
    pub async fn kill(&mut self) {
        let addr = self.addr.clone();
        self.local_mut("kill").kill(&addr).await;
    }

    /// Freezes the server (`SIGSTOP` to all its processes): connections stay open and the port
    /// accepts TCP connections (the kernel completes the handshake), but nothing answers, as
    /// with a hung VM or a network partition that drops packets. Clients only notice through
    /// time-outs and missed heartbeats. Undo with [`RabbitMqServer::resume`].
    ///
    /// Panics for an external server or a stopped one.
    pub fn pause(&mut self) {
        self.local_mut("pause").signal_running("pause", "STOP");
    }

    /// Lets a server frozen by [`RabbitMqServer::pause`] run again (`SIGCONT`).
    ///
    /// Panics for an external server or a stopped one.
    pub fn resume(&mut self) {
        self.local_mut("resume").signal_running("resume", "CONT");
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
        self.local_mut("restart").restart(port, &addr).await;
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
        local.ctl(self.port, args).await
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

/// The external URL from [`URL_ENV`], if set and not blank.
fn external_url() -> Option<String> {
    process::external_url(URL_ENV)
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
