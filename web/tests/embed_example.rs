//! `examples/embed_in_axum.rs`: Sidecast mounted into an existing axum application, driven with a
//! real Socket.IO client.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../examples/embed_in_axum.rs"]
#[allow(dead_code, unreachable_pub)]
mod embed_in_axum;

use common::{ClientOptions, connect, memory_config, with_cookie};
use serde_json::json;
use sidecast_web::Sidecast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_own_handler_pushes_to_the_signed_in_user() {
    let sidecast = Sidecast::builder()
        .config(memory_config())
        .build()
        .await
        .unwrap();
    let app = embed_in_axum::router(&sidecast);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let http = reqwest::Client::new();
    let sign_in = |name: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let response = http
                .get(format!("{base}/signin?name={name}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            common::session_cookie(&response)
        }
    };
    let alice = sign_in("alice").await;
    let bob = sign_in("bob").await;
    let socket_url = format!("{base}/ws/socket.io/");
    let place_order = |cookie: &str| {
        http.post(format!("{base}/orders"))
            .header("cookie", cookie)
            .send()
    };
    let mut alice_socket = connect(&socket_url, with_cookie(&alice)).await.accepted();
    let mut bob_socket = connect(&socket_url, with_cookie(&bob)).await.accepted();
    connect(&socket_url, ClientOptions::default())
        .await
        .refused();

    assert_eq!(place_order(&alice).await.unwrap().status(), 201);
    assert_eq!(
        alice_socket.next_event().await,
        ("order.created".to_owned(), vec![json!({"order": 1})])
    );
    // Bob gets his own order's event, and never saw alice's.
    assert_eq!(place_order(&bob).await.unwrap().status(), 201);
    assert_eq!(
        bob_socket.next_event().await,
        ("order.created".to_owned(), vec![json!({"order": 2})])
    );

    // The app kept /healthz and left Sidecast's other routes.
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    for path in ["/", "/login"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    sidecast.shutdown().await;
}
