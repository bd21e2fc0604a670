//! `loadtest run` end to end: the real binary spawning the real API on loopback with a
//! tiny workload, then the report checked against the orders file and requests.csv read
//! independently here.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use common::{loadtest, sibling_binary, text, u};

fn run_spawned(out: &Path, load: &[&str], server_args: &[&str]) -> (Output, Value) {
    let api = sibling_binary("purchasing-api");
    let mut args = vec!["run"];
    args.extend_from_slice(load);
    args.extend_from_slice(&[
        "--spawn-server",
        "--server-bin",
        api.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    args.push("--");
    args.extend_from_slice(server_args);
    let output = loadtest(&args);
    let report = std::fs::read_to_string(out.join("report.json"))
        .map(|text| serde_json::from_str(&text).expect("report.json is JSON"))
        .unwrap_or(Value::Null);
    (output, report)
}

/// The item codes of requests.csv with their outcome label, read without the crate.
fn csv_outcomes(path: &Path) -> HashMap<String, String> {
    let csv = std::fs::read_to_string(path).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let code = header.iter().position(|h| *h == "item_code").unwrap();
    let outcome = header.iter().position(|h| *h == "outcome").unwrap();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[code].to_string(), f[outcome].to_string())
        })
        .collect()
}

const TINY: [&str; 4] = ["--alloc-chars", "1000", "--delay-ms", "5"];

#[test]
fn a_step_run_accounts_for_every_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (output, report) = run_spawned(
        &out,
        &[
            "--profile",
            "step",
            "--users",
            "2",
            "--step-users",
            "2",
            "--step-seconds",
            "1",
            "--max-users",
            "6",
            "--duration",
            "3",
        ],
        &TINY,
    );
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("acknowledged & persisted") && stdout.contains("step  users"),
        "{stdout}"
    );
    // What the generator cost is measured, and printed per request.
    let cpu = report["generator"]["cpu_seconds"]
        .as_f64()
        .expect("generator.cpu_seconds");
    assert!(cpu > 0.0 && cpu < 30.0, "generator CPU {cpu} s");
    assert!(stdout.contains("µs per request"), "{stdout}");

    // Every request is in the CSV, and the file holds exactly the acknowledged ones.
    let outcomes = csv_outcomes(&out.join("requests.csv"));
    let total = u(&report, "/requests/total");
    assert!(
        total > 20,
        "a 3 s run with 2–6 users sends many requests, got {total}"
    );
    assert_eq!(outcomes.len() as u64, total);
    let acknowledged = u(&report, "/requests/acknowledged");
    assert_eq!(
        acknowledged, total,
        "a healthy tiny server acknowledges everything: {report:#}"
    );
    let file = std::fs::read_to_string(out.join("PurchaseOrders.txt")).unwrap();
    let written: Vec<&str> = file
        .lines()
        .map(|l| l.strip_prefix("Purchase order for item: ").unwrap())
        .collect();
    assert_eq!(written.len() as u64, acknowledged);
    assert!(
        written
            .iter()
            .all(|code| outcomes.get(*code).map(String::as_str) == Some("acknowledged"))
    );

    assert_eq!(
        u(&report, "/reconciliation/acknowledged_persisted"),
        acknowledged
    );
    for class in [
        "lost",
        "ghost",
        "failed_absent",
        "duplicates",
        "unexpected",
        "malformed_lines",
    ] {
        assert_eq!(
            u(&report, &format!("/reconciliation/{class}")),
            0,
            "{class}"
        );
    }
    // The step table: users 2, 4, 6.
    let steps = report["steps"].as_array().unwrap();
    let users: Vec<u64> = steps.iter().map(|s| s["users"].as_u64().unwrap()).collect();
    assert_eq!(&users[..3], &[2, 4, 6]);
    assert_eq!(report["server"]["spawned"], true);
    assert_eq!(u(&report, "/server/crashes"), 0);
    assert!(u(&report, "/server/peak_memory_bytes") > 0);
    assert!(
        report["timeline"]["server"].as_array().unwrap().len() >= 8,
        "samples every 250 ms"
    );
    assert!(std::fs::metadata(out.join("report.html")).unwrap().len() > 1000);
}

#[test]
fn requests_that_time_out_but_are_written_later_are_ghosts() {
    // The server takes 1.5 s per order; the client gives up after 0.3 s. The orders are
    // still written (the blocking work is not cancelled): every one is a ghost.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (output, report) = run_spawned(
        &out,
        &[
            "--profile",
            "rate",
            "--rate",
            "4",
            "--duration",
            "1",
            "--timeout",
            "0.3",
        ],
        &["--alloc-chars", "1000", "--delay-ms", "1500"],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(u(&report, "/requests/total"), 4);
    assert_eq!(u(&report, "/requests/timed_out"), 4);
    assert_eq!(u(&report, "/reconciliation/ghost"), 4, "{report:#}");
    assert_eq!(u(&report, "/reconciliation/failed_absent"), 0);
    assert_eq!(u(&report, "/reconciliation/lost"), 0);
    assert_eq!(report["run"]["model"], "open");
}

#[test]
fn thresholds_gate_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let load = ["--profile", "rate", "--rate", "10", "--duration", "0.5"];
    let mut failing = load.to_vec();
    failing.extend_from_slice(&["--fail-on", "acknowledged>0", "--fail-on", "lost>0"]);
    let (output, report) = run_spawned(&dir.path().join("a"), &failing, &TINY);
    assert_eq!(output.status.code(), Some(99), "{}", text(&output));
    let thresholds = report["thresholds"].as_array().unwrap();
    assert_eq!(thresholds[0]["passed"], false);
    assert_eq!(thresholds[1]["passed"], true);
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAILED fail-on acknowledged>0"));

    let mut passing = load.to_vec();
    passing.extend_from_slice(&["--fail-on", "lost>0", "--fail-on", "p99>60000"]);
    let (output, _) = run_spawned(&dir.path().join("b"), &passing, &TINY);
    assert!(output.status.success(), "{}", text(&output));

    let output = loadtest(&["run", "--url", "http://127.0.0.1:9", "--fail-on", "lots>0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown metric"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_remote_server_without_a_readable_orders_file_is_not_reconciled() {
    // A server the lab did not start: nothing listens on this port, so every request is
    // refused, and without --orders-file the report must say reconciliation was impossible.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output = loadtest(&[
        "run",
        "--profile",
        "rate",
        "--rate",
        "10",
        "--duration",
        "0.3",
        "--url",
        &url,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "a completed run exits 0 even if the server failed: {}",
        text(&output)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        u(&report, "/requests/connect_errors"),
        u(&report, "/requests/total")
    );
    assert_eq!(report["reconciliation"]["available"], false);
    assert!(
        report["reconciliation"]["unavailable_reason"]
            .as_str()
            .unwrap()
            .contains("--orders-file")
    );
    assert_eq!(report["reconciliation"]["lost"], Value::Null);
    assert_eq!(report["server"]["spawned"], false);
}

#[test]
fn report_json_carries_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (output, report) = run_spawned(
        &out,
        &["--profile", "rate", "--rate", "10", "--duration", "0.5"],
        &TINY,
    );
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(report["schema_version"], 2);
    // An HTTP run says so, and has no messaging figures.
    assert_eq!(report["run"]["transport"], "http");
    assert_eq!(report["messaging"], Value::Null);
    for pointer in [
        "/requests/total",
        "/requests/acknowledged",
        "/requests/failed_status",
        "/requests/timed_out",
        "/requests/connect_errors",
        "/latency_ms/p50",
        "/latency_ms/p90",
        "/latency_ms/p99",
        "/latency_ms/max",
        "/reconciliation/acknowledged_persisted",
        "/reconciliation/lost",
        "/reconciliation/ghost",
        "/reconciliation/failed_absent",
        "/reconciliation/duplicates",
        "/reconciliation/unexpected",
        "/server/crashes",
        "/server/peak_memory_bytes",
        "/server/memory_limit_bytes",
    ] {
        assert!(report.pointer(pointer).is_some(), "{pointer} missing");
    }
    let csv = std::fs::read_to_string(out.join("requests.csv")).unwrap();
    assert!(csv.starts_with("seq,item_code,request_id,"));

    // `loadtest report` renders the page again from report.json, plus one SVG per chart.
    std::fs::remove_file(out.join("report.html")).unwrap();
    let charts = out.join("charts");
    let output = loadtest(&[
        "report",
        out.to_str().unwrap(),
        "--svg-dir",
        charts.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        std::fs::read_to_string(out.join("report.html"))
            .unwrap()
            .contains("<svg")
    );
    for chart in ["throughput", "latency", "memory", "reconciliation"] {
        let svg = std::fs::read_to_string(charts.join(format!("{chart}.svg"))).unwrap();
        assert!(
            svg.contains("xmlns=\"http://www.w3.org/2000/svg\""),
            "{chart}"
        );
    }
    let output = loadtest(&["report", dir.path().join("nothing-here").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("report.json"));
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    for (args, needle) in [
        (
            &[
                "run",
                "--profile",
                "blog",
                "--users",
                "3",
                "--url",
                "http://127.0.0.1:9",
            ][..],
            "--profile step",
        ),
        (
            &["run", "--profile", "rate", "--url", "http://127.0.0.1:9"],
            "--rate",
        ),
        (
            &[
                "run",
                "--spawn-server",
                "--server-bin",
                "/nonexistent/purchasing-api",
                "--memory",
                "lots",
            ],
            "--memory",
        ),
    ] {
        let output = loadtest(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(needle) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_confined_server_over_its_memory_limit_is_oom_killed_and_counted() {
    if !loadtest::prerequisite::cgroups() {
        return;
    }
    // 64 MiB limit, 100 MB per order: the first order kills the server.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let api = sibling_binary("purchasing-api");
    let output = loadtest(&[
        "run",
        "--profile",
        "rate",
        "--rate",
        "2",
        "--duration",
        "1",
        "--spawn-server",
        "--server-bin",
        api.to_str().unwrap(),
        "--cpus",
        "1",
        "--memory",
        "64M",
        "--out",
        out.to_str().unwrap(),
        "--",
        "--alloc-chars",
        "100000000",
        "--delay-ms",
        "100",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert!(u(&report, "/server/crashes") >= 1, "{report:#}");
    let crash = &report["server"]["crash_events"][0];
    assert_eq!(crash["oom_killed"], true, "{crash}");
    assert!(crash["cause"].as_str().unwrap().contains("OOM"));
    assert_eq!(u(&report, "/server/memory_limit_bytes"), 64 << 20);
    assert_eq!(
        report["server"]["confinement"]
            .as_str()
            .map(|c| c.starts_with("cgroup")),
        Some(true)
    );
    // Nothing was acknowledged, so nothing can be lost; what the server never wrote is absent.
    assert_eq!(u(&report, "/requests/acknowledged"), 0);
    assert_eq!(u(&report, "/reconciliation/lost"), 0);
    assert_eq!(
        u(&report, "/reconciliation/failed_absent"),
        u(&report, "/requests/total")
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("OOM-killed"));
}

#[test]
fn compare_runs_both_configurations_into_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let api = sibling_binary("purchasing-api");
    let output = loadtest(&[
        "compare",
        "--profile",
        "rate",
        "--rate",
        "20",
        "--duration",
        "1",
        "--spawn-server",
        "--server-bin",
        api.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--fail-on",
        "lost>0",
        "--",
        "--alloc-chars",
        "1000",
        "--delay-ms",
        "5",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let c: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("comparison.json")).unwrap())
            .unwrap();
    let command = |side: &str| c[side]["run"]["server_command"].to_string();
    assert!(!command("baseline").contains("--protect"));
    assert!(command("protected").contains("--protect"));
    assert_eq!(c["baseline"]["retries"]["enabled"], false);
    assert_eq!(c["protected"]["retries"]["enabled"], true);
    assert_eq!(c["protected"]["retries"]["max_attempts"], 3);
    for side in ["baseline", "protected"] {
        assert_eq!(
            u(&c[side], "/requests/acknowledged"),
            u(&c[side], "/requests/total"),
            "{side}"
        );
        assert_eq!(u(&c[side], "/reconciliation/lost"), 0);
        assert!(out.join(side).join("report.html").is_file());
    }
    // Thresholds gate the protected side only.
    assert_eq!(c["protected"]["thresholds"][0]["expression"], "lost>0");
    assert!(c["baseline"]["thresholds"].as_array().unwrap().is_empty());
    let html = std::fs::read_to_string(out.join("comparison.html")).unwrap();
    assert!(html.contains("Baseline vs protected") && html.contains("<svg"));
    assert!(String::from_utf8_lossy(&output.stdout).contains("side by side"));

    // Rendered again from comparison.json, charts as files.
    let svgs = out.join("svg");
    let output = loadtest(&[
        "report",
        out.to_str().unwrap(),
        "--svg-dir",
        svgs.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    for chart in ["goodput", "failed", "latency", "memory"] {
        assert!(
            std::fs::read_to_string(svgs.join(format!("{chart}.svg")))
                .unwrap()
                .contains("<svg")
        );
    }

    let output = loadtest(&[
        "compare",
        "--url",
        "http://127.0.0.1:9",
        "--profile",
        "rate",
        "--rate",
        "1",
        "--duration",
        "1",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
}

#[test]
fn sweep_measures_goodput_at_each_rate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let api = sibling_binary("purchasing-api");
    let output = loadtest(&[
        "sweep",
        "--rates",
        "5,10",
        "--configs",
        "protected",
        "--duration",
        "0.5",
        "--spawn-server",
        "--server-bin",
        api.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--",
        "--alloc-chars",
        "1000",
        "--delay-ms",
        "5",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    let points = s["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0]["offered_rate"], 5.0);
    assert_eq!(points[1]["config"], "protected");
    assert!(points.iter().all(|p| p["acknowledged"] == p["sent"]));
    assert!(
        std::fs::read_to_string(out.join("sweep.html"))
            .unwrap()
            .contains("Goodput against offered load")
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("measured capacity"));

    let svgs = out.join("svg");
    let output = loadtest(&[
        "report",
        out.to_str().unwrap(),
        "--svg-dir",
        svgs.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        std::fs::read_to_string(svgs.join("goodput-vs-offered.svg"))
            .unwrap()
            .contains("capacity")
    );
}
