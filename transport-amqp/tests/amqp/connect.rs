//! Connecting and what RabbitMQ refuses: credentials and virtual hosts in the URL, unreachable
//! and silent servers, bad URLs, TLS (`amqps://`), patterns and bad names.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{amqp, options};
use bytes::Bytes;
use sidecast_core::{Broker, BrokerError, ChannelSpec};
use sidecast_testkit::conformance::{self, within_deadline};
use sidecast_testkit::process::{SilentServer, free_port};
use sidecast_testkit::{RabbitMqServer, unique_channel};
use sidecast_transport_amqp::{AmqpBroker, AmqpOptions};
use tokio::time::Instant;

/// Connects, bounded by a generous outer time-out: these tests check *that* connect returns and
/// how, not how fast.
async fn try_connect(options: AmqpOptions) -> Result<AmqpBroker, BrokerError> {
    within_deadline("connect", AmqpBroker::connect(options)).await
}

/// The error of a connect that must fail, panicking with `why` if it succeeds.
async fn connect_error(options: AmqpOptions, why: &str) -> BrokerError {
    try_connect(options).await.expect_err(why)
}

/// The error and its sources, as a log line would show them.
fn shown(error: &BrokerError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn ctl(server: &RabbitMqServer, args: &[&str]) {
    if let Err(e) = server.ctl(args).await {
        panic!("{e}");
    }
}

#[tokio::test]
async fn credentials_and_vhost_in_the_url() {
    let server = RabbitMqServer::shared_local().await;
    // A vhost name that needs percent-encoding, and a user that is not `guest` (which RabbitMQ
    // only lets in from loopback).
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let vhost = format!("sidecast/{}", &suffix[..8]);
    let user = format!("node-{}", &suffix[..8]);
    let password = "s3cret pw:@/";
    ctl(server, &["add_vhost", &vhost]).await;
    ctl(server, &["add_user", &user, password]).await;
    ctl(
        server,
        &["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"],
    )
    .await;

    let url = server.url_with(&user, password, &vhost);
    conformance::round_trip(&amqp(options(&url))).await;

    // The same exchange name on the default vhost is another exchange: vhosts are isolated.
    let channel = unique_channel("vhost");
    let in_vhost = crate::common::connect(options(&url)).await;
    let mut sub = conformance::subscribed(&in_vhost, &channel).await;
    let on_default = crate::common::connect(options(server.url())).await;
    conformance::publish(&on_default, &channel, "other vhost").await;
    conformance::publish(&in_vhost, &channel, "same vhost").await;
    let message = conformance::next_message(&mut sub).await;
    assert_eq!(message.payload, &b"same vhost"[..], "vhosts must not leak");

    // A wrong password: refused, not transient, the fix named, the password not shown.
    let error = connect_error(
        options(&server.url_with(&user, "wrong-pw", &vhost)),
        "a wrong password must be refused",
    )
    .await;
    let text = shown(&error);
    assert!(matches!(error, BrokerError::Rejected { .. }), "{text}");
    assert!(!error.is_transient(), "{text}");
    assert!(
        text.contains("check the user and password in the URL"),
        "the error names the fix, in the transport's terms: {text}"
    );
    assert!(!text.contains("wrong-pw"), "the password leaked: {text}");

    // A vhost the user may not use, and one that does not exist.
    for other in ["/", "no-such-vhost"] {
        let error = connect_error(
            options(&server.url_with(&user, password, other)),
            "a vhost without permissions must be refused",
        )
        .await;
        let text = shown(&error);
        assert!(
            matches!(error, BrokerError::Rejected { .. }),
            "{other}: {text}"
        );
        assert!(text.contains("virtual host"), "{other}: {text}");
        assert!(!text.contains(password), "the password leaked: {text}");
    }
}

#[tokio::test]
async fn unreachable_server_is_unavailable_at_once() {
    // A port nobody listens on: bound, then released.
    let port = free_port();
    let started = Instant::now();
    let error = connect_error(
        options(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f")),
        "nothing listens there",
    )
    .await;
    assert!(
        matches!(error, BrokerError::Unavailable { .. }),
        "{}",
        shown(&error)
    );
    assert!(error.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once"
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts TCP connections and never says a word.
    let silent = SilentServer::start().await;
    let port = silent.port();
    let started = Instant::now();
    let error = connect_error(
        AmqpOptions {
            connect_timeout: Duration::from_millis(300),
            ..options(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
        },
        "a silent server must time out",
    )
    .await;
    assert!(
        matches!(error, BrokerError::Timeout { .. }),
        "{}",
        shown(&error)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn bad_urls_are_config_errors_without_the_password() {
    for url in [
        "redis://guest:hunter2@127.0.0.1:6379",
        "amqp://guest:hunter2@127.0.0.1:notaport/%2f",
        "guest:hunter2@127.0.0.1",
    ] {
        let error = try_connect(options(url)).await.expect_err(url);
        let text = shown(&error);
        assert!(matches!(error, BrokerError::Config { .. }), "{url}: {text}");
        assert!(
            text.contains("amqp://"),
            "the expected form is shown: {text}"
        );
        assert!(!text.contains("hunter2"), "the password leaked: {text}");
    }
}

#[tokio::test]
async fn patterns_and_impossible_names_are_refused_clearly() {
    let server = RabbitMqServer::shared().await;
    let broker = crate::common::connect(options(server.url())).await;
    match broker
        .subscribe(&[ChannelSpec::pattern("socket.io#/#*")])
        .await
    {
        Err(BrokerError::Unsupported { what, .. }) => {
            assert!(
                what.contains("ChannelSpec::Exact"),
                "names the alternative: {what}"
            );
        }
        other => panic!("a pattern must be Unsupported, got {other:?}"),
    }
    for name in [String::new(), "x".repeat(256)] {
        let published = broker.publish(&name, Bytes::from_static(b"x")).await;
        assert!(
            matches!(published, Err(BrokerError::Unsupported { .. })),
            "{published:?}"
        );
        let subscribed = broker.subscribe(&[ChannelSpec::exact(&name)]).await;
        assert!(matches!(subscribed, Err(BrokerError::Unsupported { .. })));
    }
    // Names RabbitMQ reserves are refused by RabbitMQ, cleanly, and the broker carries on.
    let refused = broker
        .publish("amq.sidecast", Bytes::from_static(b"x"))
        .await;
    assert!(
        matches!(refused, Err(BrokerError::Rejected { .. })),
        "{refused:?}"
    );
    conformance::round_trip(&amqp(options(server.url()))).await;
    let channel = unique_channel("after-refusal");
    conformance::publish(&broker, &channel, "still fine").await;
    assert!(broker.health().is_connected());
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// Where the child process finds the `amqps://` URL of the parent's server.
const AMQPS_URL_ENV: &str = "SIDECAST_TEST_CHILD_AMQPS_URL";

/// Runs `openssl` or panics with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl (needed to make test certificates; apt-get install openssl): {e}")
        });
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A private CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=sidecast test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// `amqps://` end to end against a RabbitMQ TLS listener whose certificate is signed by a
/// private CA. The CA is trusted through `SSL_CERT_FILE`, which is read from the process
/// environment, so the actual check runs in a child test process (see [`tls_child`]).
#[tokio::test]
async fn amqps_with_a_private_ca() {
    let certs = tempfile::tempdir().expect("temporary directory");
    make_certificates(certs.path());
    let tls_port = free_port();
    let path = |name: &str| certs.path().join(name).display().to_string();
    let server = RabbitMqServer::start_local_with_config(&[
        &format!("listeners.ssl.default = 127.0.0.1:{tls_port}"),
        &format!("ssl_options.cacertfile = {}", path("ca.pem")),
        &format!("ssl_options.certfile = {}", path("server.pem")),
        &format!("ssl_options.keyfile = {}", path("server.key")),
        "ssl_options.verify = verify_none",
        "ssl_options.fail_if_no_peer_cert = false",
    ])
    .await;
    let url = format!("amqps://guest:guest@127.0.0.1:{tls_port}/%2f");

    // Without the CA, the server's certificate is not trusted: refused, with the fix.
    let error = connect_error(
        AmqpOptions {
            connect_timeout: Duration::from_secs(10),
            ..options(&url)
        },
        "an untrusted certificate must be refused",
    )
    .await;
    let text = shown(&error);
    assert!(matches!(error, BrokerError::Rejected { .. }), "{text}");
    assert!(text.contains("SSL_CERT_FILE"), "names the fix: {text}");

    // amqps:// on the plain AMQP port: refused as a TLS problem too, not retried forever.
    let plain_port = format!("amqps://guest:guest@127.0.0.1:{}/%2f", server.port());
    let error = connect_error(options(&plain_port), "TLS to a plain port must fail").await;
    assert!(!error.is_transient(), "{}", shown(&error));

    // With the CA: the whole round trip, in a child process with SSL_CERT_FILE set.
    let exe = std::env::current_exe().expect("the test binary");
    let output = tokio::process::Command::new(exe)
        .args(["connect::tls_child", "--exact", "--ignored", "--nocapture"])
        .env("SSL_CERT_FILE", path("ca.pem"))
        .env(AMQPS_URL_ENV, &url)
        .output()
        .await
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the amqps child test failed:\n{stdout}\n{stderr}"
    );
}

/// The `amqps://` half of [`amqps_with_a_private_ca`], run by it in a child process.
#[tokio::test]
#[ignore = "run by amqps_with_a_private_ca, in a child process with SSL_CERT_FILE set"]
async fn tls_child() {
    let Ok(url) = std::env::var(AMQPS_URL_ENV) else {
        eprintln!("{AMQPS_URL_ENV} is not set: nothing to do outside amqps_with_a_private_ca");
        return;
    };
    let options = AmqpOptions {
        connect_timeout: Duration::from_secs(10),
        ..options(&url)
    };
    conformance::round_trip(&amqp(options.clone())).await;
    conformance::health_connected(&amqp(options)).await;
}
