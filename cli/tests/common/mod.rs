//! Running the `sidecast` binary in tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long any awaited condition may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The `sidecast` binary, isolated from the developer's configuration.
pub fn sidecast() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecast"));
    // Tests must not pick up a developer's sidecast.toml or SIDECAST_* settings.
    cmd.current_dir(std::env::temp_dir());
    for (key, _) in std::env::vars() {
        if key.starts_with("SIDECAST_") && !key.starts_with("SIDECAST_TEST_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// A `sidecast serve` process; killed on drop, its log printed when the test failed.
pub struct Served {
    pub child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// The Socket.IO URL of this node (default path).
    pub fn socket_url(&self) -> String {
        format!("{}/ws/socket.io/", self.base)
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of node {} ---", self.base);
            for line in self.log.lock().unwrap().iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// Starts `sidecast serve` with extra arguments and waits for its "listening" line.
pub fn serve(args: &[&str], envs: &[(&str, &str)]) -> Served {
    let mut child = sidecast()
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // The "listening" line names the HTTP address (other lines may carry other URLs).
            if let Some(rest) = line.split(" listening url=").nth(1) {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches('/');
                let _ = tx.send(url.to_owned());
            }
            sink.lock().unwrap().push(line);
        }
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(base) => Served { child, base, log },
        Err(_) => {
            let _ = child.kill();
            panic!(
                "sidecast serve did not log its URL; log:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
    }
}

/// Runs `sidecast args...` with `envs` to completion, failing the test (with its stderr) unless
/// it succeeded.
pub fn run_ok(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let output = sidecast()
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "sidecast {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `sidecast args...` with `envs`, expecting it to fail; returns its stderr.
pub fn run_failing(args: &[&str], envs: &[(&str, &str)]) -> String {
    let output = sidecast()
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success(), "sidecast {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
