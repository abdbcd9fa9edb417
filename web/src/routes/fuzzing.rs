//! The parsers of untrusted input inside `sidecast-web`, exactly as the node calls them, for the
//! fuzz targets in `fuzz/` (docs/security.md, "What is fuzzed"). Hidden from the documentation:
//! not part of the API, and may change with any release.

use std::collections::HashMap;
use std::time::SystemTime;

use cookie::Cookie;
use serde_json::Value;
use sidecast_core::Envelope;
use sidecast_core::codec::control::Control;
use sidecast_core::config::{AdminConfig, SessionConfig};

pub use crate::admin::stats::decode as decode_admin_stats;
pub use crate::delivery::membership_sync::{
    Message as MembershipMessage, decode as decode_membership_message,
};
pub use crate::delivery::memberships::Membership;
pub use crate::delivery::recovery::{Dropped, Opened, Requested, open_entry, requested};
pub use crate::delivery::room_view::{RoomView, Seat};
use crate::error::ApiError;
use crate::identity::{session, session_cookie};

/// The body of `POST /api/` as an envelope to publish, or the refusal the route answers.
pub fn parse_publish(body: &[u8]) -> Result<Envelope, ApiError> {
    super::api::parse_publish(body)
}

/// The body of `POST /api/rooms` as a room operation, or the refusal the route answers.
pub fn parse_rooms(body: &[u8]) -> Result<Control, ApiError> {
    super::rooms::parse(body)
}

/// Whether `session` is an Admin UI session id that the credentials of `config` issued and that
/// is valid at `now` (the `sessionId` of an admin connect's `auth`).
pub fn admin_session_valid(config: &AdminConfig, session: &str, now: SystemTime) -> bool {
    crate::admin::login::Credentials::new(config).verify_session(session, now)
}

/// The data of the `cookie` store's session that a request's `Cookie` header carries, read as
/// the node reads it: the value unquoted (the session-cookie middleware), then the signed cookie
/// `config.cookie_name` verified with the key of `config.secret` and decoded.
pub fn session_from_cookie_header(
    header: &str,
    config: &SessionConfig,
) -> Option<HashMap<String, Value>> {
    let name = config.cookie_name.as_str();
    let header = if session_cookie::needs_unquoting(header.as_bytes(), name) {
        session_cookie::unquote_cookie(header, name)
    } else {
        header.to_owned()
    };
    let key = session::signing_key(config);
    session::record_from_cookies(std::iter::once(header.as_str()), name, &key)
        .map(|record| record.data)
}

/// The `Set-Cookie` header value the node sends for a `cookie` store session holding `data`:
/// signed with the key of `config.secret`, then its value strictly percent-encoded (the
/// session-cookie middleware).
pub fn session_set_cookie(data: &HashMap<String, Value>, config: &SessionConfig) -> String {
    let name = config.cookie_name.clone();
    let cookie = Cookie::new(name.clone(), session::encode_data(data));
    let header = session::set_cookie(cookie, &session::signing_key(config), config.secure);
    session_cookie::encode_set_cookie(&header, &name)
}
