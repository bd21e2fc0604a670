//! The `inventory` binary without a server: usage, configuration and unreachable-API paths.
//! (The runs against the real purchasing API are in the workspace's `tests/inventory_cli.rs`.)

use std::net::TcpListener;
use std::process::{Command, Output};

fn inventory(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inventory"))
        .args(args)
        .env_remove(inventory::PURCHASING_API_URL)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run inventory")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A loopback URL where nothing listens: a port that was bound, then released.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[test]
fn the_url_can_come_from_the_environment() {
    let url = closed_url();
    let output = Command::new(env!("CARGO_BIN_EXE_inventory"))
        .args(["request", "--timeout", "5", "123"])
        .env(inventory::PURCHASING_API_URL, &url)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains(&format!("could not connect to the purchasing API at {url}")),
        "{stdout}"
    );
}

#[test]
fn every_code_is_tried_and_an_unreachable_api_gets_a_hint() {
    let url = closed_url();
    let output = inventory(&["request", "--url", &url, "--timeout", "5", "a", "b"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("failed  a  (request id "), "{stdout}");
    assert!(lines[1].starts_with("failed  b  (request id "), "{stdout}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("the purchasing API at {url} is not reachable"))
            && stderr.contains("cargo run --release -p purchasing-api"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn an_https_url_is_a_usage_error_with_the_reason() {
    let output = inventory(&["request", "--url", "https://vm", "123"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--url") && stderr.contains("without TLS"),
        "{stderr}"
    );
}

#[test]
fn codes_are_required() {
    let output = inventory(&["request"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("<CODE>..."),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn retries_are_tried_and_counted_on_the_line() {
    let url = closed_url();
    let output = inventory(&["request", "--url", &url, "--retries", "2", "a"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("failed  a  (request id "), "{stdout}");
    assert!(
        stdout.contains(", 3 attempts): could not connect to the purchasing API"),
        "{stdout}"
    );
    // Still only refused connections: the hint is still given.
    assert!(
        text(&output.stderr).contains("is not reachable"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn too_many_retries_is_a_usage_error() {
    let output = inventory(&["request", "--retries", "10", "a"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("--retries") && stderr.contains("0..=9"),
        "{stderr}"
    );
}
