//! The Python interpreter of e2e/.venv (real python-socketio, aiohttp, requests, Flask, PyJWT)
//! and the scripts in e2e/python.

use std::path::{Path, PathBuf};
use std::process::Output;

/// The interpreter with the packages of e2e/python/requirements.txt; `SIDECAST_TEST_PYTHON`
/// names another one that has them.
pub fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("SIDECAST_TEST_PYTHON") {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: these tests run real Python libraries. Run scripts/test, which creates \
         it, or: python3 -m venv e2e/.venv && e2e/.venv/bin/pip install -r \
         e2e/python/requirements.txt",
        venv.display()
    );
    venv
}

/// The path of e2e/python/`name`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../e2e/python")
        .join(name)
}

/// Runs e2e/python/`name` with `args` off the async runtime; its output.
pub async fn run(name: &str, args: Vec<String>) -> Output {
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(script(&name))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}
