//! The request-body parsers of `POST /api/` and `POST /api/rooms`, exactly as the routes call
//! them, for the fuzz targets in `fuzz/` (docs/security.md, "What is fuzzed"). Hidden from the
//! documentation: not part of the API, and may change with any release.

use sidecast_core::Envelope;
use sidecast_core::codec::control::Control;

use crate::error::ApiError;

/// The body of `POST /api/` as an envelope to publish, or the refusal the route answers.
pub fn parse_publish(body: &[u8]) -> Result<Envelope, ApiError> {
    super::api::parse_publish(body)
}

/// The body of `POST /api/rooms` as a room operation, or the refusal the route answers.
pub fn parse_rooms(body: &[u8]) -> Result<Control, ApiError> {
    super::rooms::parse(body)
}
