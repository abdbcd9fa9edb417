//! The [`AuthPolicy`] trait and the built-in policies.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

use async_trait::async_trait;
use http::HeaderMap;
use subtle::ConstantTimeEq;

mod flask_session;

pub use flask_session::{
    FLASK_SESSION_POLICY, FlaskCookieError, FlaskSessionAuth, MAX_COOKIE_BYTES,
};

/// Decides whether a socket may connect or an HTTP request may publish, and who the caller is.
///
/// The web layer gathers the facts ([`AuthRequest`]) and maps the answer: `Ok` lets the action
/// go on as the returned [`Principal`] (sockets join the room `user:<principal>`);
/// [`AuthError::Unauthenticated`] becomes HTTP 401 or a refused connect, [`AuthError::Forbidden`]
/// HTTP 403 or a refused connect, [`AuthError::Internal`] HTTP 500 or a refused connect.
///
/// Policies are called on every connect and every publish: keep them fast, and bound any I/O
/// they do with a time-out. A policy must not log secrets (tokens, cookies).
#[async_trait]
pub trait AuthPolicy: Send + Sync + 'static {
    /// Authorizes one action.
    async fn authorize(&self, req: &AuthRequest<'_>) -> Result<Principal, AuthError>;

    /// The request headers this policy reads on [`Action::Connect`].
    ///
    /// A Socket.IO server keeps each socket's handshake request, headers included, for as long
    /// as the socket is connected (a browser sends 1–2 KiB of them), and a client may connect to
    /// a namespace at any time on its connection; a node keeps only the headers its policy
    /// names, besides `Authorization` (every connect reads a bearer token). The default,
    /// [`ConnectHeaders::All`], keeps them all: right for a policy that cannot name them.
    fn connect_headers(&self) -> ConnectHeaders {
        ConnectHeaders::All
    }
}

/// Which handshake headers a policy reads when a socket connects
/// ([`AuthPolicy::connect_headers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectHeaders {
    /// Any header: every handshake header is kept for as long as the socket is connected.
    All,
    /// Only these (`Authorization` is always kept).
    Only(Vec<http::HeaderName>),
}

impl ConnectHeaders {
    /// No header beyond `Authorization`.
    pub fn none() -> Self {
        Self::Only(Vec::new())
    }

    /// The headers that either reads: what a policy trying both needs.
    pub fn union(self, other: Self) -> Self {
        match (self, other) {
            (Self::Only(mut a), Self::Only(b)) => {
                for name in b {
                    if !a.contains(&name) {
                        a.push(name);
                    }
                }
                Self::Only(a)
            }
            _ => Self::All,
        }
    }

    /// Whether a header of this name is read.
    pub fn includes(&self, name: &http::HeaderName) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.contains(name),
        }
    }
}

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action<'a> {
    /// Connect a Socket.IO client to a namespace.
    Connect {
        /// The namespace, such as `"/"`.
        namespace: &'a str,
    },
    /// Publish an event through `POST /api/`.
    Publish {
        /// The event name.
        event: &'a str,
        /// The rooms it is addressed to; empty means everyone in the namespace.
        rooms: &'a [String],
    },
    /// Make sockets join a room (`POST /api/rooms`); asked once per room.
    Join {
        /// The namespace.
        namespace: &'a str,
        /// The room to join.
        room: &'a str,
        /// Whose sockets join: rooms such as `user:<name>`; empty means everyone.
        targets: &'a [String],
    },
    /// Make sockets leave a room (`POST /api/rooms`); asked once per room.
    Leave {
        /// The namespace.
        namespace: &'a str,
        /// The room to leave.
        room: &'a str,
        /// Whose sockets leave: rooms such as `user:<name>`; empty means everyone.
        targets: &'a [String],
    },
    /// Disconnect the sockets in some rooms (`POST /api/rooms`).
    Disconnect {
        /// The namespace.
        namespace: &'a str,
        /// The rooms whose sockets are disconnected.
        targets: &'a [String],
    },
    /// Make every socket leave a room (`POST /api/rooms`); asked once per room.
    CloseRoom {
        /// The namespace.
        namespace: &'a str,
        /// The room to close.
        room: &'a str,
    },
}

impl Action<'_> {
    /// Whether this is a room operation (join, leave, disconnect, close a room).
    pub fn is_room_operation(&self) -> bool {
        matches!(
            self,
            Self::Join { .. }
                | Self::Leave { .. }
                | Self::Disconnect { .. }
                | Self::CloseRoom { .. }
        )
    }
}

/// The facts a policy decides on, gathered by the web layer.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// What the caller wants to do.
    pub action: Action<'a>,
    /// The HTTP request headers (for a socket: those of its handshake request).
    pub headers: &'a HeaderMap,
    /// The `user` of the caller's session, if it has one.
    pub session_user: Option<&'a str>,
    /// A bearer token: `Authorization: Bearer ...` on HTTP, `auth: {token}` on Socket.IO connect.
    pub token: Option<&'a str>,
    /// The peer's address, when the server knows it.
    pub peer: Option<SocketAddr>,
}

/// Who the caller is, once authorized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The caller's name; sockets join the room `user:<id>`.
    pub id: String,
    /// Rooms a socket of this principal joins at connect, besides `user:<id>` and its own id
    /// (a token or session that says "this user is in team:7"). Names that break the room rules
    /// ([`crate::rooms`]) are left out, with a warning.
    pub rooms: Vec<String>,
    /// When the credential expires (a token's `exp`): the web layer disconnects the principal's
    /// sockets then, with the reason `token expired`, so that clients reconnect with a fresh
    /// credential. `None`: the socket stays as long as it likes.
    pub expires_at: Option<std::time::SystemTime>,
}

impl Principal {
    /// A principal with the given name.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            rooms: Vec::new(),
            expires_at: None,
        }
    }

    /// This principal, whose credential expires at `at`.
    pub fn with_expiry(mut self, at: std::time::SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// This principal, whose sockets also join `rooms` at connect.
    pub fn with_rooms(mut self, rooms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.rooms.extend(rooms.into_iter().map(Into::into));
        self
    }

    /// The name of the room every socket of this principal joins.
    pub fn room(&self) -> String {
        user_room(&self.id)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// The room of a user's sockets: `user:<name>`.
pub fn user_room(user: &str) -> String {
    format!("user:{user}")
}

/// A refusal from an [`AuthPolicy`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The caller is not known (HTTP 401, connect refused).
    #[error("unauthorized: {reason}")]
    Unauthenticated {
        /// A short reason that is safe to show to the caller.
        reason: Cow<'static, str>,
    },
    /// The caller is known but may not do this (HTTP 403, connect refused).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// A short reason that is safe to show to the caller.
        reason: Cow<'static, str>,
    },
    /// The policy could not decide (HTTP 500, connect refused).
    #[error("authorization failed: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A refusal that names its policy and a short code, for metrics (the built-in `jwt`,
    /// `http` and `flask-session` policies refuse this way).
    #[error("{}: {reason}", kind.prefix())]
    Refused {
        /// How the refusal maps to HTTP and to a connect.
        kind: RefusalKind,
        /// The policy that refused, as named in `auth.policy`.
        policy: &'static str,
        /// A short code for metrics and logs, such as `expired`.
        code: &'static str,
        /// A short reason that is safe to show to the caller.
        reason: Cow<'static, str>,
    },
}

/// What a refusal means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    /// Not known (HTTP 401, connect refused).
    Unauthenticated,
    /// Known, but not allowed (HTTP 403, connect refused).
    Forbidden,
    /// The policy cannot decide now, try again later (HTTP 503 with `Retry-After`, connect
    /// refused with a reason that says so).
    Unavailable,
}

impl RefusalKind {
    /// The start of the message the caller sees.
    fn prefix(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable, retry later",
        }
    }
}

impl AuthError {
    /// An [`AuthError::Unauthenticated`] with a reason.
    pub fn unauthenticated(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Unauthenticated {
            reason: reason.into(),
        }
    }

    /// An [`AuthError::Forbidden`] with a reason.
    pub fn forbidden(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden {
            reason: reason.into(),
        }
    }

    /// An [`AuthError::Refused`].
    pub fn refused(
        kind: RefusalKind,
        policy: &'static str,
        code: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::Refused {
            kind,
            policy,
            code,
            reason: reason.into(),
        }
    }

    /// What the refusal means for the caller; `None` for [`AuthError::Internal`].
    pub fn kind(&self) -> Option<RefusalKind> {
        match self {
            Self::Unauthenticated { .. } => Some(RefusalKind::Unauthenticated),
            Self::Forbidden { .. } => Some(RefusalKind::Forbidden),
            Self::Refused { kind, .. } => Some(*kind),
            Self::Internal(_) => None,
        }
    }

    /// The policy that refused, when it said (`"other"` otherwise).
    pub fn policy(&self) -> &'static str {
        match self {
            Self::Refused { policy, .. } => policy,
            _ => "other",
        }
    }

    /// A short code for metrics: the refusing policy's own, else `unauthenticated`,
    /// `forbidden` or `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused { code, .. } => code,
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::Forbidden { .. } => "forbidden",
            Self::Internal(_) => "internal",
        }
    }
}

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

/// Lets a logged-in page join and leave rooms for its own sockets: the session user may target
/// `user:<name>` (its own room) only, and only rooms that match one of the patterns
/// (`auth.session_rooms`). In a pattern, `*` matches any text, `?` one character, and `{user}`
/// stands for the user's name: `["game:*", "team:{user}"]`.
///
/// It decides room joins and leaves only, and refuses everything else (403): combine it with the
/// policies that decide connects and publishes, after them, in [`AnyOf`]
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
            crate::glob::matches(pattern.as_bytes(), room.as_bytes())
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
    use super::*;

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

    fn req<'a>(
        headers: &'a HeaderMap,
        user: Option<&'a str>,
        token: Option<&'a str>,
    ) -> AuthRequest<'a> {
        AuthRequest {
            action: Action::Connect { namespace: "/" },
            headers,
            session_user: user,
            token,
            peer: None,
        }
    }

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
