//! What the nodes of one cluster share: one epmd and one Erlang cookie
//! ([`SharedErlang`]). A node finds a peer's distribution port through the epmd of the
//! peer's host — here one epmd on one port — and two nodes talk only if they hold the
//! same cookie, read from `$HOME/.erlang.cookie`: every node (and every `rabbitmqctl`
//! call) gets the same `HOME`.
//!
//! On the lab network (`--network`) every node is a host of its own: each runs its own
//! epmd in its namespace (on the same port number, on its loopback and its address), and
//! the nodes are named after their hosts (`broker0-ID@rsl-broker0`), names that Erlang
//! resolves to the hosts' addresses from a host table of the cluster's own
//! (`ERL_INETRC`): nothing is added to the machine's `/etc/hosts`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::install::Installation;
use super::options::{BrokerError, BrokerOptions, EPMD_GRACE, Failure};
use super::ports::Ports;
use crate::child::Supervised;

/// What the nodes of one cluster share: their epmd and the directory that holds their
/// cookie. Held by every node ([`Arc`]): epmd stops, and the directory goes, when the last
/// node has stopped.
pub(super) struct SharedErlang {
    /// The one epmd of a cluster on loopback; `None` on the lab network, where each node
    /// runs its own.
    epmd: Option<Supervised>,
    pub(super) epmd_port: u16,
    home: tempfile::TempDir,
    /// The host table Erlang resolves the nodes' host names with (lab network only).
    inetrc: Option<PathBuf>,
}

/// The host part of a cluster node's name on the lab network: `rsl-broker0`.
pub(super) fn node_host(host: &str) -> String {
    format!("rsl-{host}")
}

impl SharedErlang {
    /// A fresh cookie in a temporary `HOME`, and epmd on a free port; on the lab network
    /// (`hosts`: each node's host and address) the host table instead, and no epmd.
    pub(super) fn start(
        installation: &Installation,
        options: &BrokerOptions,
        hosts: &[(String, Ipv4Addr)],
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
        if !hosts.is_empty() {
            let inetrc = write_inetrc(home.path(), hosts)?;
            return Ok(SharedErlang {
                epmd: None,
                epmd_port: Ports::pick()?.epmd,
                home,
                inetrc: Some(inetrc),
            });
        }
        let cancel = options.cancel.clone().unwrap_or_default();
        let mut last = None;
        for _ in 0..super::options::PORT_ATTEMPTS {
            let port = Ports::pick()?.epmd;
            match super::epmd::start_epmd(installation, port, None, home.path(), &cancel) {
                Ok(epmd) => {
                    return Ok(SharedErlang {
                        epmd: Some(epmd),
                        epmd_port: port,
                        home,
                        inetrc: None,
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

    /// The cluster's one epmd (`None` on the lab network: each node has its own).
    pub(super) fn epmd(&self) -> Option<&Supervised> {
        self.epmd.as_ref()
    }

    /// The host table every node and `rabbitmqctl` call resolves with (lab network).
    pub(super) fn inetrc(&self) -> Option<&Path> {
        self.inetrc.as_deref()
    }
}

impl Drop for SharedErlang {
    fn drop(&mut self) {
        if let Some(epmd) = &self.epmd {
            epmd.terminate(EPMD_GRACE);
        }
    }
}

/// `HOME/inetrc`: the nodes' host names and addresses, looked up before the system's
/// resolver.
fn write_inetrc(home: &Path, hosts: &[(String, Ipv4Addr)]) -> Result<PathBuf, BrokerError> {
    let mut text = String::new();
    for (host, address) in hosts {
        let [a, b, c, d] = address.octets();
        text.push_str(&format!(
            "{{host, {{{a},{b},{c},{d}}}, [\"{}\"]}}.\n",
            node_host(host)
        ));
    }
    text.push_str("{lookup, [file, native]}.\n");
    let path = home.join("inetrc");
    std::fs::write(&path, text)
        .map_err(|e| BrokerError::Setup(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
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
