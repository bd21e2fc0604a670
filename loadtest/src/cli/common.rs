//! What the commands share: the default output directory, the runtime, Ctrl-C handling,
//! exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use crate::threshold::EXIT_THRESHOLD_FAILED;

/// `loadtest-runs/<prefix><start time>`: the output directory when --out is not given.
pub(super) fn default_out(prefix: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "");
    PathBuf::from("loadtest-runs").join(format!("{prefix}{stamp}"))
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

pub(super) fn threshold_exit(report: &crate::report::Report) -> ExitCode {
    if report.thresholds.iter().any(|t| !t.passed) {
        ExitCode::from(EXIT_THRESHOLD_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `run` until it ends or Ctrl-C / SIGTERM arrives; then the run's future is
/// dropped, which stops what it started (the spawned server or worker is killed, a
/// private broker is stopped and its data directory removed), and the error says so.
pub(super) async fn interruptible<T>(
    run: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = run => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
            "interrupted (Ctrl-C): the run was abandoned; what the lab started was stopped"
        )),
        () = terminate => Err(anyhow::anyhow!(
            "interrupted (SIGTERM): the run was abandoned; what the lab started was stopped"
        )),
    }
}

pub(super) fn usage_error(message: &str) -> ExitCode {
    eprintln!("loadtest: error: {message}");
    ExitCode::from(2)
}

pub(super) fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("loadtest: error: {error:#}");
    ExitCode::FAILURE
}
