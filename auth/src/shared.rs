//! What several policies share: for now, the request their tests ask about.

/// A connect request to `/` with these facts, for the policies' tests.
#[cfg(test)]
pub(crate) fn connect_request<'a>(
    headers: &'a http::HeaderMap,
    user: Option<&'a str>,
    token: Option<&'a str>,
) -> sidecast_core::AuthRequest<'a> {
    sidecast_core::AuthRequest {
        action: sidecast_core::Action::Connect { namespace: "/" },
        headers,
        session_user: user,
        token,
        peer: None,
    }
}
