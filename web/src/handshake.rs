//! Per-connection memory and latency tuning of the Socket.IO transport.
//!
//! Each connected socket keeps its handshake request's parts (headers, URI, extensions) for its
//! whole life. hyper parses headers as slices of the connection's read buffer, so keeping one
//! header value alive keeps the whole buffer (8–16 KiB) alive: half of what an idle connection
//! costs. [`compact`] copies the parts Socket.IO keeps into their own small allocations first.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};

/// Bytes the websocket transport reads from a socket at a time.
///
/// Clients send pongs and small event packets; a larger message still arrives whole (the buffer
/// grows to the frame's length, up to `server.max_socket_payload_bytes`), it only takes more
/// reads. tungstenite's default, 4 KiB per socket, would be a quarter of an idle connection.
pub(crate) const WS_READ_BUFFER_BYTES: usize = 1024;

/// Replaces the headers and URI of `request` with copies that do not share hyper's read buffer.
///
/// Applied to every request under `server.socketio_path`: a polling handshake is kept as long
/// as a websocket one, and later polling requests are small and few.
pub(crate) fn compact(mut request: Request) -> Request {
    let mut headers = HeaderMap::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
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

        let after = compact(request);

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
    fn compact_keeps_sensitive_marks() {
        let mut value = HeaderValue::from_static("Bearer secret");
        value.set_sensitive(true);
        let request = Request::builder()
            .uri("/ws/socket.io/")
            .header("authorization", value)
            .body(Body::empty())
            .unwrap();
        let after = compact(request);
        assert!(after.headers()["authorization"].is_sensitive());
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
