//! The RedisServer test helper itself: start, answer, stop, restart on the same port, auth.

use sidecast_testkit::RedisServer;
use tokio::net::TcpStream;

#[tokio::test]
async fn starts_stops_and_restarts_on_the_same_port() {
    let mut server = RedisServer::start_local().await;
    assert!(!server.is_external());
    let port = server.port();
    assert_ne!(port, 0);
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    assert_eq!(server.command(&["PING"]).await.expect("PING"), "+PONG");
    assert_eq!(
        server.command(&["SET", "k", "v"]).await.expect("SET"),
        "+OK"
    );

    server.stop().await;
    assert!(!server.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "a stopped server must refuse connections"
    );
    server.stop().await; // idempotent

    server.restart().await;
    assert!(server.is_running());
    assert_eq!(server.port(), port, "restart keeps the port");
    assert_eq!(server.command(&["PING"]).await.expect("PING"), "+PONG");
    // No persistence: the restarted server starts empty.
    assert_eq!(
        server.command(&["EXISTS", "k"]).await.expect("EXISTS"),
        ":0"
    );

    // restart() of a running server works too.
    server.restart().await;
    assert_eq!(server.command(&["PING"]).await.expect("PING"), "+PONG");
}

#[tokio::test]
async fn a_reserved_server_refuses_until_started_on_its_port() {
    let mut server = RedisServer::reserve_local();
    let port = server.port();
    assert!(!server.is_running());
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    // (No connect is tried to show that nothing listens: on a shared machine another process
    // may take the free port meanwhile; `is_running` above says no server of ours runs.)
    server.restart().await;
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(server.command(&["PING"]).await.expect("PING"), "+PONG");
}

#[tokio::test]
async fn requirepass_servers_take_commands_after_auth() {
    let server = RedisServer::start_local_with_args(["--requirepass", "pw"]).await;
    assert_eq!(server.command(&["PING"]).await.expect("PING"), "+PONG");
    assert_eq!(
        server.url_with_credentials(Some("u"), "pw"),
        format!("redis://u:pw@127.0.0.1:{}", server.port())
    );
}

#[tokio::test]
async fn dropping_stops_the_server() {
    let server = RedisServer::start_local().await;
    let port = server.port();
    drop(server);
    // The kill is asynchronous (SIGKILL, then the kernel closes the socket): poll briefly.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server still listening after drop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
