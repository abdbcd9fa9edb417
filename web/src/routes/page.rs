//! The page of the original application (`GET /`), filled in from the configuration, and the local
//! copy of the Socket.IO client it may load (`server.client_js`), and the recovery helper script.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use sidecast_core::config::ServerConfig;

use crate::Sidecast;

/// Where the page loads a local copy of the Socket.IO client from, when `server.client_js` is set.
pub const CLIENT_JS_ROUTE: &str = "/socket.io.min.js";

/// `GET /`: the page of the original application.
pub(crate) async fn index(State(state): State<Sidecast>) -> Html<String> {
    Html(state.inner.page.clone())
}

/// Where the recovery helper for the official client is served.
pub(crate) const RECOVERY_JS_ROUTE: &str = "/sidecast-recovery.js";

/// `GET /sidecast-recovery.js`: remembers the last offset and sends it on every reconnect.
pub(crate) async fn recovery_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("sidecast-recovery.js"),
    )
        .into_response()
}

/// `GET /socket.io.min.js` when `server.client_js` names a local copy of the client.
pub(crate) async fn client_js(State(state): State<Sidecast>) -> Response {
    match &state.inner.client_js {
        Some(script) => (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            script.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The page with the configured client script and Socket.IO path filled in.
pub(crate) fn render(server: &ServerConfig) -> String {
    let client_js = if server.client_js.is_some() {
        CLIENT_JS_ROUTE.to_owned()
    } else {
        server.client_js_url.clone()
    };
    // The path goes into a script as a JSON string; `<` is escaped so it cannot close the tag.
    let path_json = serde_json::to_string(&server.socketio_path)
        .unwrap_or_else(|_| "\"/ws/socket.io\"".to_owned())
        .replace('<', "\\u003c");
    include_str!("page.html")
        .replace("{{CLIENT_JS}}", &html_escape(&client_js))
        .replace("{{SOCKETIO_PATH_JSON}}", &path_json)
}

/// Escapes text for an HTML attribute value.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
