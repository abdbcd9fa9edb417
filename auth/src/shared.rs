//! What several policies share: refusals that name their policy, reading a cookie, and the
//! user and room list of a session or a token's claims.

use std::borrow::Cow;

use http::HeaderMap;
use serde_json::Value;
use sidecast_core::{AuthError, RefusalKind};

/// The reason given for a room operation to a policy that only decides connects and publishes.
pub(crate) const ROOM_OPERATIONS_NEED_A_TOKEN: &str =
    "room operations need a service token (auth.policy with \"token\")";

/// Why a policy that only knows connects and publishes refuses `GET /api/presence`.
pub(crate) const PRESENCE_NEEDS_A_TOKEN: &str = "reading presence needs a service token (auth.policy with \"token\") or a policy that allows it";

/// The refusals of one policy: [`AuthError::Refused`] with its name, so that metrics
/// (`sidecast_auth_refusals_total{policy}`) tell the policies apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusals {
    policy: &'static str,
}

impl Refusals {
    /// The refusals of the policy named `policy` in configuration and metrics.
    pub(crate) const fn of(policy: &'static str) -> Self {
        Self { policy }
    }

    /// A refusal of `kind` with a short code and a reason safe to show to the caller.
    fn refused(
        self,
        kind: RefusalKind,
        code: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> AuthError {
        AuthError::refused(kind, self.policy, code, reason)
    }

    /// The caller is not known (401).
    pub(crate) fn unauthenticated(
        self,
        code: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> AuthError {
        self.refused(RefusalKind::Unauthenticated, code, reason)
    }

    /// The caller is known but may not do this (403).
    pub(crate) fn forbidden(
        self,
        code: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> AuthError {
        self.refused(RefusalKind::Forbidden, code, reason)
    }

    /// The policy cannot decide now; the caller should retry (503).
    pub(crate) fn unavailable(
        self,
        code: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> AuthError {
        self.refused(RefusalKind::Unavailable, code, reason)
    }
}

/// The value of the cookie `name` in the request's `Cookie` headers, without quotes.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

/// A user name held in JSON: a non-empty string, or a number (as Flask-Login's `_user_id` and
/// numeric `sub` claims may be).
pub(crate) fn user_name(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The strings of a JSON array (rooms, patterns); anything else is no strings.
pub(crate) fn string_array(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A connect request to `/` with these facts, for the policies' tests.
#[cfg(test)]
pub(crate) fn connect_request<'a>(
    headers: &'a HeaderMap,
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
