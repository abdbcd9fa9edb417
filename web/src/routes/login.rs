//! The demo login of the original application (`GET /login`) and `GET /logout`, which also
//! disconnects the user's sockets on every node.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use sidecast_core::codec::control;
use tower_sessions::Session;

use crate::Sidecast;
use crate::error::ApiError;
use crate::identity::session::{USER_KEY, session_user};

/// `GET /login`: the demo login of the original; puts the configured user in the session.
pub(crate) async fn login(
    State(state): State<Sidecast>,
    session: Session,
) -> Result<Json<Value>, ApiError> {
    let auth = &state.inner.config.auth;
    if !auth.demo_login {
        return Err(ApiError::Disabled(
            "the demo login is disabled (auth.demo_login = false)",
        ));
    }
    // A fresh id on login prevents session fixation with server-side stores.
    session
        .cycle_id()
        .await
        .map_err(|e| ApiError::Session(e.to_string()))?;
    session
        .insert(USER_KEY, &auth.demo_user)
        .await
        .map_err(|e| ApiError::Session(e.to_string()))?;
    Ok(Json(json!({ "name": auth.demo_user })))
}

/// `GET /logout`: ends the session and disconnects the user's sockets on every node.
pub(crate) async fn logout(
    State(state): State<Sidecast>,
    session: Session,
) -> Result<Json<Value>, ApiError> {
    let user = session_user(Some(&session)).await;
    session
        .flush()
        .await
        .map_err(|e| ApiError::Session(e.to_string()))?;
    if let Some(user) = user {
        disconnect_user(&state, &user).await?;
    }
    Ok(Json(json!({ "status": true })))
}

/// Asks every node (this one included) to disconnect the sockets of `user`, in every namespace
/// served, through the emitter's room operations: with recovery on the operation is in the
/// history, ordered with the events around it and applied by a node that resumes after an
/// outage (decision 34). Only the broker can fail here: a 503 while it is unavailable, as for
/// `POST /api/`.
async fn disconnect_user(state: &Sidecast, user: &str) -> Result<(), ApiError> {
    for namespace in &state.inner.config.server.namespaces {
        let operation = control::Control::Disconnect {
            rooms: vec![sidecast_core::auth::user_room(user)],
            namespace: namespace.clone(),
            except: Vec::new(),
            reason: None,
        };
        match state.inner.emitter.control(operation).await {
            Ok(()) => {}
            Err(sidecast_core::EmitError::Broker(e)) => return Err(ApiError::Broker(e)),
            // A user name no room can carry (every node would refuse the operation): the
            // session is gone all the same.
            Err(e) => {
                tracing::warn!(error = %e, "the logged-out user's sockets could not be addressed")
            }
        }
    }
    Ok(())
}
