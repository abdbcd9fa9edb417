//! Adding Sidecast to an existing axum application.
//!
//! The application has its own state, routes and login (`/signin?name=alice`), and a handler
//! (`POST /orders`) that pushes an event to the signed-in user's browsers through Sidecast's
//! `Emitter`. From Sidecast it takes the Socket.IO server, the session layer and the health routes;
//! it leaves Sidecast's demo page, `/login` and `/api/`.
//!
//! Run: `cargo run -p sidecast-web --example embed_in_axum` (memory broker, port 5000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sidecast_core::auth::user_room;
use sidecast_core::config::BrokerKind;
use sidecast_core::{Config, Emitter};
use sidecast_web::Sidecast;
use sidecast_web::session::USER_KEY;
use tower_sessions::Session;

/// The application's own state.
#[derive(Clone)]
pub struct Shop {
    /// Sidecast's emitter: publishes through the broker, so every node's sockets get the event.
    pub events: Emitter,
    /// The last order number.
    pub orders: Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct SignIn {
    name: String,
}

/// The application's login: stores the user where Sidecast's `session` policy looks for it.
async fn sign_in(session: Session, Query(q): Query<SignIn>) -> impl IntoResponse {
    match session.insert(USER_KEY, &q.name).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "signed_in": q.name }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": e.to_string() })),
        ),
    }
}

/// The application's own handler, pushing an event to the user who placed the order.
async fn place_order(State(shop): State<Shop>, session: Session) -> impl IntoResponse {
    let Ok(Some(user)) = session.get::<String>(USER_KEY).await else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "sign in" })),
        );
    };
    let order = shop.orders.fetch_add(1, Ordering::Relaxed) + 1;
    let pushed = shop
        .events
        .to(user_room(&user))
        .emit("order.created", json!({ "order": order }))
        .await;
    match pushed {
        Ok(()) => (StatusCode::CREATED, Json(json!({ "order": order }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": e.to_string() })),
        ),
    }
}

/// The application's router with Sidecast mounted into it.
pub fn router(sidecast: &Sidecast) -> Router {
    let shop = Shop {
        events: sidecast.emitter().clone(),
        orders: Arc::new(AtomicU64::new(0)),
    };
    let own = Router::new()
        .route("/signin", get(sign_in))
        .route("/orders", post(place_order))
        .with_state(shop);
    // Of Sidecast's HTTP routes, take only /healthz, /readyz and /metrics.
    let app = own.merge(sidecast.health_routes());
    // The session layer must wrap the Socket.IO layer: socket handshakes read the session.
    sidecast.sessions(sidecast.socketio(app))
}

#[allow(dead_code)] // The tests mount `router` without running `main`.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::default();
    config.broker.kind = BrokerKind::Memory;
    let sidecast = Sidecast::builder().config(config).build().await?;
    let app = router(&sidecast);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
    // Events are small frames that should leave at once (no Nagle delay).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    println!("listening on http://127.0.0.1:5000/ (GET /signin?name=alice, POST /orders)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    sidecast.shutdown().await;
    Ok(())
}
