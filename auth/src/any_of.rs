//! [`AnyOf`]: several policies, any of which may let the caller in (`auth.policy = [..]`).

use std::fmt;

use async_trait::async_trait;
use sidecast_core::{AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal, RefusalKind};

/// Lets the caller in if any of the policies does, trying them in order.
///
/// When all refuse, the first refusal is returned, except that a policy which could not decide
/// ([`RefusalKind::Unavailable`]) wins: the caller should retry rather than give up.
pub struct AnyOf {
    policies: Vec<Box<dyn AuthPolicy>>,
}

impl AnyOf {
    /// A policy that accepts what any of `policies` accepts.
    pub fn new(policies: Vec<Box<dyn AuthPolicy>>) -> Self {
        Self { policies }
    }
}

impl fmt::Debug for AnyOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyOf({} policies)", self.policies.len())
    }
}

#[async_trait]
impl AuthPolicy for AnyOf {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        let mut first_refusal = None;
        let mut unavailable = None;
        for policy in &self.policies {
            match policy.authorize(req).await {
                Ok(principal) => return Ok(principal),
                Err(e) if e.kind() == Some(RefusalKind::Unavailable) => {
                    unavailable.get_or_insert(e);
                }
                Err(e) => {
                    first_refusal.get_or_insert(e);
                }
            }
        }
        // A policy that could not decide may well have accepted: the caller should retry.
        if let Some(e) = unavailable {
            return Err(e);
        }
        Err(first_refusal
            .unwrap_or_else(|| AuthError::unauthenticated("no auth policy configured")))
    }

    /// What any of the policies reads.
    fn connect_headers(&self) -> ConnectHeaders {
        self.policies.iter().fold(ConnectHeaders::none(), |all, p| {
            all.union(p.connect_headers())
        })
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use sidecast_core::Action;

    use super::*;
    use crate::allow_all::AllowAll;
    use crate::session::SessionAuth;
    use crate::shared::connect_request as req;
    use crate::token::TokenAuth;

    #[test]
    fn connect_headers_of_the_built_in_policies_and_their_union() {
        use http::header::{COOKIE, USER_AGENT};
        assert_eq!(SessionAuth.connect_headers(), ConnectHeaders::none());
        assert_eq!(AllowAll.connect_headers(), ConnectHeaders::none());
        assert_eq!(
            TokenAuth::new([("t", "svc")]).connect_headers(),
            ConnectHeaders::none()
        );
        let cookie = ConnectHeaders::Only(vec![COOKIE]);
        assert_eq!(
            ConnectHeaders::none()
                .union(cookie.clone())
                .union(cookie.clone()),
            cookie
        );
        assert_eq!(
            cookie.clone().union(ConnectHeaders::All),
            ConnectHeaders::All
        );
        assert!(cookie.includes(&COOKIE) && !cookie.includes(&USER_AGENT));
        assert!(ConnectHeaders::All.includes(&USER_AGENT));

        /// A policy of its own, which does not say: every header is kept.
        struct Custom;
        #[async_trait]
        impl AuthPolicy for Custom {
            async fn authorize(&self, _: &AuthRequest<'_>) -> Result<Principal, AuthError> {
                Ok(Principal::new("x"))
            }
        }
        let any = AnyOf::new(vec![Box::new(SessionAuth), Box::new(TokenAuth::default())]);
        assert_eq!(any.connect_headers(), ConnectHeaders::none());
        let any = AnyOf::new(vec![Box::new(SessionAuth), Box::new(Custom)]);
        assert_eq!(any.connect_headers(), ConnectHeaders::All);
    }

    #[tokio::test]
    async fn room_operations_need_a_token() {
        let h = HeaderMap::new();
        let targets = ["user:alice".to_owned()];
        let join = AuthRequest {
            action: Action::Join {
                namespace: "/",
                room: "game:1",
                targets: &targets,
            },
            ..req(&h, Some("Gonzalo"), Some("s3cret"))
        };
        assert!(matches!(
            SessionAuth.authorize(&join).await,
            Err(AuthError::Forbidden { .. })
        ));
        let no_session = AuthRequest {
            session_user: None,
            ..join
        };
        assert!(matches!(
            SessionAuth.authorize(&no_session).await,
            Err(AuthError::Unauthenticated { .. })
        ));
        let tokens = TokenAuth::new([("s3cret", "cron")]);
        let any = AnyOf::new(vec![Box::new(SessionAuth), Box::new(tokens)]);
        assert_eq!(any.authorize(&join).await.unwrap().id, "cron");
        let without_token = AuthRequest {
            token: None,
            ..join
        };
        assert!(matches!(
            any.authorize(&without_token).await,
            Err(AuthError::Forbidden { .. })
        ));
    }

    #[tokio::test]
    async fn token_and_any_of() {
        let h = HeaderMap::new();
        let tokens = TokenAuth::new([("s3cret", "cron")]);
        assert!(!format!("{tokens:?}").contains("s3cret"));
        assert_eq!(
            tokens
                .authorize(&req(&h, None, Some("s3cret")))
                .await
                .unwrap()
                .id,
            "cron"
        );
        assert!(
            tokens
                .authorize(&req(&h, None, Some("s3cre")))
                .await
                .is_err()
        );
        assert!(tokens.authorize(&req(&h, None, None)).await.is_err());
        let any = AnyOf::new(vec![Box::new(SessionAuth), Box::new(tokens)]);
        assert_eq!(
            any.authorize(&req(&h, Some("u"), None)).await.unwrap().id,
            "u"
        );
        assert_eq!(
            any.authorize(&req(&h, None, Some("s3cret")))
                .await
                .unwrap()
                .id,
            "cron"
        );
        let refused = any.authorize(&req(&h, None, None)).await.unwrap_err();
        assert!(refused.to_string().contains("log in"));
        assert_eq!(
            AllowAll.authorize(&req(&h, None, None)).await.unwrap().id,
            "anonymous"
        );
    }
}
