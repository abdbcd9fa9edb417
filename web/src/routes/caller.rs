//! Who sent an HTTP request, as the auth policy sees it, and the policy's decision on it: one
//! place for `POST /api/`, `POST /api/rooms` and `GET /api/presence`.

use axum::http::request::Parts;
use sidecast_core::{Action, AuthRequest, Principal};
use tower_sessions::Session;

use crate::Sidecast;
use crate::error::ApiError;
use crate::identity::request::{bearer_token, peer_addr};
use crate::identity::session::session_user;

/// The sender of a request: its headers, peer and session user.
pub(crate) struct Caller<'a> {
    parts: &'a Parts,
    user: Option<String>,
}

impl<'a> Caller<'a> {
    /// The sender of the request `parts` belong to, its session's user read once.
    pub(crate) async fn of(parts: &'a Parts) -> Self {
        let user = session_user(parts.extensions.get::<Session>()).await;
        Self { parts, user }
    }

    /// Asks the node's auth policy whether the caller may do `action`; a refusal is counted in
    /// the metrics under `route`.
    pub(crate) async fn authorize(
        &self,
        state: &Sidecast,
        action: Action<'_>,
        route: &'static str,
    ) -> Result<Principal, ApiError> {
        let request = AuthRequest {
            action,
            headers: &self.parts.headers,
            session_user: self.user.as_deref(),
            token: bearer_token(&self.parts.headers),
            peer: peer_addr(&self.parts.extensions),
        };
        Ok(state
            .inner
            .auth
            .authorize(&request)
            .await
            .inspect_err(|e| state.inner.metrics.auth_refused(e, route))?)
    }
}
