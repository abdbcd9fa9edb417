//! `[server]`: the HTTP and Socket.IO server.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default Socket.IO client script: the public CDN build of socket.io 4.x.
pub const DEFAULT_CLIENT_JS_URL: &str = "https://cdn.socket.io/4.8.1/socket.io.min.js";

/// `[server]`: the HTTP and Socket.IO server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// The path the Socket.IO server answers on (the client's `path` option).
    pub socketio_path: String,
    /// The Socket.IO namespaces served (`io("/chat")` on the client). Each connect is authorized
    /// for its namespace; events and room operations name theirs. Clients of any other namespace
    /// get Socket.IO's `Invalid namespace` error.
    pub namespaces: Vec<String>,
    /// Origins, besides the server's own, whose browsers may open sockets and publish
    /// (`"https://app.example.com"`). Empty: same origin only.
    pub allowed_origins: Vec<String>,
    /// URL the page loads the official Socket.IO client from.
    pub client_js_url: String,
    /// A local copy of the Socket.IO client script; when set, the server serves it itself and the
    /// page loads it from there instead of `client_js_url`.
    pub client_js: Option<PathBuf>,
    /// Largest accepted `POST /api/` and `POST /api/rooms` body, in bytes.
    pub max_body_bytes: usize,
    /// Largest Socket.IO packet a client may send, in bytes.
    pub max_socket_payload_bytes: u64,
    /// `POST /api/` requests each principal may make per second; 0 turns the limit off.
    pub api_rate_limit: u32,
    /// Requests a principal may make at once above the rate before being limited.
    pub api_rate_burst: u32,
    /// Engine.IO ping interval (socket.io's `pingInterval`), in milliseconds. A client that does not
    /// answer a ping within `ping_timeout_ms` is disconnected, and so is one whose queue is too full
    /// to take the ping.
    pub ping_interval_ms: u64,
    /// Engine.IO ping timeout (socket.io's `pingTimeout`), in milliseconds.
    pub ping_timeout_ms: u64,
    /// Packets each socket may have waiting to be sent; beyond that the socket is a slow client.
    pub socket_buffer: usize,
    /// What happens to a slow client: `"drop"` (the events it cannot take are dropped and counted;
    /// it stays connected) or `"disconnect"` (it is disconnected and its client reconnects).
    pub slow_client: SlowClientPolicy,
    /// How long a graceful shutdown may take before remaining connections are cut, in
    /// milliseconds.
    pub shutdown_timeout_ms: u64,
    /// At shutdown the node closes its sockets after a random delay of up to this many
    /// milliseconds, so that the clients of nodes restarted together do not all reconnect at the
    /// same instant.
    pub shutdown_jitter_ms: u64,
}

/// What happens to a socket whose queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlowClientPolicy {
    /// Drop the events it cannot take (counted); keep the socket.
    #[default]
    Drop,
    /// Disconnect it; its client reconnects and starts afresh.
    Disconnect,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 5000)),
            socketio_path: "/ws/socket.io".to_owned(),
            namespaces: vec!["/".to_owned()],
            allowed_origins: Vec::new(),
            client_js_url: DEFAULT_CLIENT_JS_URL.to_owned(),
            client_js: None,
            // As Node's socket.io (`maxHttpBufferSize`, 1e6): a 64 KiB message must go through.
            max_body_bytes: 1024 * 1024,
            max_socket_payload_bytes: 100_000,
            api_rate_limit: 100,
            api_rate_burst: 200,
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            socket_buffer: 1_024,
            slow_client: SlowClientPolicy::Drop,
            shutdown_timeout_ms: 10_000,
            shutdown_jitter_ms: 1_000,
        }
    }
}
