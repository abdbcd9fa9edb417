//! `sidecast bench` against a real `sidecast serve` (memory broker): the JSON report adds up,
//! refusals are reported, a server that is down is a clear error, clients connect from the
//! source addresses given, and a warm-up is kept out of the measured window.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;

use common::{Served, serve, sidecast};
use serde_json::Value;

fn bench(args: &[&str]) -> (Output, Option<Value>) {
    let output = sidecast()
        .arg("bench")
        .args(args)
        .output()
        .expect("run sidecast bench");
    let report = serde_json::from_slice(&output.stdout).ok();
    (output, report)
}

fn show(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A `sidecast serve` on the memory broker, on a free port.
fn memory_node() -> Served {
    serve(&["--broker", "memory", "--bind", "127.0.0.1:0"], &[])
}

/// `sidecast bench` with clients that log in at `node`'s `/login` first, and `args`.
fn bench_logged_in(node: &Served, args: &[&str]) -> (Output, Option<Value>) {
    bench(&[&["--url", &node.base, "--login-url", "/login"], args].concat())
}

/// A memory node, and `sidecast bench --json` with clients that log in there and `args`,
/// measuring the node's process (`--server-pid`): the node, the bench's output and its report.
fn bench_measured_node(args: &[&str]) -> (Served, Output, Value) {
    let served = memory_node();
    let pid = served.child.id().to_string();
    let (output, report) =
        bench_logged_in(&served, &[args, &["--server-pid", &pid, "--json"]].concat());
    let report = report_of(&output, report);
    (served, output, report)
}

/// The JSON report of a bench that must have succeeded.
fn report_of(output: &Output, report: Option<Value>) -> Value {
    assert!(output.status.success(), "{}", show(output));
    report.unwrap_or_else(|| panic!("no JSON report\n{}", show(output)))
}

#[test]
fn every_client_receives_every_event_with_latency() {
    let (_served, output, r) = bench_measured_node(&[
        "--clients",
        "20",
        "--rate",
        "20",
        "--duration",
        "2",
        "--idle",
        "0.2",
    ]);
    assert_eq!(r["clients"]["requested"], 20, "{r:#}");
    assert_eq!(r["clients"]["connected"], 20, "{r:#}");
    assert_eq!(r["clients"]["refused"], 0);
    assert_eq!(r["messages"]["sent"], 40, "{r:#}");
    assert_eq!(r["deliveries"]["expected"], 20 * 40);
    assert_eq!(r["deliveries"]["received"], 20 * 40, "{r:#}");
    assert_eq!(r["deliveries"]["lost"], 0);
    assert_eq!(r["deliveries"]["untimed"], 0);
    for field in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            r["latency_ms"][field].as_f64().unwrap() > 0.0,
            "{field}: {r:#}"
        );
        assert!(
            r["clients"]["connect_ms"][field].is_number(),
            "{field}: {r:#}"
        );
    }
    assert_eq!(r["latency_ms"]["samples"], 20 * 40);
    assert!(r["deliveries"]["per_second"].as_f64().unwrap() > 0.0);
    let server = &r["server"];
    assert!(server["cpu_seconds"].is_number(), "{r:#}");
    assert!(server["rss_connected_kib"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["bench"]["cpu_seconds_total"].is_number());
    // The progress line goes to stderr, the report alone to stdout.
    assert!(String::from_utf8_lossy(&output.stderr).contains("deliveries"));
}

#[test]
fn refused_clients_are_reported_not_a_crash() {
    let served = memory_node();
    // No --login-url: the session policy refuses every socket.
    let (output, report) = bench(&[
        "--url",
        &served.base,
        "--clients",
        "5",
        "--duration",
        "0.5",
        "--json",
        "--quiet",
    ]);
    assert!(!output.status.success(), "{}", show(&output));
    let r = report.unwrap_or_else(|| panic!("no JSON report\n{}", show(&output)));
    assert_eq!(r["clients"]["connected"], 0, "{r:#}");
    assert_eq!(r["clients"]["refused"], 5, "{r:#}");
    assert!(
        r["clients"]["refusal"]
            .as_str()
            .unwrap()
            .starts_with("connect_error"),
        "{r:#}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("5 of 5 clients did not connect"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_server_that_is_down_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for extra in [&["--login-url", "/login"][..], &[][..]] {
        let (output, _) =
            bench(&[&["--url", &url, "--clients", "2", "--quiet"][..], extra].concat());
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("cannot connect to"), "{stderr}");
        assert!(stderr.contains("is the server running"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let (output, _) = bench(&["--url", "localhost:5000", "--quiet"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("--url"),
        "{stderr}"
    );
}

#[test]
fn floor_measures_raw_loopback_fan_out_without_a_server() {
    let (output, report) = bench(&[
        "--floor",
        "--clients",
        "30",
        "--rate",
        "20",
        "--duration",
        "1",
        "--floor-writers",
        "2",
        "--json",
    ]);
    let r = report_of(&output, report);
    let f = &r["floor"];
    assert_eq!(f["clients"], 30, "{r:#}");
    assert_eq!(f["writer_threads"], 2, "{r:#}");
    assert_eq!(f["expected"], 30 * 20, "{r:#}");
    assert_eq!(f["delivered"], 30 * 20, "{r:#}");
    assert_eq!(f["latency_ms"]["samples"], 30 * 20, "{r:#}");
    assert!(f["latency_ms"]["p99"].as_f64().unwrap() > 0.0, "{r:#}");
    for side in ["writer_cpu_us_per_delivery", "reader_cpu_us_per_delivery"] {
        assert!(f[side].as_f64().unwrap() > 0.0, "{side}: {r:#}");
    }

    let (output, _) = bench(&[
        "--floor",
        "--clients",
        "5",
        "--rate",
        "5",
        "--duration",
        "1",
    ]);
    assert!(output.status.success(), "{}", show(&output));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("deliveries             25 of 25 expected"),
        "{table}"
    );
}

#[test]
fn floor_options_need_floor() {
    let (output, _) = bench(&["--floor-writers", "2"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--floor"), "{stderr}");
}

#[test]
fn clients_connect_from_the_source_addresses_given() {
    let served = memory_node();
    let (output, report) = bench_logged_in(
        &served,
        &[
            "--clients",
            "21",
            "--source-addresses",
            "127.0.0.2,127.0.0.3",
            "--rate",
            "5",
            "--duration",
            "0.4",
            "--idle",
            "0.1",
            "--json",
            "--quiet",
        ],
    );
    let r = report_of(&output, report);
    assert_eq!(r["clients"]["connected"], 21, "{r:#}");
    assert_eq!(r["clients"]["source_addresses_chosen"], "given", "{r:#}");
    // Round robin: clients 0, 2, ..., 20 from the first address, 1, 3, ..., 19 from the second.
    let from = r["clients"]["source_addresses"].as_array().unwrap();
    let counts: Vec<(&str, u64)> = from
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap(),
                s["clients"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, vec![("127.0.0.2", 11), ("127.0.0.3", 10)], "{r:#}");
    assert_eq!(r["deliveries"]["lost"], 0, "{r:#}");

    // An address this machine does not have is an error before any client starts.
    let (output, _) = bench_logged_in(
        &served,
        &[
            "--clients",
            "2",
            "--source-addresses",
            "192.0.2.1",
            "--quiet",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("source address 192.0.2.1")
            && stderr.contains("configured on this machine"),
        "{stderr}"
    );
}

#[test]
fn a_warm_up_is_drained_and_kept_out_of_the_window() {
    let (served, _, r) = bench_measured_node(&[
        "--clients",
        "20",
        "--idle",
        "0.1",
        "--warmup",
        "41",
        "--rate",
        "10",
        "--duration",
        "1",
        "--quiet",
    ]);
    let w = &r["warmup"];
    assert_eq!(w["events"], 41, "{r:#}");
    assert_eq!(w["sent"], 41, "{r:#}");
    assert_eq!(w["expected"], 20 * 41, "{r:#}");
    assert_eq!(w["received"], w["expected"], "{r:#}");
    // Default pace: 100,000 deliveries/s over 20 clients.
    assert_eq!(w["rate_per_s"], 5000.0, "{r:#}");
    assert!(w["packets_per_client_min"].as_u64().unwrap() >= 41, "{r:#}");
    assert!(
        w["packets_per_client_p50"].as_u64().unwrap()
            >= w["packets_per_client_min"].as_u64().unwrap(),
        "{r:#}"
    );
    let server = &r["server"];
    assert!(
        server["rss_after_warmup_kib"].as_u64().unwrap() > 0,
        "{r:#}"
    );
    assert!(
        server["rss_per_connection_after_warmup_bytes"].is_number(),
        "{r:#}"
    );
    // The window counts its own 10 events per client, not the warm-up's 41.
    assert_eq!(r["messages"]["sent"], 10, "{r:#}");
    assert_eq!(r["deliveries"]["expected"], 20 * 10, "{r:#}");
    assert_eq!(r["deliveries"]["received"], 20 * 10, "{r:#}");
    assert_eq!(r["deliveries"]["extra"], 0, "{r:#}");
    assert_eq!(r["latency_ms"]["samples"], 20 * 10, "{r:#}");

    // Without a publisher there is nothing to warm up with.
    let (output, _) = bench(&["--url", &served.base, "--publish", "none", "--warmup", "41"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--warmup") && stderr.contains("--publish none"),
        "{stderr}"
    );
}
