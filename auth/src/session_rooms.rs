//! [`SessionRooms`]: the rooms a logged-in page may join and leave for its own sockets
//! (`auth.session_rooms`).

use async_trait::async_trait;
use sidecast_core::auth::user_room;
use sidecast_core::{Action, AuthError, AuthPolicy, AuthRequest, ConnectHeaders, Principal};

/// Lets a logged-in page join and leave rooms for its own sockets: the session user may target
/// `user:<name>` (its own room) only, and only rooms that match one of the patterns
/// (`auth.session_rooms`). In a pattern, `*` matches any text, `?` one character, and `{user}`
/// stands for the user's name: `["game:*", "team:{user}"]`.
///
/// It decides room joins and leaves only, and refuses everything else (403): combine it with the
/// policies that decide connects and publishes, after them, in [`AnyOf`](crate::AnyOf)
/// (`AnyOf::new(vec![Box::new(SessionAuth), Box::new(SessionRooms::new(["game:*"]))])`).
/// Only services with a token (or a policy of your own) may target other users' sockets.
#[derive(Debug, Clone, Default)]
pub struct SessionRooms {
    patterns: Vec<String>,
}

impl SessionRooms {
    /// A policy allowing the rooms that match any of `patterns`.
    pub fn new(patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            patterns: patterns.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `user` may join or leave `room` with its own sockets.
    pub fn allows(&self, user: &str, room: &str) -> bool {
        // The name is text in the pattern, not glob syntax.
        let mut escaped = String::with_capacity(user.len());
        for c in user.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        self.patterns.iter().any(|pattern| {
            let pattern = pattern.replace("{user}", &escaped);
            sidecast_core::glob::matches(pattern.as_bytes(), room.as_bytes())
        })
    }
}

#[async_trait]
impl AuthPolicy for SessionRooms {
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError> {
        let Some(user) = req.session_user.filter(|u| !u.is_empty()) else {
            return Err(AuthError::unauthenticated(
                "no session user; log in first (GET /login)",
            ));
        };
        let (Action::Join { room, targets, .. } | Action::Leave { room, targets, .. }) = req.action
        else {
            return Err(AuthError::forbidden(
                "a page may only join and leave rooms (auth.session_rooms)",
            ));
        };
        if targets != [user_room(user)] {
            return Err(AuthError::forbidden(
                "a page joins and leaves rooms for its own sockets only: \"to\": \"user:<name>\"",
            ));
        }
        if !self.allows(user, room) {
            return Err(AuthError::forbidden(format!(
                "room {room:?} is not one that auth.session_rooms allows"
            )));
        }
        Ok(Principal::new(user))
    }

    fn connect_headers(&self) -> ConnectHeaders {
        ConnectHeaders::none()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::any_of::AnyOf;
    use crate::session::SessionAuth;
    use crate::shared::connect_request as req;

    #[tokio::test]
    async fn pages_join_the_rooms_their_rules_allow_for_themselves() {
        let h = HeaderMap::new();
        let rules = SessionRooms::new(["game:*", "team:{user}"]);
        assert!(rules.allows("alice", "game:1"));
        assert!(rules.allows("alice", "team:alice"));
        assert!(!rules.allows("alice", "team:bob"));
        assert!(!rules.allows("*", "team:bob"), "a name is not a pattern");
        assert!(rules.allows("*", "team:*"));
        assert!(!rules.allows("alice", "chat"));
        let own = ["user:alice".to_owned()];
        let other = ["user:bob".to_owned()];
        let ask = |room: &'static str, targets: &'static [String], user| AuthRequest {
            action: Action::Join {
                namespace: "/",
                room,
                targets,
            },
            ..req(&h, user, None)
        };
        // Leaked: the test's arrays live for the whole test anyway.
        let own: &'static [String] = Box::leak(Box::new(own));
        let other: &'static [String] = Box::leak(Box::new(other));
        assert_eq!(
            rules
                .authorize(&ask("game:1", own, Some("alice")))
                .await
                .unwrap()
                .id,
            "alice"
        );
        for (room, targets, user) in [
            ("chat", own, Some("alice")),
            ("game:1", other, Some("alice")),
            ("game:1", &[][..], Some("alice")),
        ] {
            assert!(matches!(
                rules.authorize(&ask(room, targets, user)).await,
                Err(AuthError::Forbidden { .. })
            ));
        }
        assert!(matches!(
            rules.authorize(&ask("game:1", own, None)).await,
            Err(AuthError::Unauthenticated { .. })
        ));
        assert!(matches!(
            rules.authorize(&req(&h, Some("alice"), None)).await,
            Err(AuthError::Forbidden { .. })
        ));
        // After the session policy, in AnyOf: connects as before, joins by the rules.
        let any = AnyOf::new(vec![Box::new(SessionAuth), Box::new(rules)]);
        assert!(any.authorize(&req(&h, Some("alice"), None)).await.is_ok());
        assert!(
            any.authorize(&ask("game:2", own, Some("alice")))
                .await
                .is_ok()
        );
        assert!(
            any.authorize(&ask("chat", own, Some("alice")))
                .await
                .is_err()
        );
        assert_eq!(
            Principal::new("a").with_rooms(["team:7"]).rooms,
            vec!["team:7".to_owned()]
        );
    }
}
