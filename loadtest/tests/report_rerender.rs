//! `loadtest report DIR --svg-dir SVG`, the real binary on a real messaging run's
//! report.json (the committed reliable-with-faults run): every chart of the page is
//! exported, the queue's depth included; an HTTP run gets no empty queue chart.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn committed_messaging_report() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/messaging/faults-reliable/report.json");
    let text = std::fs::read_to_string(&path).expect("the committed messaging report");
    let mut report: Value = serde_json::from_str(&text).expect("valid JSON");
    // Rendered by this build, whatever schema version the committed run was written with.
    report["schema_version"] = loadtest::report::SCHEMA_VERSION.into();
    report
}

/// Writes `report` into a fresh directory, re-renders it and returns the SVG files written.
fn rerender(report: &Value) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("report.json"), report.to_string()).unwrap();
    let svgs = dir.path().join("svg");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("report")
        .arg(dir.path())
        .arg("--svg-dir")
        .arg(&svgs)
        .output()
        .expect("run loadtest report");
    assert!(
        out.status.success(),
        "loadtest report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&svgs)
        .expect("the SVG directory")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    (dir, names)
}

#[test]
fn a_messaging_run_exports_its_queue_chart() {
    let (dir, names) = rerender(&committed_messaging_report());
    assert_eq!(
        names,
        [
            "cpu.svg",
            "latency.svg",
            "memory.svg",
            "queue.svg",
            "reconciliation.svg",
            "throughput.svg"
        ]
    );
    let queue = std::fs::read_to_string(dir.path().join("svg/queue.svg")).unwrap();
    assert!(queue.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(
        queue.contains("Queue depth (reliable delivery)"),
        "the page's chart"
    );
    assert!(
        queue.contains("broker restart"),
        "the injected restart is marked"
    );
    // The page has the same chart inline.
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(page.contains("Queue depth (reliable delivery)"));
}

#[test]
fn an_http_run_exports_no_queue_chart() {
    let mut report = committed_messaging_report();
    report["run"]["transport"] = "http".into();
    report["messaging"] = Value::Null;
    report["broker"] = Value::Null;
    report["timeline"]["queue"] = Value::Array(Vec::new());
    let (_dir, names) = rerender(&report);
    assert!(names.contains(&"throughput.svg".to_string()));
    assert!(!names.contains(&"queue.svg".to_string()), "{names:?}");
}
