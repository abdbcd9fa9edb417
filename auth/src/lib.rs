//! Sidecast's built-in auth policies: implementations of [`sidecast_core::AuthPolicy`], one
//! file each. The contract itself ([`AuthPolicy`](sidecast_core::AuthPolicy),
//! [`AuthRequest`](sidecast_core::AuthRequest), [`Action`](sidecast_core::Action),
//! [`Principal`](sidecast_core::Principal), [`AuthError`](sidecast_core::AuthError)) is in
//! `sidecast-core`; `sidecast-web` re-exports this crate as `sidecast_web::auth`.
//!
//! | `auth.policy` | policy | file |
//! |---|---|---|
//! | `"session"` | [`SessionAuth`]: the session has a user | `src/session.rs` |
//! | (`auth.session_rooms`) | [`SessionRooms`]: rooms a page joins for its own sockets | `src/session_rooms.rs` |
//! | `"token"` | [`TokenAuth`]: static bearer tokens | `src/token.rs` |
//! | `"allow-all"` | [`AllowAll`]: everybody, for development | `src/allow_all.rs` |
//! | a list | [`AnyOf`]: the first policy that accepts | `src/any_of.rs` |
//! | `"flask-session"` | [`FlaskSessionAuth`]: a Flask application's signed session cookie | `src/flask_session.rs` |
//! | `"jwt"` | [`JwtAuth`]: JSON Web Tokens, with its JWKS cache in `src/jwks.rs` | `src/jwt.rs` |
//! | `"http"` | [`HttpAuth`]: asks the application | `src/http.rs` |
//!
//! `src/shared.rs` holds what several policies share. Files depend one way: a policy may use
//! `shared` and a simpler policy (`jwt` matches rooms with [`SessionRooms`]), never the reverse.
//!
//! A new policy: a file here with its type, its `impl AuthPolicy` (name the headers it reads in
//! `connect_headers`; refuse the actions it does not know) and its unit tests, declared and
//! re-exported below and added to the table above. For `auth.policy` to name it: a
//! `PolicyKind` variant and its configuration section in `sidecast_core::config`, and its
//! branch in `sidecast_web::policy_from_config`. docs/extending.md walks through it.

pub mod allow_all;
pub mod any_of;
pub mod flask_session;
pub mod http;
mod jwks;
pub mod jwt;
pub mod session;
pub mod session_rooms;
mod shared;
pub mod token;

/// The parsers of untrusted input inside the policies, exactly as they call them, for the fuzz
/// targets in `fuzz/` (docs/security.md, "What is fuzzed"). Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::http::{Answer, read_answer};
    pub use crate::jwks::parse_keys;
}

pub use allow_all::AllowAll;
pub use any_of::AnyOf;
pub use flask_session::{
    FLASK_SESSION_POLICY, FlaskCookieError, FlaskSessionAuth, MAX_COOKIE_BYTES,
};
// `self::`: the `http` crate has the same name.
pub use self::http::{HTTP_POLICY, HttpAuth};
pub use jwt::{JWT_POLICY, JwtAuth};
pub use session::SessionAuth;
pub use session_rooms::SessionRooms;
pub use token::TokenAuth;
