//! The `inventory` binary without a server: usage, configuration and unreachable-API paths.
//! (The runs against the real purchasing API are in the workspace's `tests/inventory_cli.rs`,
//! those against a real broker in `tests/inventory_amqp.rs`.)

use std::net::TcpListener;
use std::process::{Command, Output};

fn inventory(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inventory"))
        .args(args)
        .env_remove(inventory::PURCHASING_API_URL)
        .env_remove(inventory::PURCHASING_AMQP_URL)
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

/// A loopback `amqp://` URL where nothing listens.
fn closed_amqp_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("amqp://guest:guest@{}/%2f", listener.local_addr().unwrap())
}

#[test]
fn help_documents_the_amqp_flags() {
    let output = inventory(&["request", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = text(&output.stdout);
    for expected in [
        "--amqp-url <URL>",
        "PURCHASING_AMQP_URL",
        "--delivery <MODE>",
        "[possible values: faithful, reliable]",
        "[default: faithful]",
        "Cannot be combined with --amqp-url",
        "Over AMQP only with --delivery reliable",
    ] {
        assert!(
            help.contains(expected),
            "{expected:?} missing from:\n{help}"
        );
    }
}

#[test]
fn the_broker_url_can_come_from_the_environment() {
    let url = closed_amqp_url();
    let output = Command::new(env!("CARGO_BIN_EXE_inventory"))
        .args(["request", "--timeout", "5", "123"])
        .env_remove(inventory::PURCHASING_API_URL)
        .env(inventory::PURCHASING_AMQP_URL, &url)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("could not connect to the RabbitMQ broker at amqp://guest:***@"),
        "{stdout}"
    );
}

#[test]
fn amqp_usage_errors_exit_with_2() {
    let url = closed_amqp_url();
    for (args, says) in [
        (
            vec!["request", "--url", "http://vm", "--amqp-url", &url, "A"],
            "cannot be used with",
        ),
        (vec!["request", "--delivery", "reliable", "A"], "--amqp-url"),
        (
            vec!["request", "--amqp-url", &url, "--retries", "1", "A"],
            "--retries needs --delivery reliable",
        ),
        (
            vec!["request", "--amqp-url", "amqps://vm", "A"],
            "without TLS",
        ),
    ] {
        let output = inventory(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            text(&output.stdout).is_empty(),
            "{args:?}: nothing was sent"
        );
    }
}
