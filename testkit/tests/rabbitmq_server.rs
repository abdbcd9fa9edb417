//! The RabbitMqServer test helper itself: start, answer, administer, stop, kill, restart on the
//! same ports, and no process left behind.
#![cfg(unix)]

use std::time::Duration;

use sidecast_testkit::RabbitMqServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

/// Whether the server answers the AMQP protocol header with a method frame.
async fn answers_amqp(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"AMQP\x00\x00\x09\x01").await.is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    matches!(stream.read(&mut first).await, Ok(1)) && first[0] == 1
}

async fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

/// The live processes with `needle` on their command line (the server's private directory,
/// which the Erlang VM gets as `-home`).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Zombies (state Z) hold no port and no file; the container's init may not reap them.
        let state = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z'));
        if state != Some(false) {
            continue;
        }
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    found
}

#[tokio::test]
async fn starts_administers_stops_and_restarts_on_the_same_ports() {
    let mut server = RabbitMqServer::start_local().await;
    assert!(!server.is_external());
    let port = server.port();
    assert_ne!(port, 5672, "never the machine's default port");
    assert_eq!(
        server.url(),
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
    );
    assert!(answers_amqp(port).await);

    server
        .ctl(&["add_vhost", "helper-vhost"])
        .await
        .expect("add_vhost");
    let vhosts = server.ctl(&["list_vhosts"]).await.expect("list_vhosts");
    assert!(vhosts.contains("helper-vhost"), "{vhosts}");
    assert_eq!(
        server.url_with("u@x", "p:w", "/"),
        format!("amqp://u%40x:p%3Aw@127.0.0.1:{port}/%2F")
    );

    let started = Instant::now();
    server.stop().await;
    eprintln!("orderly stop took {:?}", started.elapsed());
    assert!(!server.is_running());
    assert!(
        refuses(port).await,
        "a stopped server must refuse connections"
    );
    server.stop().await; // idempotent

    let started = Instant::now();
    server.restart().await;
    eprintln!("start after stop took {:?}", started.elapsed());
    assert!(server.is_running());
    assert_eq!(server.port(), port, "restart keeps the port");
    assert!(answers_amqp(port).await);
    // Same data directory: what was created before the restart is still there.
    let vhosts = server.ctl(&["list_vhosts"]).await.expect("list_vhosts");
    assert!(vhosts.contains("helper-vhost"), "{vhosts}");

    // Paused: TCP still connects (the kernel answers), RabbitMQ does not.
    server.pause();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), answers_amqp(port))
            .await
            .is_err(),
        "a paused server must not answer"
    );
    server.resume();
    assert!(answers_amqp(port).await, "answers again once resumed");

    server.kill().await;
    assert!(
        refuses(port).await,
        "a killed server must refuse connections"
    );
    server.restart().await;
    assert!(answers_amqp(port).await, "restart after a crash");
}

#[tokio::test]
async fn dropping_ends_every_process() {
    let server = RabbitMqServer::start_local().await;
    let port = server.port();
    assert!(server.node_name().is_some());
    let dir = server
        .dir()
        .expect("a local server has a directory")
        .to_owned();
    let needle = dir.to_string_lossy().into_owned();
    assert!(!processes_with(&needle).is_empty(), "the node runs");
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(&needle);
        if left.is_empty() && refuses(port).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left after drop: {left:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
    assert!(!dir.exists(), "the data directory is removed");
}

#[tokio::test]
async fn the_shared_server_is_started_once() {
    let first = RabbitMqServer::shared().await;
    let second = RabbitMqServer::shared().await;
    assert!(std::ptr::eq(first, second));
    assert!(answers_amqp(first.port()).await);
}
