//! What the nodes of one cluster share: one epmd and one Erlang cookie
//! ([`SharedErlang`]). A node finds a peer's distribution port through the epmd of the
//! peer's host — here one epmd on one port — and two nodes talk only if they hold the
//! same cookie, read from `$HOME/.erlang.cookie`: every node (and every `rabbitmqctl`
//! call) gets the same `HOME`.

use std::path::Path;

use super::install::Installation;
use super::options::{BrokerError, BrokerOptions, EPMD_GRACE, Failure};
use super::ports::Ports;
use crate::child::Supervised;

/// What the nodes of one cluster share: their epmd and the directory that holds their
/// cookie. Held by every node ([`Arc`]): epmd stops, and the directory goes, when the last
/// node has stopped.
pub(super) struct SharedErlang {
    epmd: Supervised,
    pub(super) epmd_port: u16,
    home: tempfile::TempDir,
}

impl SharedErlang {
    /// A fresh cookie in a temporary `HOME`, and epmd on a free port.
    pub(super) fn start(
        installation: &Installation,
        options: &BrokerOptions,
    ) -> Result<Self, BrokerError> {
        let home = tempfile::Builder::new()
            .prefix("loadtest-cluster-")
            .tempdir()
            .map_err(|e| {
                BrokerError::Setup(format!(
                    "cannot create a temporary directory for the cluster's cookie in {}: {e}; \
                     check that it is writable (or set TMPDIR)",
                    std::env::temp_dir().display()
                ))
            })?;
        write_cookie(home.path())?;
        let cancel = options.cancel.clone().unwrap_or_default();
        let mut last = None;
        for _ in 0..super::options::PORT_ATTEMPTS {
            let port = Ports::pick()?.epmd;
            match super::epmd::start_epmd(installation, port, None, home.path(), &cancel) {
                Ok(epmd) => {
                    return Ok(SharedErlang {
                        epmd,
                        epmd_port: port,
                        home,
                    });
                }
                Err(Failure::PortTaken(message)) => last = Some(message),
                Err(failure) => return Err(failure.into()),
            }
        }
        Err(BrokerError::Start(last.unwrap_or_default()))
    }

    /// The `HOME` of every node and every `rabbitmqctl` call (its `.erlang.cookie`).
    pub(super) fn home(&self) -> &Path {
        self.home.path()
    }

    pub(super) fn epmd(&self) -> &Supervised {
        &self.epmd
    }
}

impl Drop for SharedErlang {
    fn drop(&mut self) {
        self.epmd.terminate(EPMD_GRACE);
    }
}

/// Writes a random cookie readable by its owner only (Erlang refuses a cookie file that
/// others may read).
fn write_cookie(home: &Path) -> Result<(), BrokerError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = home.join(".erlang.cookie");
    let cookie: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_uppercase()
        .chars()
        .filter(char::is_ascii_alphabetic)
        .chain("LOADTEST".chars())
        .take(20)
        .collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&path)
        .and_then(|mut file| file.write_all(cookie.as_bytes()))
        .map_err(|e| BrokerError::Setup(format!("cannot write {}: {e}", path.display())))
}
