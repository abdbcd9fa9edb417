//! Same-origin checks against Cross-Site WebSocket Hijacking and cross-site `POST /api/` and
//! `POST /api/rooms`.
//!
//! Browsers send `Origin` on websocket handshakes, on cross-origin XHR/fetch, and on every POST.
//! A request without `Origin` does not come from a page in a browser (curl, services, mobile
//! apps) and passes; a browser request passes when its origin is the server's own (as the
//! request's `Host` names it) or listed in `server.allowed_origins`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Which origins may open sockets and publish.
#[derive(Debug, Clone)]
pub(crate) struct OriginPolicy {
    allowed: Vec<String>,
    /// `admin.allowed_origins` (when the admin namespace is on): Socket.IO handshakes only, and
    /// the application namespaces refuse their sockets ([`AdminOrigin`]).
    admin: Vec<String>,
    socketio_path: String,
    metrics: Option<Arc<Metrics>>,
}

/// Marks a Socket.IO request that passed the origin check only because its origin is one of
/// `admin.allowed_origins`: the application namespaces refuse its sockets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdminOrigin;

impl OriginPolicy {
    pub(crate) fn new(
        allowed: &[String],
        socketio_path: &str,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            allowed: allowed.iter().map(|o| normalize(o)).collect(),
            admin: Vec::new(),
            socketio_path: socketio_path.trim_end_matches('/').to_owned(),
            metrics,
        }
    }

    /// Also lets `origins` (`admin.allowed_origins`) open Socket.IO connections, for the admin
    /// namespace.
    pub(crate) fn with_admin_origins(mut self, origins: &[String]) -> Self {
        self.admin = origins.iter().map(|o| normalize(o)).collect();
        self
    }

    /// The request's `Origin`, when it is a Socket.IO request from one of
    /// `admin.allowed_origins`, and whether that is the only reason it may go on.
    pub(crate) fn admin_origin(&self, path: &str, headers: &HeaderMap) -> Option<(String, bool)> {
        if self.admin.is_empty() || !self.is_socketio(path) {
            return None;
        }
        let raw = headers.get(header::ORIGIN)?.to_str().ok()?;
        if !self.admin.contains(&normalize(raw)) {
            return None;
        }
        Some((raw.to_owned(), self.allows(headers).is_err()))
    }

    /// Whether the request's origin may go on.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = normalize(origin.to_str().unwrap_or("null"));
        if self.allowed.contains(&origin) {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if same_origin(&origin, host) {
            Ok(())
        } else {
            Err(origin)
        }
    }

    fn is_socketio(&self, path: &str) -> bool {
        path.strip_prefix(&self.socketio_path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    fn guards(&self, method: &Method, path: &str) -> bool {
        self.is_socketio(path)
            || (method == Method::POST && (path == "/api/" || path == "/api/rooms"))
    }
}

/// The middleware: refuses Socket.IO handshakes and `POST /api/` from foreign origins with 403.
pub(crate) async fn check(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    if policy.guards(request.method(), request.uri().path())
        && let Err(origin) = policy.allows(request.headers())
        && policy
            .admin_origin(request.uri().path(), request.headers())
            .is_none()
    {
        tracing::info!(origin = %origin, path = %request.uri().path(), "cross-origin request refused");
        if let Some(metrics) = &policy.metrics
            && policy.is_socketio(request.uri().path())
        {
            metrics.refused("origin");
        }
        return ApiError::ForeignOrigin(origin).into_response();
    }
    next.run(request).await
}

/// Lower-case, without a trailing slash and without the scheme's default port.
fn normalize(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if origin.starts_with(scheme)
            && let Some(stripped) = origin.strip_suffix(port)
        {
            return stripped.to_owned();
        }
    }
    origin
}

/// Whether a normalized origin names the host the request was sent to.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    !host.is_empty() && authority == host
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    #[test]
    fn same_origin_passes_others_need_listing() {
        let p = OriginPolicy::new(&["https://App.example.com/".into()], "/ws/socket.io", None);
        assert!(p.allows(&headers(None, "a:5000")).is_ok());
        assert!(p.allows(&headers(Some("http://a:5000"), "a:5000")).is_ok());
        assert!(p.allows(&headers(Some("http://a"), "a:80")).is_ok());
        assert!(p.allows(&headers(Some("https://a:443"), "a")).is_ok());
        assert!(
            p.allows(&headers(Some("https://app.example.com"), "a:5000"))
                .is_ok()
        );
        assert!(
            p.allows(&headers(Some("http://evil.example"), "a:5000"))
                .is_err()
        );
        assert!(p.allows(&headers(Some("http://a:5001"), "a:5000")).is_err());
        assert!(p.allows(&headers(Some("null"), "a:5000")).is_err());
        assert!(
            p.allows(&headers(Some("http://a.evil:5000"), "a:5000"))
                .is_err()
        );
    }

    #[test]
    fn guards_socketio_and_api_posts_only() {
        let p = OriginPolicy::new(&[], "/ws/socket.io", None);
        assert!(p.guards(&Method::GET, "/ws/socket.io/"));
        assert!(p.guards(&Method::GET, "/ws/socket.io"));
        assert!(!p.guards(&Method::GET, "/ws/socket.iox"));
        assert!(p.guards(&Method::POST, "/api/"));
        assert!(p.guards(&Method::POST, "/api/rooms"));
        assert!(!p.guards(&Method::GET, "/"));
    }
}
