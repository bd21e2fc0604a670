//! What a run deploys, as data: the hosts (each an emulated VM — its cgroup limits, its
//! cores) and the role each plays. Built once from the command line (loadtest's
//! `lab::LabOptions::topology`), it names the targets of the fault plan (`loadtest::faults`)
//! and is printed in `report.json` (`topology.hosts[]`, by `lab-report`) with what the deploy
//! step found ([`Topology::deployed`]). A crate of its own because all three use it: data
//! only, it depends on serde and nothing of the lab.
//!
//! Names are short and stable: `api0`, `api1`, … (the purchasing API nodes, by the same
//! names in HAProxy's configuration and the report's `balancer.nodes[]`), `worker0` (the purchasing worker), `broker0` (the RabbitMQ node), `balancer`
//! (HAProxy) and `client` (the lab's own side: the generator and the recorder). A remote
//! target (`--url`, `--amqp-url`, `--balancer-url`) is a host the lab does not start
//! (`spawned: false`): it is in the topology so that the report says what was measured,
//! and a fault aimed at it is refused before anything starts.

use serde::{Deserialize, Serialize};

/// What a host does in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A `purchasing-api` node.
    Api,
    /// A `purchasing-worker`.
    Worker,
    /// A RabbitMQ node.
    Broker,
    /// HAProxy in front of the API nodes.
    Balancer,
    /// The lab's client side: the load generator and the recorder.
    Client,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Api,
        Role::Worker,
        Role::Broker,
        Role::Balancer,
        Role::Client,
    ];

    /// The name of the `index`-th host in this role: `api0`, `worker1`, `broker0`; the
    /// one balancer and the one client are `balancer` and `client`.
    pub fn host(self, index: usize) -> String {
        match self {
            Role::Balancer | Role::Client => self.as_str().into(),
            _ => format!("{}{index}", self.as_str()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::Broker => "broker",
            Role::Balancer => "balancer",
            Role::Client => "client",
        }
    }
}

/// One host of the topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// `api0`, `worker0`, `broker0`, `balancer`, `client`.
    pub name: String,
    pub role: Role,
    /// Whether the lab starts (and stops) it; a remote target's hosts are not.
    pub spawned: bool,
    /// The CPU quota of its emulated VM, in CPUs (`None`: unconfined or not known).
    pub cpus: Option<f64>,
    /// The memory limit of its emulated VM (`None`: unconfined or not known).
    pub memory_bytes: Option<u64>,
    /// The cores it is pinned to (`None`: not pinned, or not known).
    pub cores: Option<Vec<usize>>,
    /// Its network address, once hosts have networks of their own (`None` today: every
    /// host shares the machine's loopback).
    #[serde(default)]
    pub address: Option<String>,
}

impl Host {
    pub fn new(name: impl Into<String>, role: Role, spawned: bool) -> Host {
        Host {
            name: name.into(),
            role,
            spawned,
            cpus: None,
            memory_bytes: None,
            cores: None,
            address: None,
        }
    }
}

/// The hosts of a run, in a stable order: purchasing side, broker, balancer, client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub hosts: Vec<Host>,
}

impl Topology {
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// The host names, for messages ("this run's hosts: api0, client").
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        names.join(", ")
    }

    /// Records what the deploy step found for host `name`: the limits in force (read back
    /// from its cgroup) and the cores it was pinned to.
    pub fn deployed(
        &mut self,
        name: &str,
        cpus: Option<f64>,
        memory_bytes: Option<u64>,
        cores: Option<Vec<usize>>,
    ) {
        if let Some(host) = self.hosts.iter_mut().find(|h| h.name == name) {
            host.cpus = cpus.or(host.cpus);
            host.memory_bytes = memory_bytes.or(host.memory_bytes);
            host.cores = cores;
        }
    }
}
