//! The fault plan end to end: `loadtest run --fault …` against the real API it spawns,
//! each fault seen from the client's side (timeouts while paused, refused connections
//! while stopped), recorded in report.json's `faults[]`, and every order reconciled. And
//! a plan the run cannot carry out is a usage error before anything starts.

mod common;

use serde_json::Value;

use common::{loadtest, sibling_binary, text, u};

#[test]
fn pause_resume_stop_and_start_are_injected_recorded_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let api = sibling_binary("purchasing-api");
    let plan = dir.path().join("faults.toml");
    std::fs::write(
        &plan,
        "[[fault]]\nat = \"2.2s\"\naction = \"start\"\ntarget = \"api0\"\n",
    )
    .unwrap();
    let output = loadtest(&[
        "run",
        "--profile",
        "rate",
        "--rate",
        "20",
        "--duration",
        "3",
        "--timeout",
        "0.5",
        "--fault",
        "0.5s:pause:api0",
        "--fault",
        "1.2:resume:api0",
        "--fault",
        "1.8s:stop:api0",
        "--faults",
        plan.to_str().unwrap(),
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
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();

    // The plan, as it happened: in order, each carried out, each with its line.
    let faults = report["faults"].as_array().expect("faults[]");
    let done: Vec<(&str, &str, bool)> = faults
        .iter()
        .map(|f| {
            (
                f["action"].as_str().unwrap(),
                f["target"].as_str().unwrap(),
                f["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        done,
        [
            ("pause", "api0", true),
            ("resume", "api0", true),
            ("stop", "api0", true),
            ("start", "api0", true)
        ],
        "{faults:#?}"
    );
    let at: Vec<f64> = faults.iter().map(|f| f["at_s"].as_f64().unwrap()).collect();
    for (got, want) in at.iter().zip([0.5, 1.2, 1.8, 2.2]) {
        assert!(
            (want..want + 0.3).contains(got),
            "at {got} s, planned {want} s"
        );
    }
    assert!(
        faults
            .iter()
            .all(|f| !f["detail"].as_str().unwrap().is_empty())
    );

    // The client saw each: timeouts while the server was frozen, refused connections
    // while it was down; a clean stop is no crash, and the start is a restart.
    assert!(
        u(&report, "/requests/timed_out") >= 1,
        "{:#}",
        report["requests"]
    );
    assert!(
        u(&report, "/requests/connect_errors") >= 1,
        "{:#}",
        report["requests"]
    );
    assert!(u(&report, "/requests/acknowledged") >= 20);
    assert_eq!(u(&report, "/server/crashes"), 0);
    assert_eq!(u(&report, "/server/restarts"), 1);
    assert_eq!(
        u(&report, "/reconciliation/lost"),
        0,
        "{:#}",
        report["reconciliation"]
    );
    assert_eq!(u(&report, "/reconciliation/duplicates"), 0);

    // The topology: the API node the lab started, and the lab's own side.
    let hosts = report["topology"]["hosts"]
        .as_array()
        .expect("topology.hosts[]");
    let names: Vec<&str> = hosts.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api0", "client"]);
    assert_eq!(hosts[0]["role"], "api");
    assert_eq!(hosts[0]["spawned"], true);
    assert_eq!(hosts[1]["role"], "client");
    // The markers are drawn on the charts.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("pause api0") && html.contains("start api0"));
}

#[test]
fn a_plan_the_run_cannot_carry_out_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let api = sibling_binary("purchasing-api");
    let spawned = |fault: &str| {
        loadtest(&[
            "run",
            "--profile",
            "rate",
            "--rate",
            "5",
            "--duration",
            "1",
            "--fault",
            fault,
            "--spawn-server",
            "--server-bin",
            api.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    // A server the lab does not start (nothing listens there: the run never gets that far).
    let remote = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--profile",
            "rate",
            "--rate",
            "5",
            "--duration",
            "1",
            "--url",
            "http://127.0.0.1:9",
        ];
        args.extend_from_slice(extra);
        loadtest(&args)
    };
    for (output, says) in [
        (
            spawned("1s:kill:worker0"),
            "--fault 1s:kill:worker0: this run has no host 'worker0'; its hosts are api0, client",
        ),
        (spawned("1s:pause:client"), "the client is the lab itself"),
        (spawned("1s:zap:api0"), "unknown action 'zap'"),
        (spawned("every=0:kill:api0"), "too often"),
        (
            remote(&["--fault", "1s:kill:api0"]),
            "the lab did not start api0",
        ),
        (
            remote(&["--faults", "/nonexistent/faults.toml"]),
            "--faults: cannot read /nonexistent/faults.toml",
        ),
    ] {
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(says) && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    assert!(!out.exists(), "nothing was started or written");
}
