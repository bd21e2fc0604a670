//! The `purchasing-worker` binary's command line, as a user meets it: every flag is
//! documented, bad values are one clear line and change nothing. (Also what makes
//! `cargo test --workspace` build this binary, which the end-to-end tests in the
//! repository's `tests/` run against a real broker.)

use std::process::{Command, Stdio};

fn worker(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_purchasing-worker"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run purchasing-worker")
}

#[test]
fn help_documents_every_flag() {
    let out = worker(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--amqp-url",
        "--delivery",
        "--prefetch",
        "--http-bind",
        "--orders-file",
        "--alloc-chars",
        "--delay-ms",
        "--durable",
        "--max-concurrent-fills",
        "--log",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn bad_values_are_refused_with_one_clear_line_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let orders = orders.to_str().unwrap();
    for (args, needle) in [
        (vec!["--delivery", "durable"], "faithful"),
        (vec!["--prefetch", "0"], "--prefetch"),
        (vec!["--amqp-url", "amqps://broker/%2f"], "amqps"),
        (vec!["--alloc-chars", "lots"], "--alloc-chars"),
    ] {
        let mut argv = vec!["--orders-file", orders];
        argv.extend(&args);
        let out = worker(&argv);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(
        !dir.path().join("PurchaseOrders.txt").exists(),
        "a refused start creates no orders file"
    );
}
