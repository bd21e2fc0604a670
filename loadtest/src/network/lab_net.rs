//! The lab network itself: [`Network::create`] builds it for a list of hosts, dropping
//! it removes every namespace it made.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::address::{Cidr, LinkRate};
use super::cmd::{self, NetworkError};
use super::link::{self, HOST_IF, HostLink, hub_side};
use super::netns::Netns;

/// Every namespace the lab makes is named `rsl-PID-N-…` (`rsl`: the RPC spike lab; PID
/// the lab's process, N its network in that process): the sweep of what a killed lab left
/// behind keys on it.
pub const NAMESPACE_PREFIX: &str = "rsl-";

/// The bridge in the hub namespace.
const BRIDGE: &str = "br0";

/// Networks made by this process so far (tests make several at once).
static NETWORKS: AtomicUsize = AtomicUsize::new(0);

/// `--network-cidr`, `--link-rate`, `--link-delay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkOptions {
    pub cidr: Cidr,
    /// Each host's link, both ways (`None`: the veth's own speed, many Gbit/s).
    pub link_rate: Option<LinkRate>,
    /// Added one-way delay on each host's outgoing packets; needs `netem`.
    pub link_delay: Option<Duration>,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            cidr: Cidr::DEFAULT.parse().expect("the default range parses"),
            link_rate: None,
            link_delay: None,
        }
    }
}

/// The lab network of one run. Dropping it deletes its namespaces (and with them their
/// interfaces, addresses, routes and rules); processes still inside one keep it alive
/// until they end, so the lab stops its hosts first.
pub struct Network {
    pub(super) hub: String,
    pub(super) hosts: Vec<HostLink>,
    pub(super) options: NetworkOptions,
    /// Namespaces to delete, in the order made (emptied by [`Network::remove`]).
    made: Mutex<Vec<String>>,
    pub(super) faults: Mutex<FaultState>,
}

impl Network {
    /// Builds the network for `hosts` (names, in topology order: host `i` gets the range's
    /// address `i + 2`). Removes what an earlier, killed lab left first. On an error, what
    /// was built is removed again.
    pub fn create(hosts: &[String], options: NetworkOptions) -> Result<Network, NetworkError> {
        if hosts.len() as u64 > options.cidr.capacity() {
            return Err(NetworkError::Usage(format!(
                "--network-cidr {} holds {} hosts and this run has {}; choose a larger range",
                options.cidr,
                options.cidr.capacity(),
                hosts.len()
            )));
        }
        sweep_stale();
        let id = format!(
            "{NAMESPACE_PREFIX}{}-{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::Relaxed)
        );
        let mut network = Network {
            hub: format!("{id}-hub"),
            hosts: Vec::with_capacity(hosts.len()),
            options,
            made: Mutex::default(),
            faults: Mutex::default(),
        };
        network.add_namespace(&network.hub.clone())?;
        let hub = network.hub.clone();
        cmd::ip(&["-n", &hub, "link", "add", BRIDGE, "type", "bridge"])?;
        cmd::ip(&["-n", &hub, "link", "set", BRIDGE, "up"])?;
        for (i, host) in hosts.iter().enumerate() {
            let address = options.cidr.host(i).expect("capacity checked above");
            network.add_host(&id, host, address)?;
        }
        Ok(network)
    }

    /// Every host, in topology order.
    pub fn hosts(&self) -> &[HostLink] {
        &self.hosts
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<&HostLink> {
        self.hosts.iter().find(|h| h.host == name)
    }

    pub fn options(&self) -> NetworkOptions {
        self.options
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), NetworkError> {
        cmd::ip(&["netns", "add", name])?;
        self.made_list().push(name.to_string());
        Ok(())
    }

    fn made_list(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes every namespace of the network now, whoever still holds it (dropping does
    /// the same; this is for the owner that must know it is gone before it goes on). A
    /// warning names a namespace that could not be deleted, with the command to do it.
    /// Returns how many were deleted.
    pub fn remove(&self) -> usize {
        let made = std::mem::take(&mut *self.made_list());
        let mut removed = 0;
        for ns in made.iter().rev() {
            match cmd::ip(&["netns", "del", ns]) {
                Ok(_) => removed += 1,
                Err(e) => eprintln!("loadtest: warning: {e}; remove it with `ip netns del {ns}`"),
            }
        }
        removed
    }

    /// One host: its namespace, loopback up, a veth pair from the hub's bridge to its
    /// `eth0` with its address, the iptables chains the faults use, and the link shaping.
    fn add_host(&mut self, id: &str, host: &str, address: Ipv4Addr) -> Result<(), NetworkError> {
        let ns = format!("{id}-{host}");
        self.add_namespace(&ns)?;
        let (hub, peer) = (self.hub.clone(), hub_side(host));
        cmd::ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        cmd::ip(&[
            "-n", &hub, "link", "add", &peer, "type", "veth", "peer", "name", HOST_IF, "netns", &ns,
        ])?;
        cmd::ip(&["-n", &hub, "link", "set", &peer, "master", BRIDGE, "up"])?;
        let cidr = format!("{address}/{}", self.options.cidr.prefix());
        cmd::ip(&["-n", &ns, "addr", "add", &cidr, "dev", HOST_IF])?;
        cmd::ip(&["-n", &ns, "link", "set", HOST_IF, "up"])?;
        link::install_chains(&ns)?;
        let netns = Netns::open(&ns).map_err(|e| NetworkError::Command {
            command: format!("open /run/netns/{ns}"),
            stderr: e.to_string(),
        })?;
        let link = HostLink {
            host: host.to_string(),
            netns,
            address,
        };
        link::shape(&hub, &link, self.options.link_rate, self.options.link_delay)?;
        self.hosts.push(link);
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("hub", &self.hub)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// Removes the namespaces of labs that no longer run (killed with SIGKILL, which no
/// cleanup survives): `rsl-PID-…` whose PID is not a running process. Returns how many.
pub fn sweep_stale() -> usize {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NAMESPACE_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if cmd::ip(&["netns", "del", &name]).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        eprintln!(
            "loadtest: removed {removed} network namespaces an earlier, killed lab left behind"
        );
    }
    removed
}

/// What the faults have changed, to heal it.
#[derive(Debug, Default)]
pub struct FaultState {
    /// Loss share per lossy host.
    pub(super) loss: BTreeMap<String, f64>,
    /// Hosts whose rate a `rate:` fault changed.
    pub(super) rated: Vec<String>,
    /// Whether some partition is in place.
    pub(super) cut: bool,
}
