//! The bench's first phase: check the URL, the server and the credentials, and build what the
//! clients and the publisher need, before any client starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use figment::Figment;
use reqwest::Url;
use sidecast_core::config::BrokerKind;
use sidecast_core::{Config, Emitter};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};

use super::client::ClientSetup;
use super::procfs;
use super::publish::{self, EventSource};
use super::source::{self, Choice};
use super::{BenchArgs, PublishVia};

/// What the clients connect with and what publishes, checked.
pub(crate) struct Prepared {
    /// Where and how every client connects.
    pub(crate) setup: Arc<ClientSetup>,
    /// `None` with `--publish none`.
    pub(crate) publisher: Option<Arc<EventSource>>,
    /// How the source addresses in `setup` were chosen.
    pub(crate) sources: Choice,
}

/// Resolves the server, plans the source addresses, checks `--server-pid` and the open-files
/// limit, logs in (or checks that the server is reachable), and builds the publisher.
pub(crate) async fn prepare(args: &BenchArgs, figment: &Figment) -> anyhow::Result<Prepared> {
    let base = parse_base_url(&args.url)?;
    let (socketio_uri, addr) = socketio_target(&base, &args.path).await?;
    let sources = source::plan(args.source_addresses.as_deref(), addr, args.clients)?;
    if let Some(note) = &sources.note {
        eprintln!("{note}");
    }
    source::check_bindable(&sources.addresses)?;
    if let Some(pid) = args.server_pid
        && !procfs::exists(pid)
    {
        bail!(
            "no process with id {pid} can be read in /proc (--server-pid); is the server running on this machine?"
        );
    }
    if let Some(limit) = procfs::open_files_limit()
        && limit < args.clients as u64 + 64
    {
        eprintln!(
            "warning: this process may open {limit} files, fewer than --clients {} needs; raise the limit first (ulimit -n 65536)",
            args.clients
        );
    }

    // Credentials, and a reachable server, before any client starts.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")?;
    let cookie = match &args.login_url {
        Some(login) => {
            let login_url = join_url(&base, login)?;
            Some(publish::login(&http, &login_url).await?)
        }
        None => {
            check_reachable(addr, &args.url).await?;
            None
        }
    };
    let publisher = match args.publish {
        PublishVia::Http => Some(Arc::new(EventSource::http(
            join_url(&base, "/api/")?,
            &args.event,
            cookie.as_deref(),
            args.token.as_deref(),
            args.max_in_flight,
        )?)),
        PublishVia::Broker => Some(Arc::new(broker_publisher(figment, &args.event).await?)),
        PublishVia::None => None,
    };

    let setup = Arc::new(ClientSetup {
        addr,
        uri: socketio_uri,
        cookie: cookie
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .context("the login cookie is not a valid header value")?,
        connect_packet: connect_packet(args.token.as_deref(), false),
        offset_connect_packet: connect_packet(args.token.as_deref(), true),
        recovery_percent: args.recovery_clients,
        event_prefix: event_prefix(&args.event),
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
        sources: sources.addresses,
        source_ports: sources.ports,
    });
    Ok(Prepared {
        setup,
        publisher,
        sources: sources.choice,
    })
}

/// A TCP connect to the server, so that a wrong `--url` fails here rather than in every client.
async fn check_reachable(addr: SocketAddr, url: &str) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("cannot connect to {addr} ({url}): timed out; is the server running, and is --url right?"))?
        .map_err(|e| anyhow::anyhow!("cannot connect to {addr} ({url}): {e}; is the server running, and is --url right?"))?;
    Ok(())
}

/// `http://host:port[/prefix]`, checked.
fn parse_base_url(url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).with_context(|| {
        format!(
            "--url {url:?} is not a URL; give the server's base URL, e.g. http://127.0.0.1:5000"
        )
    })?;
    match parsed.scheme() {
        "http" | "ws" => {}
        "https" | "wss" => bail!(
            "--url {url}: TLS is not supported by sidecast bench; point it at the plain-HTTP address of a node (e.g. behind the proxy), which also keeps TLS cost out of the measurement"
        ),
        other => bail!("--url {url}: unsupported scheme {other:?}; use http://host:port"),
    }
    if parsed.host_str().is_none() {
        bail!("--url {url} has no host");
    }
    Ok(parsed)
}

/// A path on the base URL (`/login`), or an absolute URL.
fn join_url(base: &Url, path_or_url: &str) -> anyhow::Result<Url> {
    if path_or_url.starts_with('/') {
        let mut url = base.clone();
        let prefix = base.path().trim_end_matches('/');
        let (path, query) = match path_or_url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_or_url, None),
        };
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(query);
        if url.scheme() == "ws" {
            // Only http(s) and ws(s) reach here; the HTTP client wants http.
            let text = url.as_str().replacen("ws://", "http://", 1);
            return Url::parse(&text).context("invalid URL");
        }
        Ok(url)
    } else {
        Url::parse(path_or_url)
            .with_context(|| format!("{path_or_url:?} is neither a path (/login) nor a URL"))
    }
}

/// The websocket URI of the Socket.IO endpoint, and the resolved address.
async fn socketio_target(base: &Url, path: &str) -> anyhow::Result<(Uri, SocketAddr)> {
    let host = base.host_str().unwrap_or("127.0.0.1");
    let port = base.port_or_known_default().unwrap_or(80);
    if !path.starts_with('/') {
        bail!("--path {path:?} must start with /, e.g. /ws/socket.io");
    }
    let prefix = base.path().trim_end_matches('/');
    let path = path.trim_end_matches('/');
    let text = format!("ws://{host}:{port}{prefix}{path}/?EIO=4&transport=websocket");
    let uri: Uri = text
        .parse()
        .with_context(|| format!("{text} is not a valid websocket URL; check --url and --path"))?;
    let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    Ok((uri, addr))
}

/// `40`, or `40{"token":"..."}`; with `offset`, the auth payload also has `"offset":""` (the
/// client asks for recovery, as `/sidecast-recovery.js` does on a first connect).
fn connect_packet(token: Option<&str>, offset: bool) -> Utf8Bytes {
    let mut auth = serde_json::Map::new();
    if let Some(token) = token {
        auth.insert("token".to_owned(), token.into());
    }
    if offset {
        auth.insert("offset".to_owned(), "".into());
    }
    if auth.is_empty() {
        Utf8Bytes::from_static("40")
    } else {
        format!("40{}", serde_json::Value::Object(auth)).into()
    }
}

/// `42["<event>"`: how the counted events start on the wire.
fn event_prefix(event: &str) -> Vec<u8> {
    let quoted = serde_json::Value::String(event.to_owned()).to_string();
    format!("42[{quoted}").into_bytes()
}

/// Publishes Sidecast's native envelopes through the broker of the configuration.
async fn broker_publisher(figment: &Figment, event: &str) -> anyhow::Result<EventSource> {
    let config = Config::from_figment(figment)?;
    if config.broker.kind == BrokerKind::Memory {
        bail!(
            "--publish broker: broker.kind is \"memory\", whose events stay inside one process; \
             give the server's broker (SIDECAST_BROKER__KIND=redis SIDECAST_BROKER__URL=...), or \
             use --publish http"
        );
    }
    let broker = sidecast_web::connect_broker(&config).await?;
    let emitter = Emitter::new(broker.clone(), config.broker.channel.clone())
        .with_origin("sidecast-bench")
        .with_history(config.recovery.enabled);
    Ok(EventSource::Broker {
        emitter,
        broker,
        event: event.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let base = parse_base_url("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            join_url(&base, "/login").unwrap().as_str(),
            "http://127.0.0.1:5000/login"
        );
        assert_eq!(
            join_url(&base, "/api/").unwrap().as_str(),
            "http://127.0.0.1:5000/api/"
        );
        let prefixed = parse_base_url("http://h:1/app/").unwrap();
        assert_eq!(
            join_url(&prefixed, "/login?x=1").unwrap().as_str(),
            "http://h:1/app/login?x=1"
        );
        assert!(
            parse_base_url("https://h")
                .unwrap_err()
                .to_string()
                .contains("TLS")
        );
        assert!(parse_base_url("nope").is_err());
        let ws = parse_base_url("ws://h:2").unwrap();
        assert_eq!(join_url(&ws, "/api/").unwrap().as_str(), "http://h:2/api/");
    }

    #[test]
    fn packets() {
        assert_eq!(connect_packet(None, false).as_str(), "40");
        assert_eq!(connect_packet(None, true).as_str(), r#"40{"offset":""}"#);
        assert_eq!(
            connect_packet(Some("t"), true).as_str(),
            r#"40{"offset":"","token":"t"}"#
        );
        assert_eq!(
            connect_packet(Some("a\"b"), false).as_str(),
            r#"40{"token":"a\"b"}"#
        );
        assert_eq!(event_prefix("message"), br#"42["message""#.to_vec());
    }
}
