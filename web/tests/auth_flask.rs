//! The `flask-session` policy with cookies made by a real Flask app (e2e/python/flask_cookies.py,
//! Flask 3.1 with the original application's SECRET_KEY): accepted sessions connect, publish and
//! join the rooms their session lists; expired, tampered, foreign-key, user-less and oversize
//! cookies are refused with the reason the client sees, and counted.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::{ClientOptions, TestServer, memory_config, python, with_cookie};
use serde_json::json;
use sidecast_core::config::{PolicyKind, PolicyList};

/// The original application's `app.config['SECRET_KEY']`.
const ORIGINAL_SECRET_KEY: &str = "your_secret_key";

async fn flask_cookies() -> HashMap<String, String> {
    let out = python::run("flask_cookies.py", vec![ORIGINAL_SECRET_KEY.to_owned()]).await;
    assert!(
        out.status.success(),
        "flask_cookies.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn flask_server() -> TestServer {
    let mut config = memory_config();
    config.auth.policy = PolicyList::One(PolicyKind::FlaskSession);
    config.auth.flask_session.secret_key = ORIGINAL_SECRET_KEY.into();
    config.auth.flask_session.rooms_key = "rooms".to_owned();
    TestServer::start(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flask_sessions_connect_and_publish() {
    let cookies = flask_cookies().await;
    let server = flask_server().await;
    for case in ["user", "compressed", "tagged"] {
        let cookie = format!("session={}", cookies[case]);
        let mut client = server.client(&cookie).await;
        server.round_trip(&cookie, &mut client, case).await;
        client.disconnect().await;
    }
    assert!(cookies["compressed"].starts_with('.'), "zlib-compressed");

    // A numeric user (as Flask-Login's ids may be) and the rooms the session lists.
    let number = format!("session={}", cookies["number"]);
    server.client(&number).await.disconnect().await;
    let alice = format!("session={}", cookies["rooms"]);
    let mut client = server.client(&alice).await;
    server
        .publish(
            &alice,
            json!({"channel": "message", "body": "to team 7", "to": "team:7"}),
        )
        .await;
    assert_eq!(
        client.next_event().await,
        ("message".to_owned(), vec![json!("to team 7")])
    );
    client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flask_cookies_are_refused_with_a_reason() {
    let cookies = flask_cookies().await;
    let server = flask_server().await;
    let user = &cookies["user"];
    let (payload, rest) = user.split_once('.').unwrap();
    // One payload character changed: {"user":"Gonzalo"} becomes {"user":"Gonzalp"}.
    assert_eq!(payload, "eyJ1c2VyIjoiR29uemFsbyJ9");
    let tampered = format!("eyJ1c2VyIjoiR29uemFscCJ9.{rest}");
    let tampered_user = format!(
        "{}.{rest}",
        base64_url(&json!({"user": "admin"}).to_string())
    );
    let cases = [
        (cookies["expired"].clone(), "expired", "expired"),
        (cookies["other_key"].clone(), "signature", "bad_signature"),
        (tampered, "signature", "bad_signature"),
        (tampered_user, "signature", "bad_signature"),
        (cookies["no_user"].clone(), "no user", "no_user"),
        (cookies["oversize"].clone(), "too large", "oversize"),
        ("garbage".to_owned(), "malformed", "malformed"),
    ];
    for (value, says, _) in &cases {
        let reason = server
            .connect(with_cookie(&format!("session={value}")))
            .await
            .refused();
        assert!(
            reason.contains("unauthorized: ") && reason.contains(says),
            "{says}: {reason}"
        );
    }
    let reason = server.connect(ClientOptions::default()).await.refused();
    assert!(reason.contains("no Flask session cookie"), "{reason}");
    // /api/ refuses the same way, with 401.
    let (status, answer) = server
        .post_api(
            Some(&format!("session={}", cookies["expired"])),
            Some("application/json"),
            json!({"channel": "message", "body": "x"}).to_string(),
        )
        .await;
    assert_eq!(status, 401, "{answer}");

    let metrics = server.get_text("/metrics").await;
    for (_, _, code) in &cases {
        let series = format!(
            "sidecast_auth_refusals_total{{policy=\"flask-session\",reason=\"{code}\",action=\"connect\"}}"
        );
        assert!(metrics.contains(&series), "{series} in\n{metrics}");
    }
    assert!(metrics.contains(
        "sidecast_auth_refusals_total{policy=\"flask-session\",reason=\"expired\",action=\"api\"} 1"
    ));
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
