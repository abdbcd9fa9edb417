//! `POST /api/`: validate the JSON body into an [`Envelope`], authorize the caller, apply the rate
//! limit, publish through the broker.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sidecast_core::codec::OneOrMany;
use sidecast_core::{Action, Envelope};

use crate::Sidecast;
use crate::error::ApiError;
use crate::routes::caller::Caller;

/// The body of `POST /api/`.
#[derive(Debug, Deserialize)]
struct PublishRequest {
    /// The event name.
    channel: String,
    /// The event's one argument: a string or an object.
    body: Value,
    /// A room or a list of rooms; everyone when absent.
    #[serde(default)]
    to: Option<OneOrMany>,
    /// The namespace; `/` when absent.
    #[serde(default)]
    namespace: Option<String>,
}

/// `POST /api/`: authorize, then publish through the broker. The node's own subscription delivers
/// the event, like any other node's.
pub(crate) async fn publish(
    State(state): State<Sidecast>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let started = std::time::Instant::now();
    let result = publish_inner(&state, request).await;
    let metrics = state.metrics();
    metrics
        .api_duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        metrics
            .events_published
            .get_or_create(&crate::metrics::Source { source: "api" })
            .inc();
    }
    result
}

async fn publish_inner(state: &Sidecast, request: Request) -> Result<Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    require_json(&parts.headers)?;
    let bytes = read_limited(body, state.inner.config.server.max_body_bytes).await?;
    let envelope = parse_publish(&bytes)?;
    served(state, &envelope.namespace)?;

    let action = Action::Publish {
        event: &envelope.event,
        rooms: &envelope.rooms,
    };
    let principal = Caller::of(&parts)
        .await
        .authorize(state, action, "api")
        .await?;
    if let Some(limiter) = &state.inner.limiter {
        limiter.check(&principal)?;
    }
    tracing::debug!(user = %principal, event = %envelope.event, "publish");

    state
        .inner
        .emitter
        .send(&envelope)
        .await
        .map_err(|e| match e {
            sidecast_core::EmitError::Broker(b) => ApiError::Broker(b),
            other => ApiError::schema("channel", other.to_string()),
        })?;
    Ok(Json(json!({ "status": true })))
}

/// Refuses a namespace this node does not serve (422): every node serves the same ones, so the
/// event would reach nobody.
pub(crate) fn served(state: &Sidecast, namespace: &str) -> Result<(), ApiError> {
    let namespaces = &state.inner.config.server.namespaces;
    if namespaces.iter().any(|ns| ns == namespace) {
        Ok(())
    } else {
        Err(ApiError::schema(
            "namespace",
            format!("namespace {namespace:?} is not served (server.namespaces = {namespaces:?})"),
        ))
    }
}

pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit })
}

/// Parses a request body that must be a JSON object (such as `example`) into `T`; every problem
/// names its field. `field_error` words a problem at a path (given serde's message) where the
/// request has something better to say than `field "<path>": <serde's message>`.
pub(crate) fn parse_object<T: DeserializeOwned>(
    bytes: &[u8],
    example: &str,
    field_error: impl FnOnce(&str, &str) -> Option<ApiError>,
) -> Result<T, ApiError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(ApiError::schema(
            "",
            format!("expected a JSON object such as {example}"),
        ));
    }
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing field at the parent path; name the field itself.
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.trim_end_matches('`').to_owned();
            return ApiError::schema(field.clone(), format!("missing field \"{field}\""));
        }
        field_error(&path, &inner)
            .unwrap_or_else(|| ApiError::schema(path.clone(), format!("field \"{path}\": {inner}")))
    })
}

/// Validates the JSON of `POST /api/` into an envelope; every problem names its field.
pub(crate) fn parse_publish(bytes: &[u8]) -> Result<Envelope, ApiError> {
    let request: PublishRequest = parse_object(
        bytes,
        r#"{"channel": "message", "body": "Hi"}"#,
        |path, _| {
            (path == "to").then(|| {
                ApiError::schema("to", "\"to\" must be a room name or a list of room names")
            })
        },
    )?;
    if !(request.body.is_string() || request.body.is_object()) {
        return Err(ApiError::schema(
            "body",
            "\"body\" must be a string or an object",
        ));
    }
    let mut envelope = Envelope::new(request.channel, request.body).stamped();
    envelope.rooms = request.to.map(Vec::from).unwrap_or_default();
    if envelope.rooms.iter().any(String::is_empty) {
        return Err(ApiError::schema("to", "room names must not be empty"));
    }
    sidecast_core::rooms::validate_rooms(&envelope.rooms)
        .map_err(|e| ApiError::schema("to", e.to_string()))?;
    if let Some(namespace) = request.namespace {
        envelope.namespace = namespace;
    }
    envelope.validate().map_err(|e| {
        let field = match e {
            sidecast_core::envelope::InvalidEnvelope::Namespace(_) => "namespace",
            _ => "channel",
        };
        ApiError::schema(field, e.to_string())
    })?;
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn field_of(body: &str) -> (StatusCode, String) {
        match parse_publish(body.as_bytes()) {
            Err(ApiError::Schema { field, .. }) => (StatusCode::UNPROCESSABLE_ENTITY, field),
            Err(e) => (e.status(), String::new()),
            Ok(_) => (StatusCode::OK, String::new()),
        }
    }

    #[test]
    fn publish_validation_names_the_field() {
        assert_eq!(field_of(r#"{"channel":"m","body":"x"}"#).0, StatusCode::OK);
        assert_eq!(
            field_of(r#"{"channel":"m","body":{"a":1},"to":["r"]}"#).0,
            StatusCode::OK
        );
        assert_eq!(field_of("{"), (StatusCode::BAD_REQUEST, String::new()));
        assert_eq!(field_of(r#"{"body":"x"}"#).1, "channel");
        assert_eq!(field_of(r#"{"channel":"m"}"#).1, "body");
        assert_eq!(field_of(r#"{"channel":5,"body":"x"}"#).1, "channel");
        assert_eq!(field_of(r#"{"channel":"m","body":5}"#).1, "body");
        assert_eq!(field_of(r#"{"channel":"m","body":[1]}"#).1, "body");
        assert_eq!(field_of(r#"{"channel":"m","body":null}"#).1, "body");
        assert_eq!(field_of(r#"{"channel":"","body":"x"}"#).1, "channel");
        assert_eq!(field_of(r#"{"channel":"connect","body":"x"}"#).1, "channel");
        assert_eq!(field_of(r#"{"channel":"m","body":"x","to":5}"#).1, "to");
        assert_eq!(field_of(r#"{"channel":"m","body":"x","to":[""]}"#).1, "to");
        assert_eq!(
            field_of(r#"{"channel":"m","body":"x","to":"a\nb"}"#).1,
            "to"
        );
        let too_many = serde_json::json!({"channel": "m", "body": "x", "to": vec!["r"; 101]});
        assert_eq!(field_of(&too_many.to_string()).1, "to");
        assert_eq!(
            field_of(r#"{"channel":"m","body":"x","namespace":"x"}"#).1,
            "namespace"
        );
        assert_eq!(field_of("[]").0, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
