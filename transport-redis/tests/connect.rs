//! Connecting: credentials, ACL users, unreachable and silent servers, bad URLs, TLS wiring.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{options, redis};
use sidecast_core::{Broker, BrokerError, BrokerHealth, ChannelSpec};
use sidecast_testkit::conformance::{self, within_deadline};
use sidecast_testkit::process::{SilentServer, free_port};
use sidecast_testkit::{RedisServer, unique_channel};
use sidecast_transport_redis::{RedisBroker, RedisOptions};

/// Connects, bounded by a generous outer time-out: these tests check *that* connect returns
/// and how, not how fast.
async fn try_connect(options: RedisOptions) -> Result<RedisBroker, BrokerError> {
    within_deadline("connect", RedisBroker::connect(options)).await
}

/// The error of a connect that must fail, panicking with `why` if it succeeds.
async fn connect_error(options: RedisOptions, why: &str) -> BrokerError {
    try_connect(options).await.expect_err(why)
}

#[tokio::test]
async fn password_in_the_url() {
    let server = RedisServer::start_local_with_args(["--requirepass", "s3cret-pw"]).await;

    let url = server.url_with_credentials(None, "s3cret-pw");
    conformance::round_trip(&redis(options(&url))).await;

    let error = connect_error(
        options(&server.url_with_credentials(None, "wrong-pw")),
        "a wrong password must be refused",
    )
    .await;
    assert!(
        !error.is_transient(),
        "a wrong password is not transient: {error}"
    );
    assert!(matches!(error, BrokerError::Rejected { .. }), "{error:?}");
    let shown = format!(
        "{error}: {}",
        std::error::Error::source(&error)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        shown.contains("check the user and password in the URL"),
        "the error names the fix, in the transport's terms: {shown}"
    );
    assert!(
        !shown.contains("wrong-pw"),
        "the error must not show the password: {shown}"
    );

    let error = connect_error(options(server.url()), "a missing password must be refused").await;
    assert!(
        matches!(error, BrokerError::Rejected { .. }),
        "missing password: {error:?}"
    );
}

#[tokio::test]
async fn acl_user_in_the_url() {
    let server = RedisServer::start_local().await;
    let reply = server
        .command(&[
            "ACL", "SETUSER", "node", "on", ">node-pw", "~*", "&*", "+@all",
        ])
        .await
        .expect("ACL SETUSER");
    assert_eq!(reply, "+OK");
    let url = server.url_with_credentials(Some("node"), "node-pw");
    conformance::round_trip(&redis(options(&url))).await;

    let error = connect_error(
        options(&server.url_with_credentials(Some("node"), "nope")),
        "a wrong ACL password must be refused",
    )
    .await;
    assert!(matches!(error, BrokerError::Rejected { .. }), "{error:?}");
}

#[tokio::test]
async fn acl_denied_channel_is_rejected_not_transient() {
    let server = RedisServer::start_local().await;
    let allowed = unique_channel("acl-allowed");
    let reply = server
        .command(&[
            "ACL",
            "SETUSER",
            "narrow",
            "on",
            ">narrow-pw",
            &format!("&{allowed}"),
            "+publish",
            "+subscribe",
            "+ping",
            "+client",
        ])
        .await
        .expect("ACL SETUSER");
    assert_eq!(reply, "+OK");
    let broker = try_connect(options(
        &server.url_with_credentials(Some("narrow"), "narrow-pw"),
    ))
    .await
    .expect("connect as the narrow user");
    conformance::publish(&broker, &allowed, "fine").await;
    let error = broker
        .publish(&unique_channel("acl-denied"), Bytes::from_static(b"no"))
        .await
        .expect_err("publish on a denied channel must fail");
    assert!(matches!(error, BrokerError::Rejected { .. }), "{error:?}");
    assert!(!error.is_transient());
    let error = broker
        .subscribe(&[ChannelSpec::exact(unique_channel("acl-denied"))])
        .await
        .expect_err("subscribe to a denied channel must fail");
    assert!(matches!(error, BrokerError::Rejected { .. }), "{error:?}");
    // A refused command is not an outage.
    assert_eq!(broker.health(), BrokerHealth::Connected);
}

#[tokio::test]
async fn nothing_listening_is_a_transient_error() {
    let port = free_port();
    let error = connect_error(
        options(&format!("redis://127.0.0.1:{port}")),
        "nothing listens there",
    )
    .await;
    assert!(error.is_transient(), "{error}");
    assert!(
        matches!(error, BrokerError::Unavailable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn silent_server_hits_the_connect_timeout() {
    // Accepts TCP connections and never answers: connect must give up after connect_timeout.
    let silent = SilentServer::start().await;
    let port = silent.port();
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(300),
        ..options(&format!("redis://127.0.0.1:{port}"))
    };
    let error = connect_error(options, "a server that never answers").await;
    assert!(
        matches!(error, BrokerError::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{error:?}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn invalid_url_is_a_config_error() {
    for url in [
        "http://127.0.0.1:1",
        "redis://127.0.0.1:notaport",
        "not a url",
    ] {
        let error = connect_error(options(url), "invalid URL must be refused").await;
        assert!(
            matches!(error, BrokerError::Config { .. }),
            "{url}: {error:?}"
        );
    }
}

#[tokio::test]
async fn zero_options_are_config_errors() {
    let error = connect_error(
        RedisOptions {
            backoff_min: Duration::ZERO,
            ..RedisOptions::default()
        },
        "zero backoff",
    )
    .await;
    assert!(matches!(error, BrokerError::Config { .. }), "{error:?}");
}

#[tokio::test]
async fn rediss_to_a_plain_server_fails_cleanly() {
    // Proves the rustls wiring (a crypto provider is installed, no panic) without a TLS server:
    // the TLS handshake against a plain Redis fails, within the connect time-out.
    let server = RedisServer::start_local().await;
    let url = format!("rediss://127.0.0.1:{}", server.port());
    let options = RedisOptions {
        connect_timeout: Duration::from_secs(1),
        ..options(&url)
    };
    let error = connect_error(options, "TLS against a plain server must fail").await;
    assert!(error.is_transient(), "{error}");
}
