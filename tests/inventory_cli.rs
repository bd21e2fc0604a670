//! The inventory side against the real purchasing API: the library call the original
//! integration test made, and the `inventory` binary as a person runs it.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ApiServer, bin_path, fresh_code};
use purchasing_persistence::{ItemCode, format_line};

/// Longest any `inventory` run may take here; a hang fails the test instead of the suite.
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the `inventory` binary with `args`, killing it after [`RUN_LIMIT`]. Output goes to
/// files so a chatty run can never block on a full pipe.
fn inventory(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(bin_path("inventory"))
        .args(args)
        .env_remove("PURCHASING_API_URL")
        // A panic would print its backtrace; the tests assert there is none.
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start inventory");
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("inventory {args:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(stdout_path).unwrap(),
        stderr: std::fs::read_to_string(stderr_path).unwrap(),
    }
}

/// The orders file's bytes, or none if the server has not created it yet.
fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

fn order_codes(server: &ApiServer) -> Vec<String> {
    let file = server.orders();
    assert!(
        file.malformed.is_empty(),
        "malformed lines: {:?}",
        file.malformed
    );
    file.orders.into_iter().map(ItemCode::into_string).collect()
}

/// The original's integration test: one `StockManager` call with a new GUID places exactly
/// that order.
#[tokio::test]
async fn stock_manager_places_the_order() {
    let server = ApiServer::spawn_tiny();
    let code = fresh_code();
    let manager = inventory::StockManager::new(&server.url()).expect("valid URL");
    let result = manager.request_stock_replenishment(&code).await;
    assert!(
        result.is_ok(),
        "{result:?}; server log:\n{}",
        server.stderr()
    );
    let expected = format_line(&ItemCode::parse(code.clone()).unwrap());
    assert_eq!(String::from_utf8(server.orders_bytes()).unwrap(), expected);
    assert_eq!(expected, format!("Purchase order for item: {code}\n"));
}

#[test]
fn the_cli_places_each_order_in_turn() {
    let server = ApiServer::spawn_tiny();
    let (first, second) = (fresh_code(), fresh_code());
    let run = inventory(&["request", "--url", &server.url(), &first, &second]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout:\n{}stderr:\n{}",
        run.stdout,
        run.stderr
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].starts_with(&format!("ok      {first}  (request id ")),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with(&format!("ok      {second}  (request id ")),
        "{}",
        run.stdout
    );
    assert_eq!(order_codes(&server), [first, second]);
}

#[test]
fn a_code_the_api_refuses_is_reported_and_not_written() {
    let server = ApiServer::spawn_tiny();
    // One good order first, so "unchanged" is checked against a real file.
    let good = fresh_code();
    assert_eq!(
        inventory(&["request", "--url", &server.url(), &good]).code,
        Some(0)
    );
    let before = file_bytes(&server.orders_file);

    let run = inventory(&["request", "--url", &server.url(), "bad\tcode"]);
    assert_eq!(
        run.code,
        Some(1),
        "stdout:\n{}stderr:\n{}",
        run.stdout,
        run.stderr
    );
    let line = run.stdout.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("failed  bad\\tcode  (request id "),
        "{}",
        run.stdout
    );
    assert!(
        line.contains("the purchasing API rejected the request: 400 Bad Request"),
        "{line}"
    );
    assert!(!run.stderr.contains("not reachable"), "{}", run.stderr);
    assert_eq!(file_bytes(&server.orders_file), before);
    assert_eq!(order_codes(&server), [good]);
}

#[test]
fn an_api_that_is_not_running_is_reported_without_a_panic() {
    // A port that was bound and released: nothing listens there.
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let run = inventory(&["request", "--url", &url, &fresh_code()]);
    assert_eq!(
        run.code,
        Some(1),
        "stdout:\n{}stderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout
            .contains(&format!("could not connect to the purchasing API at {url}")),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("is not reachable"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!run.stderr.contains("stack backtrace"), "{}", run.stderr);
}

#[test]
fn help_documents_the_flags() {
    let top = inventory(&["--help"]);
    assert_eq!(top.code, Some(0), "{}", top.stderr);
    assert!(top.stdout.contains("request"), "{}", top.stdout);

    let request = inventory(&["request", "--help"]);
    assert_eq!(request.code, Some(0), "{}", request.stderr);
    for documented in [
        "--url <URL>",
        "--timeout <SECS>",
        "PURCHASING_API_URL",
        "<CODE>...",
    ] {
        assert!(
            request.stdout.contains(documented),
            "{documented} missing:\n{}",
            request.stdout
        );
    }
}

#[test]
fn a_zero_timeout_is_a_usage_error() {
    let run = inventory(&["request", "--timeout", "0", &fresh_code()]);
    assert_eq!(
        run.code,
        Some(2),
        "stdout:\n{}stderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
    assert!(run.stderr.contains("greater than 0"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing may be sent: {}", run.stdout);
}
