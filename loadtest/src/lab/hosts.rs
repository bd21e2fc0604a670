//! The run's topology as deployed: the hosts [`LabOptions::topology`] asked for, with the
//! limits their cgroups really have and the cores they were pinned to.

use crate::confine::cores_allowed_now;
use crate::server::ServerHandle;
use crate::topology::{Role, Topology};

use super::deploy::Deployment;
use super::options::LabOptions;

/// `options`' topology, filled in from the started server (or the cluster's nodes) and
/// the lab's own cores (the `client` host).
pub(super) fn deployed_topology(options: &LabOptions, deployment: &Deployment) -> Topology {
    let mut topology = options.topology();
    let role = options.server_role();
    let mut fill = |i: usize, handle: &ServerHandle| {
        topology.deployed(
            &role.host(i),
            handle.cpu_limit(),
            handle.memory_limit_bytes(),
            handle.cores(),
        );
    };
    for (i, server) in deployment.servers.iter().enumerate() {
        if let Ok(handle) = server.lock() {
            fill(i, &handle);
        }
    }
    if let Some(cluster) = &deployment.cluster
        && let Ok(nodes) = cluster.nodes().lock()
    {
        for (i, node) in nodes.iter().enumerate() {
            fill(i, node);
        }
    }
    for node in &deployment.brokers {
        let cores = node.broker.lock().ok().and_then(|b| b.as_ref()?.cores());
        topology.deployed(
            &node.host, None, None, // its memory budget is already in the topology asked for
            cores,
        );
    }
    topology.deployed(&Role::Client.host(0), None, None, cores_allowed_now());
    topology
}
