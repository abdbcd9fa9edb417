//! The `jwt` policy with tokens made by PyJWT (e2e/python/jwt_tokens.py): HS256/384 with a shared
//! secret, RS256/PS256/ES256/EdDSA with PEM keys and a JWKS served by a local HTTP server
//! (caching, refresh on an unknown kid at a bounded rate, stale keys while it is down); exp, nbf,
//! iss, aud; the rooms and publish claims; `none` and algorithm confusion refused; a socket is
//! disconnected when its token expires, with the reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use common::{CLOSED, ClientOptions, TestServer, memory_config, post_api_with, python, with_token};
use serde_json::{Value, json};
use sidecast_core::config::{PolicyKind, PolicyList};
use tokio::sync::Mutex;

const SECRET: &str = "a-shared-secret-for-the-jwt-tests-0123456789abcdef0123456789abcdef";

async fn material() -> Value {
    let out = python::run("jwt_tokens.py", vec![SECRET.to_owned(), "3".to_owned()]).await;
    assert!(
        out.status.success(),
        "jwt_tokens.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn token<'a>(m: &'a Value, name: &str) -> &'a str {
    m["tokens"][name].as_str().unwrap()
}

fn jwt_config() -> sidecast_core::Config {
    let mut config = memory_config();
    config.auth.policy = PolicyList::One(PolicyKind::Jwt);
    let jwt = &mut config.auth.jwt;
    jwt.issuer = "sidecast-tests".to_owned();
    jwt.audience = vec!["sidecast".to_owned()];
    jwt.leeway_secs = 0;
    jwt.rooms_claim = "rooms".to_owned();
    jwt.publish_claim = "publish".to_owned();
    config
}

async fn hs_server(algorithms: &[&str]) -> TestServer {
    let mut config = jwt_config();
    config.auth.jwt.algorithms = algorithms.iter().map(|a| (*a).to_owned()).collect();
    config.auth.jwt.secret = SECRET.into();
    TestServer::start(config).await
}

/// Connects with `token`, expecting the connect accepted, then disconnects.
async fn connects(server: &TestServer, token: &str) {
    server
        .connect(with_token(token))
        .await
        .accepted()
        .disconnect()
        .await;
}

async fn refused_with(server: &TestServer, token: &str) -> String {
    server.connect(with_token(token)).await.refused()
}

async fn publish(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    let response = post_api_with(
        &server.base,
        &[("authorization", &format!("Bearer {token}"))],
        body,
    )
    .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_tokens_connect_join_their_rooms_and_publish_as_granted() {
    let m = material().await;
    let server = hs_server(&["HS256", "HS384"]).await;
    let mut client = server
        .connect(with_token(token(&m, "hs256")))
        .await
        .accepted();
    connects(&server, token(&m, "hs384")).await;
    // The rooms claim put the socket in team:7; the publish claim allows team:*.
    let (status, answer) = publish(
        &server,
        token(&m, "hs256"),
        json!({"channel": "message", "body": "to team 7", "to": "team:7"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        client.next_event().await,
        ("message".to_owned(), vec![json!("to team 7")])
    );
    // `user:{user}` is the token's own room; everyone (no "*") and other rooms are not granted.
    let own = json!({"channel": "message", "body": "mine", "to": "user:alice"});
    assert_eq!(publish(&server, token(&m, "hs256"), own).await.0, 200);
    for body in [
        json!({"channel": "message", "body": "all"}),
        json!({"channel": "message", "body": "x", "to": "user:bob"}),
    ] {
        let (status, answer) = publish(&server, token(&m, "hs256"), body).await;
        assert_eq!(status, 403, "{answer}");
    }
    // Without the publish claim a token only connects.
    connects(&server, token(&m, "hs_connect_only")).await;
    let to_team = json!({"channel": "message", "body": "x", "to": "team:7"});
    assert_eq!(
        publish(&server, token(&m, "hs_connect_only"), to_team)
            .await
            .0,
        403
    );
    // Bearer on the handshake works as well as auth: {token}.
    let options = ClientOptions {
        headers: vec![(
            "Authorization".to_owned(),
            format!("Bearer {}", token(&m, "hs256")),
        )],
        ..Default::default()
    };
    server.connect(options).await.accepted().disconnect().await;
    client.disconnect().await;

    // A cookie can carry the token too (auth.jwt.cookie_name), for browsers.
    let mut config = jwt_config();
    config.auth.jwt.secret = SECRET.into();
    config.auth.jwt.cookie_name = "access_token".to_owned();
    let with_cookie_name = TestServer::start(config).await;
    let cookie = format!("other=1; access_token={}", token(&m, "hs256"));
    with_cookie_name
        .connect(common::with_cookie(&cookie))
        .await
        .accepted()
        .disconnect()
        .await;
    let cookie = format!("access_token={}", token(&m, "hs_expired"));
    let reason = with_cookie_name
        .connect(common::with_cookie(&cookie))
        .await
        .refused();
    assert!(reason.contains("expired"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_a_reason_and_counted() {
    let m = material().await;
    let server = hs_server(&["HS256"]).await;
    let long = "x".repeat(9000);
    let cases = [
        (
            "hs_wrong_secret",
            "signature does not verify",
            "bad_signature",
        ),
        ("hs_expired", "expired", "expired"),
        ("hs_not_yet", "not valid yet", "not_yet_valid"),
        ("hs_no_exp", "required claim", "claims"),
        ("hs_issuer", "issuer", "issuer"),
        ("hs_audience", "not meant for this server", "audience"),
        ("hs_no_user", "no user claim", "no_user"),
        ("none", "algorithm", "algorithm"),
        ("hs384", "algorithm", "algorithm"),
        ("rs256", "algorithm", "algorithm"),
        ("confused", "signature does not verify", "bad_signature"),
    ];
    for (name, says, _) in cases {
        let reason = refused_with(&server, token(&m, name)).await;
        assert!(
            reason.contains("unauthorized: ") && reason.contains(says),
            "{name}: {reason}"
        );
    }
    assert!(refused_with(&server, &long).await.contains("too large"));
    assert!(
        refused_with(&server, "not.a.jwt")
            .await
            .contains("unauthorized")
    );
    let reason = server.connect(ClientOptions::default()).await.refused();
    assert!(reason.contains("missing token"), "{reason}");
    let metrics = server.get_text("/metrics").await;
    for (_, _, code) in cases {
        let series = format!(
            "sidecast_auth_refusals_total{{policy=\"jwt\",reason=\"{code}\",action=\"connect\"}}"
        );
        assert!(metrics.contains(&series), "{series}");
    }
    let body = json!({"channel": "message", "body": "x", "to": "team:7"});
    assert_eq!(publish(&server, token(&m, "hs_expired"), body).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_from_pem_files() {
    let m = material().await;
    let dir = tempfile::tempdir().unwrap();
    for (file, algorithms, tokens) in [
        (
            "rsa",
            vec!["RS256", "PS256"],
            vec!["rs256", "ps256", "rs256_k2"],
        ),
        ("ec", vec!["ES256"], vec!["es256"]),
        ("ed", vec!["EdDSA"], vec!["eddsa"]),
    ] {
        let path = dir.path().join(format!("{file}.pem"));
        std::fs::write(&path, m["pem"][file].as_str().unwrap()).unwrap();
        let mut config = jwt_config();
        config.auth.jwt.algorithms = algorithms.iter().map(|a| (*a).to_owned()).collect();
        config.auth.jwt.public_key_file = path.display().to_string();
        let server = TestServer::start(config).await;
        for name in tokens {
            let outcome = server.connect(with_token(token(&m, name))).await;
            if name == "rs256_k2" {
                // Signed by another RSA key.
                assert!(outcome.refused().contains("signature"), "{name}");
            } else {
                outcome.accepted().disconnect().await;
            }
        }
        // HMAC tokens, alg none and the public key used as an HMAC secret are all refused.
        for name in ["hs256", "none", "confused"] {
            assert!(
                refused_with(&server, token(&m, name))
                    .await
                    .contains("algorithm"),
                "{file} {name}"
            );
        }
    }
    // A bad PEM file fails the start with the key and the fix.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let mut config = jwt_config();
    config.auth.jwt.algorithms = vec!["RS256".to_owned()];
    config.auth.jwt.public_key_file = bad.display().to_string();
    let error = sidecast_web::policy_from_config(&config)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("auth.jwt.public_key_file") && error.contains("PEM"),
        "{error}"
    );
    config.auth.jwt.public_key_file = dir.path().join("missing.pem").display().to_string();
    let error = sidecast_web::policy_from_config(&config)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("cannot be read"), "{error}");
}

/// A JWKS endpoint whose key set can change and which can be taken down; counts its requests.
#[derive(Clone)]
struct JwksEndpoint {
    keys: Arc<Mutex<Value>>,
    up: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

async fn serve_jwks(keys: Value) -> (String, JwksEndpoint) {
    let endpoint = JwksEndpoint {
        keys: Arc::new(Mutex::new(keys)),
        up: Arc::new(AtomicBool::new(true)),
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route(
            "/.well-known/jwks.json",
            get(|State(e): State<JwksEndpoint>| async move {
                e.hits.fetch_add(1, Ordering::SeqCst);
                if !e.up.load(Ordering::SeqCst) {
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                Ok(axum::Json(e.keys.lock().await.clone()))
            }),
        )
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, endpoint)
}

fn jwks_config(url: &str, refresh_secs: u64) -> sidecast_core::Config {
    let mut config = jwt_config();
    config.auth.jwt.algorithms = vec!["RS256".to_owned(), "PS256".to_owned()];
    config.auth.jwt.jwks_url = url.to_owned();
    config.auth.jwt.jwks_refresh_secs = refresh_secs;
    config.auth.jwt.jwks_min_interval_secs = 1;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_cached_refreshed_on_unknown_kid_at_a_bounded_rate_and_served_stale() {
    let m = material().await;
    let (url, endpoint) = serve_jwks(json!({"keys": [m["jwks"]["k1"]]})).await;
    let server = TestServer::start(jwks_config(&url, 2)).await;
    for name in ["rs256", "ps256", "rs256"] {
        connects(&server, token(&m, name)).await;
    }
    assert_eq!(
        endpoint.hits.load(Ordering::SeqCst),
        1,
        "fetched once, then cached"
    );

    // An unknown kid: one fetch at most per second, however many tokens come. Five connects
    // usually take well under a second; on a loaded machine they may not, so the bound is
    // checked against the time they took rather than assumed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert!(
            refused_with(&server, token(&m, "rs256_k2"))
                .await
                .contains("unknown key")
        );
    }
    let refreshes = endpoint.hits.load(Ordering::SeqCst) - 1;
    let allowed = 1 + usize::try_from(started.elapsed().as_secs()).unwrap();
    assert!(
        (1..=allowed).contains(&refreshes),
        "{refreshes} refreshes for five unknown kids in {:?} (at most one per second)",
        started.elapsed()
    );
    // The issuer rotates: k2 is published; after the interval the next token finds it.
    endpoint.keys.lock().await.as_object_mut().unwrap()["keys"] =
        json!([m["jwks"]["k1"], m["jwks"]["k2"]]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    connects(&server, token(&m, "rs256_k2")).await;

    // The endpoint goes down: past the refresh time the keys fetched before still verify.
    endpoint.up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    connects(&server, token(&m, "rs256")).await;
    assert!(
        endpoint.hits.load(Ordering::SeqCst) >= 4,
        "it tried to refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_never_fetched_is_a_retryable_refusal_and_a_503() {
    let m = material().await;
    let (url, endpoint) = serve_jwks(json!({"keys": [m["jwks"]["k1"]]})).await;
    endpoint.up.store(false, Ordering::SeqCst);
    let server = TestServer::start(jwks_config(&url, 300)).await;
    let reason = refused_with(&server, token(&m, "rs256")).await;
    assert!(reason.contains("unavailable, retry later"), "{reason}");
    let body = json!({"channel": "message", "body": "x", "to": "team:7"});
    let response = post_api_with(
        &server.base,
        &[("authorization", &format!("Bearer {}", token(&m, "rs256")))],
        body,
    )
    .await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // Back up: after the rate bound, tokens verify.
    endpoint.up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    connects(&server, token(&m, "rs256")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_disconnected_when_its_token_expires() {
    let m = material().await;
    let server = hs_server(&["HS256"]).await;
    let mut client = server
        .connect(with_token(token(&m, "hs_short")))
        .await
        .accepted();
    let (event, args) = tokio::time::timeout(Duration::from_secs(8), client.next_event())
        .await
        .unwrap();
    assert_eq!(event, "sidecast:disconnect");
    assert_eq!(args, vec![json!(sidecast_web::TOKEN_EXPIRED_REASON)]);
    let (event, _) = tokio::time::timeout(Duration::from_secs(5), client.next_event())
        .await
        .unwrap();
    assert_eq!(event, CLOSED);
    // Reconnecting with the expired token is refused.
    assert!(
        refused_with(&server, token(&m, "hs_short"))
            .await
            .contains("expired")
    );
}
