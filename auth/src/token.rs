//! [`TokenAuth`]: the `token` policy, static bearer tokens from `auth.tokens`.

use std::fmt;

use async_trait::async_trait;
use sidecast_core::{AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal};
use subtle::ConstantTimeEq;

/// Static bearer tokens, for services and for Socket.IO clients that send `auth: {token}`.
///
/// Each token maps to a principal name. Comparison is constant-time; tokens are never logged
/// (the `Debug` output hides them).
#[derive(Clone, Default)]
pub struct TokenAuth {
    tokens: Vec<(String, Principal)>,
}

impl TokenAuth {
    /// A policy accepting the given `(token, principal name)` pairs.
    pub fn new<T, P>(tokens: impl IntoIterator<Item = (T, P)>) -> Self
    where
        T: Into<String>,
        P: Into<String>,
    {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(t, p)| (t.into(), Principal::new(p)))
                .collect(),
        }
    }
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuth")
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .finish()
    }
}

#[async_trait]
impl AuthPolicy for TokenAuth {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        let Some(given) = req.token else {
            return Err(AuthError::unauthenticated("missing bearer token"));
        };
        // Compare against every token, without stopping early, so that timing reveals nothing.
        let mut found = None;
        for (token, principal) in &self.tokens {
            if bool::from(token.as_bytes().ct_eq(given.as_bytes())) {
                found = Some(principal);
            }
        }
        found
            .cloned()
            .ok_or_else(|| AuthError::unauthenticated("invalid bearer token"))
    }

    /// The token comes from the connect's `auth` payload or the `Authorization` header.
    fn connect_headers(&self) -> ConnectHeaders {
        ConnectHeaders::none()
    }
}
