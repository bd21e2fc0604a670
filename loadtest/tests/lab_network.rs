//! `loadtest run --network` end to end, as root: every host in a namespace of its own on
//! real veth pairs and a bridge, network faults as real iptables rules, every order
//! reconciled, and nothing left behind — after a run, and after Ctrl-C (SIGINT) half-way.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{namespaces_of, processes_mentioning, sibling_binary, text, u};

const TINY: [&str; 4] = ["--alloc-chars", "1000", "--delay-ms", "5"];

/// `loadtest run ARGS --network --spawn-server … -- TINY`, waited for; its PID (which
/// names its namespaces), its output and its report.
fn run_on_network(out: &Path, args: &[&str], server: &str) -> (u32, Output, Value) {
    let child = command(out, args, server)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loadtest");
    let pid = child.id();
    let output = child.wait_with_output().expect("wait for loadtest");
    let report = std::fs::read_to_string(out.join("report.json"))
        .map(|text| serde_json::from_str(&text).expect("report.json is JSON"))
        .unwrap_or(Value::Null);
    (pid, output, report)
}

fn command(out: &Path, args: &[&str], server: &str) -> Command {
    let server = sibling_binary(server);
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    command
        .arg("run")
        .args(args)
        .args(["--network", "--spawn-server", "--server-bin"])
        .arg(server)
        .arg("--out")
        .arg(out)
        .arg("--")
        .args(TINY)
        .stdin(Stdio::null());
    command
}

/// Every acknowledged order in the file, none twice.
fn assert_nothing_lost_or_repeated(report: &Value) {
    assert_eq!(u(report, "/reconciliation/lost"), 0);
    assert_eq!(u(report, "/reconciliation/duplicates"), 0);
}

/// Every host has an address on the lab network, the API's and the client's among them.
fn assert_hosts_have_addresses(report: &Value, hosts: &[&str]) {
    for name in hosts {
        let host = (report["topology"]["hosts"].as_array().unwrap().iter())
            .find(|h| h["name"] == *name)
            .unwrap_or_else(|| panic!("no host {name} in {:#}", report["topology"]));
        let address = host["address"].as_str().unwrap_or_default();
        assert!(address.starts_with("10.200.0."), "{name}: {address}");
    }
}

#[test]
fn an_rpc_run_through_a_partition_times_out_reconciles_and_leaves_nothing() {
    if !loadtest::prerequisite::network() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let load = [
        "--profile",
        "rate",
        "--rate",
        "20",
        "--duration",
        "4",
        "--timeout",
        "0.5",
        "--fault",
        "1s:partition:client/api0",
        "--fault",
        "2.5s:heal",
    ];
    let (pid, output, report) = run_on_network(&out, &load, "purchasing-api");
    assert!(output.status.success(), "{}", text(&output));
    assert_hosts_have_addresses(&report, &["api0", "client"]);
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{faults:#?}");
    assert_eq!(
        (faults[0]["action"].as_str(), faults[0]["ok"].as_bool()),
        (Some("partition"), Some(true))
    );
    assert_eq!(
        (faults[1]["action"].as_str(), faults[1]["ok"].as_bool()),
        (Some("heal"), Some(true))
    );
    // A partition is silence: timeouts, not refusals.
    assert!(
        u(&report, "/requests/timed_out") > 0,
        "{:#}",
        report["requests"]
    );
    assert_eq!(
        u(&report, "/requests/connect_errors"),
        0,
        "{:#}",
        report["requests"]
    );
    assert_nothing_lost_or_repeated(&report);
    assert!(u(&report, "/reconciliation/acknowledged_persisted") > 40);
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
    assert_eq!(
        processes_mentioning(out.to_str().unwrap()),
        Vec::<String>::new()
    );
}

#[test]
fn a_reliable_worker_cut_from_its_broker_loses_and_repeats_nothing() {
    if !loadtest::prerequisite::network() || loadtest::broker::require_installed_or_skip().is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let load = [
        "--transport",
        "amqp",
        "--spawn-broker",
        "--delivery",
        "reliable",
        "--profile",
        "rate",
        "--rate",
        "20",
        "--duration",
        "4",
        "--fault",
        "1s:partition:worker0/broker",
        "--fault",
        "3s:heal",
    ];
    let (pid, output, report) = run_on_network(&out, &load, "purchasing-worker");
    assert!(output.status.success(), "{}", text(&output));
    assert_hosts_have_addresses(&report, &["worker0", "broker0", "client"]);
    assert_eq!(
        u(&report, "/requests/acknowledged"),
        80,
        "{:#}",
        report["requests"]
    );
    assert_eq!(u(&report, "/reconciliation/acknowledged_persisted"), 80);
    assert_nothing_lost_or_repeated(&report);
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

#[test]
fn ctrl_c_half_way_leaves_no_namespace_and_no_process() {
    if !loadtest::prerequisite::network() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let load = [
        "--profile",
        "rate",
        "--rate",
        "10",
        "--duration",
        "60",
        "--fault",
        "1s:loss:client:20%",
    ];
    let mut child = command(&out, &load, "purchasing-api")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loadtest");
    let pid = child.id();
    // Wait until the loss is in place, then interrupt.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines().map_while(Result::ok) {
        seen.push(line.clone());
        if line.contains("fault at") && line.contains("loss") {
            break;
        }
    }
    assert!(
        !namespaces_of(pid).is_empty(),
        "the run had a network: {seen:#?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "loadtest did not end after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "an interrupted run fails: {status:?}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
    assert_eq!(
        processes_mentioning(out.to_str().unwrap()),
        Vec::<String>::new()
    );
}

#[test]
fn a_cluster_node_isolated_while_publishing_loses_no_confirmed_order() {
    if !loadtest::prerequisite::network() || loadtest::broker::require_installed_or_skip().is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // broker0 is the first URL of every client: isolating it makes them fail over.
    let load = [
        "--transport",
        "amqp",
        "--spawn-broker",
        "--broker-nodes",
        "3",
        "--delivery",
        "reliable",
        "--profile",
        "rate",
        "--rate",
        "20",
        "--duration",
        "8",
        "--fault",
        "2s:isolate:broker0",
        "--fault",
        "6s:heal",
    ];
    let (pid, output, report) = run_on_network(&out, &load, "purchasing-worker");
    assert!(output.status.success(), "{}", text(&output));
    assert_hosts_have_addresses(
        &report,
        &["worker0", "broker0", "broker1", "broker2", "client"],
    );
    let confirmed = u(&report, "/requests/acknowledged");
    assert!(confirmed > 80, "{:#}", report["requests"]);
    assert_eq!(
        u(&report, "/reconciliation/acknowledged_persisted"),
        confirmed,
        "{}",
        text(&output)
    );
    assert_nothing_lost_or_repeated(&report);
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}
