//! The auth contract: [`AuthPolicy`], what it decides on ([`AuthRequest`], [`Action`]) and what
//! it answers ([`Principal`], [`AuthError`]).
//!
//! The built-in policies (`session`, `token`, `allow-all`, `flask-session`, `jwt`, `http`, ...)
//! implement it in the `sidecast-auth` crate.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

use async_trait::async_trait;
use http::HeaderMap;

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
    /// Read who is in a presence room (`GET /api/presence`).
    Presence {
        /// The namespace.
        namespace: &'a str,
        /// The room.
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
    /// A small JSON object shown next to the user in presence rooms (`[presence]`), such as
    /// `{"name": "Ada", "avatar": "..."}`. It comes from the policy, never from the client; one
    /// larger than `presence.max_info_bytes` is left out.
    pub info: Option<serde_json::Value>,
}

impl Principal {
    /// A principal with the given name.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            rooms: Vec::new(),
            expires_at: None,
            info: None,
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

    /// This principal, shown with `info` in presence rooms.
    pub fn with_info(mut self, info: serde_json::Value) -> Self {
        self.info = Some(info);
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
