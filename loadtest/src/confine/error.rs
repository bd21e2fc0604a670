//! Why a cgroup could not be made ([`ConfineError`]), each saying what is needed.

use std::io;

/// What is needed when confinement is not possible here.
pub const CONFINE_REQUIREMENTS: &str = "run as root on a machine with the cgroup v1 cpu+memory controllers or cgroup v2 with cpu and memory enabled";

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
