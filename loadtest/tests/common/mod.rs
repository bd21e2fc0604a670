//! What the lab's integration tests share. A folder of its own, so cargo does not take it
//! for a test.
#![allow(dead_code)] // each test file uses a different subset

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Runs the `loadtest` binary with `args`, no stdin, and waits for it.
pub fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run loadtest")
}

/// A finished run as text, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The unsigned number at `pointer` in a report, or a panic naming the missing field.
pub fn u(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report:#}"))
}

/// A binary of the workspace, built by `cargo test --workspace` beside `loadtest`
/// (`target/<profile>/NAME`).
pub fn sibling_binary(name: &str) -> PathBuf {
    let loadtest = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let path = loadtest
        .parent()
        .expect("target/<profile> directory")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing; run the tests with `cargo test --workspace` from the repository root",
        path.display()
    );
    path
}

/// The network namespaces of the lab process `pid` (`rsl-PID-…`) in /run/netns.
pub fn namespaces_of(pid: u32) -> Vec<String> {
    let prefix = format!("rsl-{pid}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose command line mentions `needle` (e.g. a run's output directory).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push(cmdline);
        }
    }
    found
}
