//! [`SessionAuth`]: the `session` policy, the original application's rule.

use async_trait::async_trait;
use sidecast_core::{AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal};

/// The original application's rule: the caller's session has a user.
///
/// Room operations on other sockets are not for pages: a session may not join, leave,
/// disconnect or close rooms (403); services do that with a token (`auth.policy = ["session",
/// "token"]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionAuth;

#[async_trait]
impl AuthPolicy for SessionAuth {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        match req.session_user {
            Some(user) if !user.is_empty() && req.action.is_room_operation() => {
                Err(AuthError::forbidden(
                    "room operations need a service token (auth.policy = [\"session\", \"token\"]), or a room of auth.session_rooms for the page's own sockets",
                ))
            }
            Some(user) if !user.is_empty() => Ok(Principal::new(user)),
            _ => Err(AuthError::unauthenticated(
                "no session user; log in first (GET /login)",
            )),
        }
    }

    /// The session's user is resolved from the session layer, not from a header.
    fn connect_headers(&self) -> ConnectHeaders {
        ConnectHeaders::none()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::shared::connect_request as req;

    #[tokio::test]
    async fn session_auth_needs_a_user() {
        let h = HeaderMap::new();
        assert_eq!(
            SessionAuth
                .authorize(&req(&h, Some("Gonzalo"), None))
                .await
                .unwrap(),
            Principal::new("Gonzalo")
        );
        assert!(matches!(
            SessionAuth.authorize(&req(&h, None, None)).await,
            Err(AuthError::Unauthenticated { .. })
        ));
        assert!(
            SessionAuth
                .authorize(&req(&h, Some(""), None))
                .await
                .is_err()
        );
    }
}
