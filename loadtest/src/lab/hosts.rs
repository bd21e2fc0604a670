//! The run's topology as deployed: the hosts [`LabOptions::topology`] asked for, with the
//! limits their cgroups really have and the cores they were pinned to.

use std::sync::{Arc, Mutex};

use crate::cluster::Cluster;
use crate::server::ServerHandle;
use crate::topology::Topology;

use super::LabOptions;

/// `options`' topology, filled in from the started server (or the cluster's nodes) and
/// the lab's own cores (the `client` host).
pub(super) fn deployed_topology(
    options: &LabOptions,
    server: Option<&Arc<Mutex<ServerHandle>>>,
    cluster: Option<&Cluster>,
) -> Topology {
    let mut topology = options.topology();
    let role = if options.messaging.is_some() {
        "worker"
    } else {
        "api"
    };
    let mut fill = |i: usize, handle: &ServerHandle| {
        topology.deployed(
            &format!("{role}{i}"),
            handle.cpu_limit(),
            handle.memory_limit_bytes(),
            handle.cores(),
        );
    };
    if let Some(server) = server
        && let Ok(handle) = server.lock()
    {
        fill(0, &handle);
    }
    if let Some(cluster) = cluster
        && let Ok(nodes) = cluster.nodes().lock()
    {
        for (i, node) in nodes.iter().enumerate() {
            fill(i, node);
        }
    }
    topology.deployed("client", None, None, own_cores());
    topology
}

/// The cores the lab itself may run on now (after it moved off a confined child's).
fn own_cores() -> Option<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let cores: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&core| set.is_set(core).unwrap_or(false))
        .collect();
    (!cores.is_empty()).then_some(cores)
}
