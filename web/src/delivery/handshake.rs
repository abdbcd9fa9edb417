//! Per-connection memory and latency tuning of the Socket.IO transport.
//!
//! Each connected socket keeps its handshake request's parts (headers, URI, extensions) for its
//! whole life. hyper parses headers as slices of the connection's read buffer, so keeping one
//! header value alive keeps the whole buffer (8–16 KiB) alive: half of what an idle connection
//! costs. [`compact`] copies the parts Socket.IO keeps into their own small allocations first,
//! and [`prepare`] resolves the session's user before the session would be kept too.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use sidecast_core::ConnectHeaders;
use tower_sessions::Session;

use crate::identity::session::session_user;

/// Bytes the websocket transport reads from a socket at a time.
///
/// Clients send pongs (a 7-byte frame) and, rarely, small packets: Sidecast's clients publish
/// over HTTP. A larger message still arrives whole (the buffer grows to the frame's length, up
/// to `server.max_socket_payload_bytes`), it only takes more reads. The buffer is allocated per
/// socket for its whole life: 1 KiB cost 0.8 KiB more per idle connection than 256 bytes
/// (docs/performance.md), engineioxide's default of 4 KiB would be a fifth of one.
pub(crate) const WS_READ_BUFFER_BYTES: usize = 256;

/// The logged-in user of the session a Socket.IO handshake came with, resolved when the
/// handshake arrived. The connect middleware reads it instead of the session.
#[derive(Debug, Clone)]
pub(crate) struct HandshakeUser(pub(crate) Box<str>);

/// What [`prepare`] needs: where Socket.IO is served and which headers its sockets keep.
#[derive(Debug)]
pub(crate) struct Handshakes {
    /// `server.socketio_path`.
    pub(crate) socketio_path: Box<str>,
    /// The headers the node's auth policy reads on connect.
    pub(crate) headers: ConnectHeaders,
}

/// Middleware in front of the Socket.IO layer: requests under `socketio_path` lose their
/// [`Session`]; a handshake (a request without an Engine.IO `sid`), which the socket keeps, gets
/// its headers and URI [`compact`]ed and the session's user as a [`HandshakeUser`] instead.
///
/// Socket.IO keeps a handshake's extensions as long as the socket lives, and a session that has
/// been read holds its whole record and a handle on its store (about 1,000 bytes with the
/// cookie store, measured): the user name is all a connect needs. A client that connects to a second namespace
/// later on the same connection gets the user of the handshake, as it did with the session
/// (which kept the record it loaded first).
pub(crate) async fn prepare(
    State(handshakes): State<Arc<Handshakes>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !is_socketio_path(request.uri().path(), &handshakes.socketio_path) {
        return next.run(request).await;
    }
    let session = request.extensions_mut().remove::<Session>();
    // Later requests of a session (polling, the upgrade to websocket) are not kept: they keep
    // their headers (a polling POST's Content-Type says how to decode it), and reading the
    // session for each would cost a store lookup per poll.
    if !is_handshake(request.uri()) {
        return next.run(request).await;
    }
    let mut request = compact(request, &handshakes.headers);
    if let Some(user) = session_user(session.as_ref()).await {
        request
            .extensions_mut()
            .insert(HandshakeUser(user.into_boxed_str()));
    }
    next.run(request).await
}

/// Whether `uri` opens an Engine.IO session: it has no `sid` query parameter.
fn is_handshake(uri: &Uri) -> bool {
    !uri.query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair == "sid" || pair.starts_with("sid="))
}

/// Replaces the headers and URI of `request` with copies that do not share hyper's read buffer,
/// keeping only the headers that are read after this: those in `keep` (what the auth policy
/// reads on connect), `Authorization` (a bearer token, read on every connect) and
/// `Sec-WebSocket-Key` (the websocket upgrade answers with it).
///
/// Applied to the handshakes under `server.socketio_path`, polling ones too: a polling socket
/// keeps its handshake as long as a websocket one.
pub(crate) fn compact(mut request: Request, keep: &ConnectHeaders) -> Request {
    let kept = |name: &HeaderName| {
        name == header::AUTHORIZATION || name == header::SEC_WEBSOCKET_KEY || keep.includes(name)
    };
    let count = request.headers().keys().filter(|name| kept(name)).count();
    let mut headers = HeaderMap::with_capacity(count);
    for (name, value) in request.headers() {
        if !kept(name) {
            continue;
        }
        // Standard header names are static; custom ones are copied by `from_bytes`.
        let name = HeaderName::from_bytes(name.as_str().as_bytes());
        let value = HeaderValue::from_bytes(value.as_bytes()).map(|mut copy| {
            copy.set_sensitive(value.is_sensitive());
            copy
        });
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    *request.headers_mut() = headers;
    // `Uri::try_from(String)` owns its bytes; the request's URI was parsed from hyper's buffer.
    if let Ok(uri) = Uri::try_from(request.uri().to_string()) {
        *request.uri_mut() = uri;
    }
    request
}

/// Whether `path` is the Socket.IO endpoint at `socketio_path` (with or without a trailing `/`).
pub(crate) fn is_socketio_path(path: &str, socketio_path: &str) -> bool {
    let base = socketio_path.trim_end_matches('/');
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Sets `TCP_NODELAY` on an accepted connection.
///
/// Every Socket.IO event is a small frame that should leave at once; with Nagle's algorithm a
/// frame written while the previous one is unacknowledged waits for the peer's delayed ACK (up to
/// 40 ms on Linux), which is where the latency tail of a broadcast came from.
pub(crate) fn tune_accepted(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn compact_keeps_every_header_uri_and_extension() {
        let mut request = Request::builder()
            .uri("/ws/socket.io/?EIO=4&transport=websocket&sid=abc")
            .header("cookie", "sidecast=1")
            .header("x-custom", "one")
            .header("x-custom", "two")
            .header("upgrade", "websocket")
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(42u32);
        let before = request.headers().clone();
        let uri = request.uri().clone();

        let after = compact(request, &ConnectHeaders::All);

        assert_eq!(after.headers(), &before);
        assert_eq!(
            after
                .headers()
                .get_all("x-custom")
                .iter()
                .collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(after.uri(), &uri);
        assert_eq!(
            after.uri().query(),
            Some("EIO=4&transport=websocket&sid=abc")
        );
        assert_eq!(after.extensions().get::<u32>(), Some(&42));
    }

    #[test]
    fn compact_keeps_only_the_headers_read_later() {
        let request = Request::builder()
            .uri("/ws/socket.io/?EIO=4&transport=websocket")
            .header("host", "example.com")
            .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64)")
            .header("cookie", "session=abc")
            .header("cookie", "other=1")
            .header("authorization", "Bearer t")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-version", "13")
            .header("x-forwarded-user", "alice")
            .body(Body::empty())
            .unwrap();
        let keep = ConnectHeaders::Only(vec![header::COOKIE]);

        let after = compact(request, &keep);

        let names: Vec<&str> = after.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["cookie", "authorization", "sec-websocket-key"]);
        assert_eq!(
            after.headers().get_all("cookie").iter().collect::<Vec<_>>(),
            ["session=abc", "other=1"]
        );
        assert_eq!(after.uri().query(), Some("EIO=4&transport=websocket"));
    }

    #[test]
    fn compact_keeps_sensitive_marks() {
        let mut value = HeaderValue::from_static("Bearer secret");
        value.set_sensitive(true);
        let request = Request::builder()
            .uri("/ws/socket.io/")
            .header("authorization", value)
            .body(Body::empty())
            .unwrap();
        let after = compact(request, &ConnectHeaders::none());
        assert!(after.headers()["authorization"].is_sensitive());
    }

    #[test]
    fn handshakes_are_requests_without_a_sid() {
        for (uri, handshake) in [
            ("/ws/socket.io/?EIO=4&transport=websocket", true),
            ("/ws/socket.io/?EIO=4&transport=polling&t=abc", true),
            ("/ws/socket.io/", true),
            ("/ws/socket.io/?EIO=4&transport=polling&sid=abc", false),
            ("/ws/socket.io/?sid=abc&EIO=4&transport=websocket", false),
            ("/ws/socket.io/?EIO=4&xsid=1", true),
        ] {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(is_handshake(&uri), handshake, "{uri}");
        }
    }

    #[test]
    fn socketio_path_matches_the_endpoint_only() {
        for (path, endpoint, matches) in [
            ("/ws/socket.io", "/ws/socket.io", true),
            ("/ws/socket.io/", "/ws/socket.io", true),
            ("/ws/socket.io/", "/ws/socket.io/", true),
            ("/ws/socket.iox", "/ws/socket.io", false),
            ("/api/", "/ws/socket.io", false),
        ] {
            assert_eq!(
                is_socketio_path(path, endpoint),
                matches,
                "{path} at endpoint {endpoint}"
            );
        }
    }

    #[tokio::test]
    async fn accepted_connections_get_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap());
        tune_accepted(&mut accepted);
        assert!(accepted.nodelay().unwrap());
    }
}
