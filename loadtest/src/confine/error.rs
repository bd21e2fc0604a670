//! Why a cgroup could not be made ([`ConfineError`]), each saying what is needed.

use std::io;

/// What to do when confinement is not possible here: the last part of every
/// [`ConfineError`] that is about the machine rather than the limits. Root can create
/// cgroups anywhere; without root, systemd (cgroup v2) can hand the user a delegated scope
/// with the limits set on it, which confines the whole lab instead of only the server.
pub const CONFINE_REQUIREMENTS: &str = "run as root (cgroup v2 with the cpu and memory controllers, or cgroup v1 with both mounted); without root on cgroup v2 with systemd, drop --cpus/--memory and let systemd confine the whole lab (the load generator too) in a delegated scope: systemd-run --user --scope -p MemoryMax=2G -p CPUQuota=100% loadtest run ...";

/// Why a cgroup could not be created or used. The message says what failed, where, and
/// what is needed.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The limits themselves are unusable (zero memory, a negative CPU count…).
    #[error("cannot confine: {0}")]
    InvalidLimits(String),
    /// A cgroup file system operation failed (permission, read-only, …).
    /// (The OS error is part of the message, so it is not also chained as a source.)
    #[error("cannot confine: {what} failed: {error}; {CONFINE_REQUIREMENTS}")]
    Io { what: String, error: io::Error },
    /// No usable cgroup hierarchy (controller not mounted or not available to us).
    #[error("cannot confine: {0}; {CONFINE_REQUIREMENTS}")]
    Unsupported(String),
}

impl ConfineError {
    /// True when the environment does not allow confinement (not root, read-only cgroup
    /// file system, controllers missing) as opposed to bad limits. Tests skip on this.
    pub fn is_not_permitted(&self) -> bool {
        match self {
            ConfineError::InvalidLimits(_) => false,
            ConfineError::Unsupported(_) => true,
            ConfineError::Io { error, .. } => matches!(
                error.raw_os_error(),
                Some(
                    libc::EACCES
                        | libc::EPERM
                        | libc::EROFS
                        | libc::ENOENT
                        | libc::ENOTSUP
                        | libc::EBUSY
                )
            ),
        }
    }
}

pub(super) fn io_error(what: impl Into<String>, error: io::Error) -> ConfineError {
    ConfineError::Io {
        what: what.into(),
        error,
    }
}
