//! The real Flask-SocketIO / python-socketio, through kombu, and `sidecast` on a real RabbitMQ:
//! the original's external script reaches a Sidecast client, and `sidecast emit --format
//! python-socketio` reaches a client of a real Flask-SocketIO server. The exchange is declared by
//! both sides (kombu and Sidecast), so these tests also prove the declarations match: RabbitMQ
//! refuses a re-declaration with other arguments.
//!
//! The Python packages come from e2e/.venv (scripts/test creates it from
//! e2e/python/requirements.txt); `SIDECAST_TEST_PYTHON` names another interpreter that has them.
//! The Redis side of the same is tested with the official JS client in e2e/test/emitters.test.js.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../web/tests/common/mod.rs"]
mod sio;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, serve, sidecast};
use serde_json::json;
use sidecast_testkit::RabbitMqServer;
use sidecast_testkit::unique_channel;
use sio::{ClientOptions, connect};

/// The Python interpreter with python-socketio, Flask-SocketIO and kombu installed.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("SIDECAST_TEST_PYTHON") {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: these tests run the real python-socketio. Run scripts/test, which \
         creates it, or: python3 -m venv e2e/.venv && e2e/.venv/bin/pip install -r \
         e2e/python/requirements.txt",
        venv.display()
    );
    venv
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../e2e/python")
        .join(name)
}

/// Runs e2e/python/emit.py (the original's `SocketIO(message_queue=url).emit(...)`).
async fn python_emit(args: Vec<String>) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script("emit.py"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "emit.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_script_through_kombu_reaches_sidecast_clients() {
    let rabbit = RabbitMqServer::shared().await;
    let exchange = unique_channel("flask-socketio");
    let ingress = format!(r#"[{{format="python-socketio", channel="{exchange}"}}]"#);
    let node = serve(
        &["--bind", "127.0.0.1:0"],
        &[
            ("SIDECAST_BROKER__KIND", "amqp"),
            ("SIDECAST_BROKER__URL", rabbit.url()),
            ("SIDECAST_BROKER__CHANNEL", &unique_channel("sidecast")),
            ("SIDECAST_BROKER__INGRESS", &ingress),
            ("SIDECAST_AUTH__POLICY", "allow-all"),
        ],
    );
    let mut client = connect(&node.socket_url(), ClientOptions::default())
        .await
        .accepted();
    let emit = |event: &str, data: &str, to: Option<&str>| {
        let mut args = vec![
            rabbit.url().to_owned(),
            event.to_owned(),
            data.to_owned(),
            "--channel".to_owned(),
            exchange.clone(),
        ];
        if let Some(room) = to {
            args.extend(["--to".to_owned(), room.to_owned()]);
        }
        python_emit(args)
    };

    // SocketIO(message_queue='amqp://…').emit('message', 'Hi'): kombu declares the exchange
    // Sidecast already declared, and publishes the JSON as text/plain.
    emit("message", r#""Hi""#, None).await;
    assert_eq!(
        client.next_event().await,
        ("message".to_owned(), vec![json!("Hi")])
    );
    // to=room: only that room (this client is in user:anonymous).
    emit("private", r#"{"n": 1}"#, Some("user:somebody")).await;
    emit("mine", r#"{"n": 2}"#, Some("user:anonymous")).await;
    emit("marker", "1", None).await;
    assert_eq!(
        client.events_until("marker").await,
        vec![("mine".to_owned(), vec![json!({"n": 2})])]
    );
    client.disconnect().await;
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecast_emit_drives_a_flask_socketio_server_on_rabbitmq() {
    let rabbit = RabbitMqServer::shared().await;
    let exchange = unique_channel("flask-socketio");
    let mut flask = Killed(
        Command::new(python())
            .arg(script("flask_server.py"))
            .args([rabbit.url(), &exchange])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = flask.0.stdout.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("listening ").map(str::to_owned))
    })
    .await
    .unwrap()
    .expect("the Flask-SocketIO server prints its URL");
    let mut client = connect(
        &format!("{base}/socket.io/?room=jobs"),
        ClientOptions::default(),
    )
    .await
    .accepted();

    // python-socketio subscribes to the queue when its first client connects, in a background
    // thread: emit until it is listening.
    let emit = |event: &str, data: &str, to: Option<&str>| {
        let mut cmd = sidecast();
        cmd.args(["emit", "--broker", "amqp", "--format", "python-socketio"])
            .args(["--channel", &exchange])
            .env("SIDECAST_BROKER__URL", rabbit.url());
        if let Some(room) = to {
            cmd.args(["--to", room]);
        }
        let output = cmd.args(["--", event, data]).output().unwrap();
        assert!(
            output.status.success(),
            "sidecast emit: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let started = Instant::now();
    loop {
        emit("probe", "x", None);
        match tokio::time::timeout(Duration::from_millis(500), client.next_event()).await {
            Ok(event) => {
                assert_eq!(event, ("probe".to_owned(), vec![json!("x")]));
                break;
            }
            Err(_) => assert!(
                started.elapsed() < DEADLINE,
                "the Flask-SocketIO client received nothing"
            ),
        }
    }
    emit("message", "Hi", Some("jobs"));
    emit("message", "not for this client", Some("other-room"));
    emit("marker", "end", None);
    let events = client.events_until("marker").await;
    // Probes sent before the server listened may arrive late; none of them is a message.
    let messages: Vec<_> = events.into_iter().filter(|(e, _)| e != "probe").collect();
    assert_eq!(messages, vec![("message".to_owned(), vec![json!("Hi")])]);
    client.disconnect().await;
}
