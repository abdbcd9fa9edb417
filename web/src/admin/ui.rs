//! The Admin UI in the browser: its built files served from `admin.ui_dir` at `/admin/`, and
//! CORS with credentials on `server.socketio_path` for a UI served from one of
//! `admin.allowed_origins` (the hosted `https://admin.socket.io`).

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::services::ServeDir;

use crate::identity::origin::{AdminOrigin, OriginPolicy};

/// Where the UI is served.
pub(crate) const UI_ROUTE: &str = "/admin/";

/// `/admin/` (and its files) from `dir`; `/admin` redirects there, since the UI loads its
/// files by relative paths.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent(UI_ROUTE) }))
        .nest_service(
            UI_ROUTE,
            ServeDir::new(dir).append_index_html_on_directories(true),
        )
}

/// Whether `dir` looks like the UI's build (has an `index.html`): checked at start, so that a
/// wrong `admin.ui_dir` is an error naming the fix rather than a 404 in the browser.
pub(crate) fn check_dir(dir: &Path) -> Result<(), String> {
    if dir.join("index.html").is_file() {
        Ok(())
    } else {
        Err(format!(
            "{} has no index.html; run `npm install @socket.io/admin-ui` and point admin.ui_dir at \
             node_modules/@socket.io/admin-ui/ui/dist",
            dir.display()
        ))
    }
}

/// Middleware on the Socket.IO path: a request whose origin is one of `admin.allowed_origins`
/// gets the CORS headers of socket.io's `cors: {origin, credentials: true}`; its preflight is
/// answered here.
pub(crate) async fn cors(
    State(origins): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    let Some((origin, only_admin)) = origins.admin_origin(request.uri().path(), request.headers())
    else {
        return next.run(request).await;
    };
    let Ok(origin) = HeaderValue::from_str(&origin) else {
        return next.run(request).await;
    };
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        if let Some(asked) = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        preflight
    } else {
        let mut request = request;
        if only_admin {
            // The application namespaces refuse a socket that came from an admin-only origin.
            request.extensions_mut().insert(AdminOrigin);
        }
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}
