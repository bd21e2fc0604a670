//! The installed program and the names the lab's configuration uses: where HAProxy is,
//! the rule for tests that need it, and the balancer's errors.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub const HAPROXY_PATHS: [&str; 2] = ["/usr/sbin/haproxy", "/usr/bin/haproxy"];
/// What to do when HAProxy is missing; every "not installed" message says it.
pub const INSTALL_HINT: &str = "run scripts/test as root, or apt-get install haproxy";
/// The backend's name in the generated configuration (and in `show stat`).
pub const BACKEND: &str = "nodes";
/// How often [`StatsSampler`] asks for the stats: the failover times are measured to
/// this resolution.
pub const STATS_EVERY: Duration = Duration::from_millis(100);

/// The installed HAProxy, if any.
pub fn installed() -> Option<PathBuf> {
    HAPROXY_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The rule for tests that need HAProxy ([`crate::prerequisite::require`]): its path
/// when installed; otherwise the test fails under CI and prints one `SKIPPED:` line
/// elsewhere, and gets `None`.
pub fn require_installed_or_skip() -> Option<PathBuf> {
    crate::prerequisite::require(installed().ok_or_else(|| crate::prerequisite::Missing {
        what: format!(
            "haproxy is not installed (none of {} exists)",
            HAPROXY_PATHS.join(", ")
        ),
        how: INSTALL_HINT.to_string(),
    }))
}

/// Why the balancer could not be used: one line, with what to do.
#[derive(Debug)]
pub enum BalancerError {
    NotInstalled,
    /// `haproxy -c` refused the generated configuration (its own words).
    ConfigRefused {
        path: PathBuf,
        output: String,
    },
    Io {
        what: String,
        error: io::Error,
    },
    /// Started, but it did not listen, or it ended (its last output lines).
    DidNotStart {
        why: String,
    },
}

impl std::fmt::Display for BalancerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BalancerError::NotInstalled => write!(
                f,
                "HAProxy is not installed (looked for {}): {INSTALL_HINT}",
                HAPROXY_PATHS.join(", ")
            ),
            BalancerError::ConfigRefused { path, output } => write!(
                f,
                "HAProxy refused the generated configuration {}: {output}",
                path.display()
            ),
            BalancerError::Io { what, error } => write!(f, "{what}: {error}"),
            BalancerError::DidNotStart { why } => write!(f, "HAProxy did not start: {why}"),
        }
    }
}

impl std::error::Error for BalancerError {}

pub(super) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BalancerError {
    let what = what.into();
    move |error| BalancerError::Io { what, error }
}
