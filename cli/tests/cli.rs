//! The `sidecast` binary: serve, emit and config as a user runs them.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{DEADLINE, run_failing, run_ok, serve, sidecast};

#[test]
fn serve_on_memory_broker_answers_and_stops_on_sigterm() {
    let mut served = serve(&["--broker", "memory", "--bind", "127.0.0.1:0"], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let health = reqwest::get(format!("{}/healthz", served.base))
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let login = reqwest::get(format!("{}/login", served.base))
            .await
            .unwrap();
        assert_eq!(login.text().await.unwrap(), r#"{"name":"Gonzalo"}"#);
    });
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(status.success(), "graceful exit, got {status}");
            break;
        }
        assert!(started.elapsed() < DEADLINE, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn flag_beats_environment_beats_file() {
    // An address that is taken: a node told to use it fails, which shows which setting won.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        format!("[server]\nbind = \"{taken}\"\n[broker]\nkind = \"memory\"\n"),
    )
    .unwrap();
    // The environment wins over the file...
    let served = serve(
        &["--config", file.to_str().unwrap()],
        &[("SIDECAST_SERVER__BIND", "127.0.0.1:0")],
    );
    assert!(!served.base.ends_with(&taken));
    drop(served);
    // ...and a flag wins over the environment.
    let stderr = run_failing(
        &[
            "--config",
            file.to_str().unwrap(),
            "serve",
            "--bind",
            &taken,
        ],
        &[("SIDECAST_SERVER__BIND", "127.0.0.1:0")],
    );
    assert!(
        stderr.contains(&format!("cannot listen on {taken}")),
        "{stderr}"
    );
}

#[test]
fn config_prints_effective_values_with_secrets_redacted() {
    let output = sidecast()
        .arg("config")
        .env(
            "SIDECAST_SESSION__SECRET",
            "a-very-long-secret-value-of-more-than-32-bytes",
        )
        .env(
            "SIDECAST_BROKER__URL",
            "redis://user:hunter2@127.0.0.1:6390",
        )
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("socketio_path = \"/ws/socket.io\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("redis://user:***@127.0.0.1:6390"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
    assert!(!stdout.contains("a-very-long-secret"));
}

#[test]
fn config_check_names_key_file_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server]\nsocketio_pth = \"/x\"\n").unwrap();
    let stderr = run_failing(
        &["config", "--check", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(stderr.contains("socketio_pth"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("docs/configuration.md"), "{stderr}");

    std::fs::write(&file, "[server]\nsocketio_path = \"/x\"\n").unwrap();
    run_ok(
        &["config", "--check", "--config", file.to_str().unwrap()],
        &[],
    );

    let stderr = run_failing(&["config", "--config", "/nonexistent/sidecast.toml"], &[]);
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn config_takes_several_amqp_urls_redacted_and_checks_each() {
    let urls = "amqp://node:hunter2@10.0.0.1:5672/%2f,amqp://node:hunter2@10.0.0.2:5672/%2f";
    let env = [
        ("SIDECAST_BROKER__KIND", "amqp"),
        ("SIDECAST_BROKER__URL", urls),
        ("SIDECAST_BROKER__URL_ORDER", "shuffle"),
    ];
    run_ok(&["config", "--check"], &env);
    let stdout = String::from_utf8(run_ok(&["config"], &env).stdout).unwrap();
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(
        stdout.contains("amqp://node:***@10.0.0.1:5672/%2f,amqp://node:***@10.0.0.2:5672/%2f"),
        "{stdout}"
    );
    assert!(stdout.contains("url_order = \"shuffle\""), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.toml");
    std::fs::write(
        &file,
        "[broker]\nkind = \"amqp\"\nurl = [\"amqp://node:hunter2@a\", \"amqp://node:hunter2@b:56x2\"]\n",
    )
    .unwrap();
    let stderr = run_failing(
        &["config", "--check", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(stderr.contains("entry 2 of 2 of `broker.url`"), "{stderr}");
    assert!(stderr.contains("port"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn config_check_refuses_a_misspelled_variable() {
    let stderr = run_failing(
        &["config", "--check"],
        &[("SIDECAST_SERVR__BIND", "0.0.0.0:80")],
    );
    assert!(stderr.contains("SIDECAST_SERVR__BIND"), "{stderr}");
    assert!(stderr.contains("SIDECAST_SERVER__BIND"), "{stderr}");
    assert!(stderr.contains("server.bind"), "{stderr}");
}

#[test]
fn config_reads_recovery_from_the_environment() {
    let output = run_ok(&["config"], &[("SIDECAST_RECOVERY__ENABLED", "false")]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let recovery = stdout
        .split("\n[recovery]\n")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .unwrap_or_else(|| panic!("no [recovery] in {stdout}"));
    assert!(recovery.contains("enabled = false"), "{stdout}");
}

#[test]
fn config_check_reads_the_auth_policies_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwt.toml");
    let pem = dir.path().join("key.pem");
    std::fs::write(
        &pem,
        "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    std::fs::write(
        &file,
        format!(
            "[auth]\npolicy = \"jwt\"\n[auth.jwt]\nalgorithms = [\"RS256\"]\npublic_key_file = {:?}\n",
            pem.display().to_string()
        ),
    )
    .unwrap();
    let stderr = run_failing(
        &["config", "--check", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(stderr.contains("auth.jwt.public_key_file"), "{stderr}");
    std::fs::write(
        &file,
        "[auth]\npolicy = [\"session\", \"jwt\"]\n[auth.jwt]\nalgorithms = [\"RS256\"]\njwks_url = \"http://127.0.0.1:9/jwks.json\"\njwks_timeout_ms = 500\n",
    )
    .unwrap();
    let stderr = run_failing(
        &["config", "--check", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(
        stderr.contains("auth.jwt.jwks_url") && stderr.contains("cannot be fetched"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "[auth]\npolicy = \"jwt\"\n[auth.jwt]\nalgorithms = [\"none\"]\n",
    )
    .unwrap();
    let stderr = run_failing(
        &["config", "--check", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(
        stderr.contains("auth.jwt.algorithms") && stderr.contains("none"),
        "{stderr}"
    );
    std::fs::write(&file, "[auth]\npolicy = \"flask-session\"\n").unwrap();
    let stderr = run_failing(
        &["config", "--check", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(
        stderr.contains("SIDECAST_AUTH__FLASK_SESSION__SECRET_KEY"),
        "{stderr}"
    );
    run_ok(
        &["config", "--check", "--config", file.to_str().unwrap()],
        &[(
            "SIDECAST_AUTH__FLASK_SESSION__SECRET_KEY",
            "your_secret_key",
        )],
    );
}

#[test]
fn emit_on_memory_broker_explains_what_to_configure() {
    let stderr = run_failing(&["emit", "message", "Hi", "--broker", "memory"], &[]);
    assert!(stderr.contains("cannot reach a server"), "{stderr}");
    assert!(stderr.contains("SIDECAST_BROKER__KIND=redis"), "{stderr}");

    let stderr = run_failing(
        &["emit", "message", "{oops", "--json", "--broker", "redis"],
        &[],
    );
    assert!(stderr.contains("not valid JSON"), "{stderr}");
}

#[test]
fn allow_all_refuses_a_public_bind_unless_allowed() {
    let stderr = run_failing(
        &["serve", "--broker", "memory", "--bind", "0.0.0.0:0"],
        &[("SIDECAST_AUTH__POLICY", "allow-all")],
    );
    assert!(stderr.contains("allow_all_public"), "{stderr}");
}

#[test]
fn config_check_reads_sentinel_addresses_and_redacts_them() {
    let good = "redis+sentinel://user:hunter2@10.0.0.1:26379,10.0.0.2:26379/0/mymaster";
    run_ok(&["config", "--check"], &[("SIDECAST_BROKER__URL", good)]);
    run_ok(
        &["config", "--check"],
        &[(
            "SIDECAST_SESSION__URL",
            "redis+sentinel://10.0.0.1/mymaster",
        )],
    );
    let output = run_ok(&["config"], &[("SIDECAST_BROKER__URL", good)]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("redis+sentinel://user:***@10.0.0.1:26379,10.0.0.2:26379/0/mymaster"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");

    for (key, env, url, says) in [
        (
            "broker.url",
            "SIDECAST_BROKER__URL",
            "redis+sentinel://user:hunter2@10.0.0.1:26379,10.0.0.2/0",
            "names a db but no service",
        ),
        (
            "broker.url",
            "SIDECAST_BROKER__URL",
            "redis+sentinel://:hunter2@10.0.0.1:x/mymaster",
            "sentinel address",
        ),
        (
            "session.url",
            "SIDECAST_SESSION__URL",
            "redis+sentinel://:hunter2@10.0.0.1/db1/mymaster",
            "not a number",
        ),
    ] {
        let stderr = run_failing(&["config", "--check"], &[(env, url)]);
        assert!(stderr.contains(&format!("`{key}`")), "{stderr}");
        assert!(stderr.contains(env), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            stderr.contains("redis+sentinel://[user:password@]host:port"),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn config_check_reads_cluster_addresses_and_redacts_them() {
    let good = "redis+cluster://user:hunter2@10.0.0.1:7000,10.0.0.2:7000,10.0.0.3";
    run_ok(&["config", "--check"], &[("SIDECAST_BROKER__URL", good)]);
    let output = run_ok(&["config"], &[("SIDECAST_BROKER__URL", good)]);
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        stdout.contains("redis+cluster://user:***@10.0.0.1:7000,10.0.0.2:7000,10.0.0.3"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");

    for (key, env, url, says) in [
        (
            "broker.url",
            "SIDECAST_BROKER__URL",
            "redis+cluster://user:hunter2@10.0.0.1:7000/2",
            "database 0 only",
        ),
        (
            "session.url",
            "SIDECAST_SESSION__URL",
            "rediss+cluster://:hunter2@10.0.0.1:x",
            "seed node address",
        ),
    ] {
        let stderr = run_failing(&["config", "--check"], &[(env, url)]);
        assert!(stderr.contains(&format!("`{key}`")), "{stderr}");
        assert!(stderr.contains(env), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            stderr.contains("redis+cluster://[user:password@]host:port"),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn admin_hash_password_makes_a_hash_that_config_takes_and_redacts() {
    use std::io::Write;
    let mut child = sidecast()
        .args(["admin", "hash-password", "--cost", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$2b$04$") && hash.len() == 60, "{hash}");

    let env = [
        ("SIDECAST_ADMIN__ENABLED", "true"),
        ("SIDECAST_ADMIN__PASSWORD_HASH", hash.as_str()),
    ];
    let output = sidecast().arg("config").envs(env).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("password_hash = \"***\""), "{stdout}");
    assert!(!stdout.contains(&hash[7..]), "{stdout}");

    // A plain password is refused, with the way to make a hash.
    let stderr = run_failing(
        &["config", "--check"],
        &[
            ("SIDECAST_ADMIN__ENABLED", "true"),
            ("SIDECAST_ADMIN__PASSWORD_HASH", "correct horse"),
        ],
    );
    assert!(
        stderr.contains("admin.password_hash") && stderr.contains("sidecast admin hash-password"),
        "{stderr}"
    );
}
