//! Where the broker's programs are installed, and the skip rule for tests that need them.

use std::path::PathBuf;

use super::options::{BrokerError, EPMD_PATHS, INSTALL_HINT, RABBITMQ_SERVER};

/// Where the broker's programs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// [`RABBITMQ_SERVER`].
    pub rabbitmq_server: PathBuf,
    /// epmd, from [`EPMD_PATHS`].
    pub epmd: PathBuf,
}

impl Installation {
    /// Finds the programs, or says which is missing and how to install it.
    pub fn find() -> Result<Installation, BrokerError> {
        let rabbitmq_server = PathBuf::from(RABBITMQ_SERVER);
        if !rabbitmq_server.is_file() {
            return Err(BrokerError::NotInstalled {
                what: "rabbitmq-server",
                path: rabbitmq_server,
            });
        }
        let epmd = EPMD_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| BrokerError::NotInstalled {
                what: "epmd (Erlang's port mapper, package erlang-base)",
                path: PathBuf::from(EPMD_PATHS[0]),
            })?;
        Ok(Installation {
            rabbitmq_server,
            epmd,
        })
    }
}

/// Test support for every test that needs a real broker: the installation when RabbitMQ
/// is installed; otherwise [`crate::prerequisite::require`]'s rule (the test fails under
/// CI; elsewhere it prints `SKIPPED: <test>: rabbitmq-server is not installed (… is
/// missing): <how to install it>` and gets `None`, and returns).
///
/// ```no_run
/// # fn a_test() {
/// let Some(_installation) = loadtest::broker::require_installed_or_skip() else {
///     return;
/// };
/// # }
/// ```
pub fn require_installed_or_skip() -> Option<Installation> {
    crate::prerequisite::require(Installation::find().map_err(|error| {
        crate::prerequisite::Missing {
            what: match &error {
                BrokerError::NotInstalled { what, path } => {
                    format!("{what} is not installed ({} is missing)", path.display())
                }
                other => other.to_string(),
            },
            how: INSTALL_HINT.to_string(),
        }
    }))
}
