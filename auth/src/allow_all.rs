//! [`AllowAll`]: the `allow-all` policy, for development.

use async_trait::async_trait;
use sidecast_core::{AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal};

/// Lets everybody in as the principal `anonymous` (or the session user, when there is one).
///
/// Explicit, for development: the server refuses it on a non-loopback address unless told
/// otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl AuthPolicy for AllowAll {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        Ok(Principal::new(req.session_user.unwrap_or("anonymous")))
    }

    fn connect_headers(&self) -> ConnectHeaders {
        ConnectHeaders::none()
    }
}
