//! `GET /healthz` (the process is alive), `GET /readyz` (started, and the broker is connected) and
//! `GET /metrics` (Prometheus).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Sidecast;

/// `GET /healthz`: the process is alive.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the node has started (decision 21) and its broker is connected.
pub(crate) async fn readyz(State(state): State<Sidecast>) -> Response {
    let health = state.inner.broker.health();
    let started = state.is_started();
    let ready = started && health.is_connected();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": match (started, ready) {
            (_, true) => "ready",
            (false, _) => "starting",
            (true, false) => "unavailable",
        },
        "broker": health.to_string(),
    });
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(state): State<Sidecast>) -> Response {
    count_rooms(&state);
    if let Some(report) = state.inner.broker.connection_report() {
        state.metrics().broker_report(&report);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// Sets the room gauges from the node's sockets: counted when scraped, not on every join.
fn count_rooms(state: &Sidecast) {
    let mut rooms = std::collections::HashSet::new();
    let mut memberships = 0_i64;
    for namespace in &state.inner.config.server.namespaces {
        let Some(op) = state.io().of(namespace) else {
            continue;
        };
        for socket in op.sockets() {
            let own = socket.id.to_string();
            for room in socket.rooms() {
                // Own-id rooms and the internal ones (recovering, with or without offsets) are
                // every socket's: they say nothing about the application's rooms.
                if room != own.as_str() && !crate::delivery::emit::is_internal_room(&room) {
                    memberships += 1;
                    rooms.insert((namespace.as_str(), room));
                }
            }
        }
    }
    let metrics = state.metrics();
    metrics
        .rooms
        .set(i64::try_from(rooms.len()).unwrap_or(i64::MAX));
    metrics.room_memberships.set(memberships);
}
