//! What an HTTP request or a Socket.IO handshake says about its caller besides the session: a
//! bearer token and the peer address.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The peer address recorded by `into_make_service_with_connect_info`, when served that way.
pub(crate) fn peer_addr(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}
