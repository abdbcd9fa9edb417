//! Who the caller is, on the HTTP side: the session layer (`session`: signed cookies, memory or
//! Redis, `redis_sessions`; `session_cookie`: cookie values every client passes back), what a
//! request says besides the session (`request`: bearer token, peer address), the same-origin
//! check (`origin`) and `POST /api/`'s rate limit (`rate_limit`).
//!
//! Imports: nothing outside this folder but `error` and `metrics`; `node`, `delivery` and
//! `routes` use it.

pub(crate) mod origin;
pub(crate) mod rate_limit;
#[cfg(feature = "redis")]
pub(crate) mod redis_sessions;
pub(crate) mod request;
pub mod session;
pub(crate) mod session_cookie;
