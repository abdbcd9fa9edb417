//! `POST /api/rooms`: validate a room operation, authorize it, publish it on the control channel;
//! every node (this one through its own subscription) applies it to its sockets.
//!
//! ```json
//! {"op": "join", "rooms": ["game:1"], "to": "user:alice"}
//! {"op": "leave", "rooms": "game:1", "to": ["user:alice", "user:bob"]}
//! {"op": "disconnect", "to": "game:1", "reason": "game over"}
//! {"op": "close_room", "rooms": "game:1"}
//! ```
//!
//! The shape and its reasons: docs/decisions/0018-room-operations.md.

use axum::Json;
use axum::extract::{Request, State};
use serde::Deserialize;
use serde_json::{Value, json};
use sidecast_core::Action;
use sidecast_core::codec::OneOrMany;
use sidecast_core::codec::control::{Control, InvalidControl};

use super::api::{parse_object, read_limited, require_json, served};
use crate::Sidecast;
use crate::error::ApiError;
use crate::routes::caller::Caller;

/// The operation of a `POST /api/rooms` request.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    Join,
    Leave,
    Disconnect,
    CloseRoom,
}

/// The body of `POST /api/rooms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomsRequest {
    /// `join`, `leave`, `disconnect` or `close_room`.
    op: Op,
    /// The rooms to join, leave or close.
    #[serde(default)]
    rooms: Option<OneOrMany>,
    /// Whose sockets: rooms, such as `user:<name>` or a socket id.
    #[serde(default)]
    to: Option<OneOrMany>,
    /// Sockets in these rooms are left out.
    #[serde(default)]
    except: Option<OneOrMany>,
    /// The namespace; `/` when absent.
    #[serde(default)]
    namespace: Option<String>,
    /// For `disconnect`: the reason the clients receive.
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/rooms`: authorize, then publish the operation through the broker; refusals are
/// counted by reason.
pub(crate) async fn apply(
    State(state): State<Sidecast>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let result = authorize_and_publish(&state, request).await;
    if let Err(e) = &result {
        state
            .inner
            .metrics
            .room_operation_refused(refusal_reason(e));
    }
    result
}

/// The `sidecast_room_operations_refused_total` reason of a refusal.
fn refusal_reason(error: &ApiError) -> &'static str {
    use axum::http::StatusCode;
    match error.status() {
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_client_error() => "invalid",
        _ => "internal",
    }
}

async fn authorize_and_publish(
    state: &Sidecast,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    require_json(&parts.headers)?;
    let bytes = read_limited(body, state.inner.config.server.max_body_bytes).await?;
    let operation = parse(&bytes)?;
    served(state, operation.namespace())?;

    let caller = Caller::of(&parts).await;
    // One decision per room, so that a policy can allow some rooms and not others; the operation
    // is published only when every one is allowed.
    let actions: Vec<Action<'_>> = match &operation {
        Control::Join {
            rooms,
            namespace,
            join,
            ..
        } => join
            .iter()
            .map(|room| Action::Join {
                namespace,
                room,
                targets: rooms,
            })
            .collect(),
        Control::Leave {
            rooms,
            namespace,
            leave,
            ..
        } => leave
            .iter()
            .map(|room| Action::Leave {
                namespace,
                room,
                targets: rooms,
            })
            .collect(),
        Control::Disconnect {
            rooms, namespace, ..
        } => vec![Action::Disconnect {
            namespace,
            targets: rooms,
        }],
        Control::CloseRoom { rooms, namespace } => rooms
            .iter()
            .map(|room| Action::CloseRoom { namespace, room })
            .collect(),
        _ => Vec::new(),
    };
    let mut principal = None;
    for action in actions {
        principal = Some(caller.authorize(state, action, "rooms").await?);
    }
    // Validation guarantees at least one room, hence one decision.
    let Some(principal) = principal else {
        return Err(ApiError::schema("op", "nothing to authorize"));
    };
    if let Some(limiter) = &state.inner.limiter {
        limiter.check(&principal)?;
    }
    tracing::debug!(user = %principal, op = operation.name(), "room operation");
    state
        .inner
        .emitter
        .control(operation)
        .await
        .map_err(|e| match e {
            sidecast_core::EmitError::Broker(b) => ApiError::Broker(b),
            other => ApiError::schema("op", other.to_string()),
        })?;
    Ok(Json(json!({ "status": true })))
}

/// Validates the JSON of `POST /api/rooms` into a control message; every problem names its
/// field.
pub(crate) fn parse(bytes: &[u8]) -> Result<Control, ApiError> {
    let request: RoomsRequest = parse_object(
        bytes,
        r#"{"op": "join", "rooms": "game:1", "to": "user:alice"}"#,
        |path, inner| {
            if let Some(rest) = inner.strip_prefix("unknown field `") {
                let field = rest.split('`').next().unwrap_or_default().to_owned();
                return Some(ApiError::schema(
                    field.clone(),
                    format!(
                        "unknown field \"{field}\"; the fields are op, rooms, to, except, namespace, reason"
                    ),
                ));
            }
            match path {
                "op" => Some(ApiError::schema(
                    "op",
                    "\"op\" must be \"join\", \"leave\", \"disconnect\" or \"close_room\"",
                )),
                "rooms" | "to" | "except" => Some(ApiError::schema(
                    path,
                    format!("\"{path}\" must be a room name or a list of room names"),
                )),
                _ => None,
            }
        },
    )?;
    let namespace = request.namespace.unwrap_or_else(|| "/".to_owned());
    let list = |rooms: Option<OneOrMany>| rooms.map(Vec::from).unwrap_or_default();
    let refuse = |field: &str, why: &str| Err(ApiError::schema(field, why.to_owned()));
    let op = request.op;
    if !matches!(op, Op::Disconnect) && request.reason.is_some() {
        return refuse("reason", "\"reason\" is for \"op\": \"disconnect\" only");
    }
    let operation = match op {
        Op::Join | Op::Leave => {
            let Some(rooms) = request.rooms else {
                return refuse(
                    "rooms",
                    "missing field \"rooms\": the rooms to join or leave",
                );
            };
            let (targets, except, rooms) =
                (list(request.to), list(request.except), Vec::from(rooms));
            if matches!(op, Op::Join) {
                Control::Join {
                    rooms: targets,
                    namespace,
                    except,
                    join: rooms,
                }
            } else {
                Control::Leave {
                    rooms: targets,
                    namespace,
                    except,
                    leave: rooms,
                }
            }
        }
        Op::Disconnect => {
            if request.rooms.is_some() {
                return refuse(
                    "rooms",
                    "a disconnect takes \"to\" (whose sockets), not \"rooms\"",
                );
            }
            let Some(to) = request.to else {
                return refuse(
                    "to",
                    "missing field \"to\": the rooms whose sockets are disconnected",
                );
            };
            Control::Disconnect {
                rooms: to.into(),
                namespace,
                except: list(request.except),
                reason: request.reason,
            }
        }
        Op::CloseRoom => {
            if request.to.is_some() || request.except.is_some() {
                return refuse(
                    "to",
                    "close_room concerns every socket in \"rooms\": no \"to\" or \"except\"",
                );
            }
            let Some(rooms) = request.rooms else {
                return refuse("rooms", "missing field \"rooms\": the rooms to close");
            };
            Control::CloseRoom {
                rooms: rooms.into(),
                namespace,
            }
        }
    };
    operation
        .validate()
        .map_err(|e| http_field(&operation, e))?;
    Ok(operation)
}

/// The HTTP field of a control message's field: `to` addresses sockets, `rooms` is what they
/// join, leave or close.
fn http_field(operation: &Control, e: InvalidControl) -> ApiError {
    let field = match (operation, e.field) {
        (Control::CloseRoom { .. }, "rooms") => "rooms",
        (_, "rooms") => "to",
        (_, "join" | "leave") => "rooms",
        (_, other) => other,
    };
    ApiError::schema(field, format!("\"{field}\": {}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        match parse(body.as_bytes()) {
            Err(ApiError::Schema { field, .. }) => field,
            Err(e) => format!("{}", e.status()),
            Ok(_) => "ok".to_owned(),
        }
    }

    #[test]
    fn room_requests_name_the_field() {
        for ok in [
            r#"{"op":"join","rooms":"game:1","to":"user:alice"}"#,
            r#"{"op":"join","rooms":["a","b"]}"#,
            r#"{"op":"leave","rooms":"a","to":["user:a"],"except":"user:b","namespace":"/"}"#,
            r#"{"op":"disconnect","to":"game:1","reason":"over"}"#,
            r#"{"op":"close_room","rooms":"game:1"}"#,
        ] {
            assert_eq!(field_of(ok), "ok", "{ok}");
        }
        let too_many = json!({
            "op": "join",
            "rooms": "r",
            "to": (0..=sidecast_core::rooms::MAX_ROOMS).map(|i| format!("u{i}")).collect::<Vec<_>>(),
        })
        .to_string();
        for (bad, field) in [
            (r#"{"rooms":"a"}"#, "op"),
            (r#"{"op":"explode","rooms":"a"}"#, "op"),
            (r#"{"op":"join"}"#, "rooms"),
            (r#"{"op":"join","rooms":[]}"#, "rooms"),
            (r#"{"op":"join","rooms":""}"#, "rooms"),
            (r#"{"op":"join","rooms":5}"#, "rooms"),
            (r#"{"op":"join","rooms":"a","to":[""]}"#, "to"),
            (r#"{"op":"join","rooms":"a","except":[1]}"#, "except"),
            (
                r#"{"op":"join","rooms":"a","namespace":"chat"}"#,
                "namespace",
            ),
            (r#"{"op":"join","rooms":"a","reason":"x"}"#, "reason"),
            (r#"{"op":"join","room":"a"}"#, "room"),
            (r#"{"op":"disconnect"}"#, "to"),
            (r#"{"op":"disconnect","to":[]}"#, "to"),
            (r#"{"op":"disconnect","to":"a","rooms":"b"}"#, "rooms"),
            (r#"{"op":"close_room","rooms":"a","to":"b"}"#, "to"),
            (too_many.as_str(), "to"),
            ("[]", ""),
        ] {
            assert_eq!(field_of(bad), field, "{bad}");
        }
        assert_eq!(field_of("{"), "400 Bad Request");
    }
}
