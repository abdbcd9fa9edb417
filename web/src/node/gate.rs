//! Socket.IO handshakes while the node is starting (decision 21): answered with HTTP 503,
//! `Retry-After` and a short JSON reason.
//!
//! A refusal in the connect middleware would reach the client as a `connect_error` packet, after
//! which the official socket.io client does not reconnect by itself. A failed Engine.IO
//! handshake is a transport error, which it retries with its reconnection backoff: the client
//! created while the broker is down connects once the node has started.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::delivery::handshake;
use crate::node::start::Startup;

/// What the gate needs: the start state and `server.socketio_path`.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) startup: Arc<Startup>,
    pub(crate) socketio_path: Arc<str>,
}

/// Seconds a client is told to wait before its next handshake.
const RETRY_AFTER_SECS: u32 = 1;

/// Middleware: refuses Engine.IO handshakes (requests to the Socket.IO path without a `sid`,
/// polling and websocket alike) until the node has started; everything else passes.
pub(crate) async fn refuse_while_starting(
    State(gate): State<Gate>,
    request: Request,
    next: Next,
) -> Response {
    if gate.startup.is_started()
        || !handshake::is_socketio_path(request.uri().path(), &gate.socketio_path)
        || has_sid(request.uri().query())
    {
        return next.run(request).await;
    }
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "error": "the node is starting: its broker has not answered yet; retry",
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// Whether the query names an Engine.IO session (`sid=`): a request of a session, not a handshake.
fn has_sid(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("sid"))
    })
}

#[cfg(test)]
mod tests {
    use super::has_sid;

    #[test]
    fn a_handshake_has_no_sid() {
        assert!(!has_sid(None));
        assert!(!has_sid(Some("EIO=4&transport=polling&t=abc")));
        assert!(!has_sid(Some("EIO=4&transport=websocket&xsid=1")));
        assert!(has_sid(Some("EIO=4&transport=polling&sid=abc")));
        assert!(has_sid(Some("sid=abc&EIO=4")));
    }
}
