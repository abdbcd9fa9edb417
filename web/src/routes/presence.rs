//! `GET /api/presence?room=<room>[&namespace=<ns>]`: who is in a presence room, read from this
//! node's view of the cluster (no other node is asked), authorized like `POST /api/` with
//! [`Action::Presence`].

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, Request, State};
use sidecast_core::Action;
use sidecast_core::presence::RoomPresence;

use crate::Sidecast;
use crate::error::ApiError;
use crate::routes::api::served;
use crate::routes::caller::Caller;

/// `GET /api/presence`.
pub(crate) async fn read(
    State(state): State<Sidecast>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Json<RoomPresence>, ApiError> {
    let Some(presence) = &state.inner.presence else {
        return Err(ApiError::Disabled(
            "presence is off; set presence.rooms to the room patterns to track",
        ));
    };
    let Query(query) = query.map_err(|e| ApiError::schema("room", e.body_text()))?;
    let room = query.get("room").ok_or_else(|| {
        ApiError::schema(
            "room",
            "missing query parameter `room`, such as ?room=chat:1",
        )
    })?;
    sidecast_core::rooms::validate_room(room)
        .map_err(|e| ApiError::schema("room", e.to_string()))?;
    let namespace = query.get("namespace").map_or("/", String::as_str);
    served(&state, namespace)?;
    let (parts, _body) = request.into_parts();
    let principal = Caller::of(&parts)
        .await
        .authorize(&state, Action::Presence { namespace, room }, "presence")
        .await?;
    if let Some(limiter) = &state.inner.limiter {
        limiter.check(&principal)?;
    }
    // After authorization: the refusal names the configured patterns.
    if !presence.is_presence_room(room) {
        return Err(ApiError::schema(
            "room",
            format!(
                "room {room:?} is not a presence room: it matches no pattern of presence.rooms \
                 ({:?})",
                presence.config.rooms
            ),
        ));
    }
    Ok(Json(presence.room(namespace, room)))
}
