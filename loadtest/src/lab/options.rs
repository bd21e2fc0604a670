//! What a lab run is asked to do: [`LabOptions`] and its [`Target`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{ExternalBalancer, ScaleOut};
use crate::faults::{FaultPlan, PlanError};
use crate::messaging::{BrokerSource, MessagingOptions};
use crate::network::{HostLink, Network, NetworkOptions};
use crate::runner::Plan;
use crate::server::ServerSpec;
use crate::threshold::Threshold;
use crate::topology::{Host, Role, Topology};

/// How often the server's memory and CPU, and the queue, are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A server that is already running (perhaps in a real VM). Reconciliation needs its
    /// orders file to be readable here.
    Remote { orders_file: Option<PathBuf> },
    /// The lab starts `purchasing-api` itself; `spec.orders_file` is reconciled.
    Spawn(Box<ServerSpec>),
}

#[derive(Debug, Clone)]
pub struct LabOptions {
    /// `blog`, `step` or `rate` (for the report).
    pub profile_name: String,
    pub plan: Plan,
    pub target: Target,
    pub out_dir: PathBuf,
    pub thresholds: Vec<Threshold>,
    /// Remote targets: the orders file must stay unchanged this long before it is read.
    pub settle: Duration,
    /// `--transport amqp`: publish to a queue the worker consumes. `None`: HTTP calls.
    pub messaging: Option<MessagingOptions>,
    /// `--instances K`: K spawned nodes behind a real HAProxy ([`crate::cluster`]).
    pub scale_out: Option<ScaleOut>,
    /// `--balancer-url`: a balancer the user runs (a remote target), watched through its
    /// stats socket when given.
    pub external_balancer: Option<ExternalBalancer>,
    /// The faults to inject (`--fault`, `--faults` and the older fault flags), checked
    /// against [`LabOptions::topology`] by [`LabOptions::with_faults`].
    pub faults: FaultPlan,
    /// `--network`: every host in a network namespace of its own.
    pub network: Option<LabNetwork>,
}

/// `--network`: what was asked, and the network once built. The command line builds it
/// before the async runtime starts ([`crate::cli`]), because the lab's own threads must
/// be born in the `client` host's namespace.
#[derive(Debug, Clone)]
pub struct LabNetwork {
    pub options: NetworkOptions,
    pub built: Option<Arc<Network>>,
}

impl LabNetwork {
    /// `host`'s place on the built network.
    pub fn link(&self, host: &str) -> Option<HostLink> {
        self.built.as_ref()?.host(host).cloned()
    }
}

impl LabOptions {
    /// These options with `plan`, once it is checked against their topology (one line
    /// naming the fault and the hosts otherwise). A plan that kills a server makes its
    /// supervisor restart it.
    pub fn with_faults(mut self, plan: FaultPlan) -> Result<LabOptions, PlanError> {
        let topology = self.topology();
        plan.check(&topology, self.network.is_some())?;
        if plan.kills_a_server(&topology)
            && let Target::Spawn(spec) = &mut self.target
        {
            spec.restart_on_crash = true;
        }
        self.faults = plan;
        Ok(self)
    }

    /// The topology these options ask for, with the limits asked for (the deploy step
    /// fills in what it found: [`Topology::deployed`]).
    /// The role of the purchasing side: the worker over AMQP, else the API.
    pub fn server_role(&self) -> Role {
        if self.messaging.is_some() {
            Role::Worker
        } else {
            Role::Api
        }
    }

    /// How many API nodes or workers the lab starts for a spawned target: `--instances`
    /// or `--workers`, else one.
    pub fn spawned_servers(&self) -> usize {
        match (&self.scale_out, &self.messaging) {
            (Some(scale), _) => scale.instances,
            (None, Some(m)) => m.workers,
            (None, None) => 1,
        }
    }

    /// `host`'s place on the lab network (`None` without `--network`).
    pub fn link(&self, host: &str) -> Option<HostLink> {
        self.network.as_ref()?.link(host)
    }

    pub fn topology(&self) -> Topology {
        let mut hosts = Vec::new();
        let role = self.server_role();
        match &self.target {
            Target::Spawn(spec) => {
                for i in 0..self.spawned_servers() {
                    let mut host = Host::new(role.host(i), role, true);
                    host.cpus = spec.limits.cpus;
                    host.memory_bytes = spec.limits.memory_bytes;
                    hosts.push(host);
                }
            }
            Target::Remote { .. } => {
                hosts.push(Host::new(role.host(0), role, false));
            }
        }
        if let Some(m) = &self.messaging {
            let (nodes, spawned) = match m.broker {
                BrokerSource::Spawn { nodes } => (nodes, true),
                BrokerSource::Url(_) => (1, false),
            };
            for i in 0..nodes {
                let mut host = Host::new(Role::Broker.host(i), Role::Broker, spawned);
                // A node the lab starts is sized for its configuration (RabbitMQ's memory
                // alarm works against this budget); one the user runs is unknown.
                host.memory_bytes = spawned.then_some(crate::broker::NODE_MEMORY_BYTES);
                hosts.push(host);
            }
        }
        if self.scale_out.is_some() || self.external_balancer.is_some() {
            let spawned = self.scale_out.is_some();
            hosts.push(Host::new(Role::Balancer.host(0), Role::Balancer, spawned));
        }
        hosts.push(Host::new(Role::Client.host(0), Role::Client, true));
        for host in &mut hosts {
            let link = self.network.as_ref().and_then(|n| n.link(&host.name));
            host.address = link.map(|l| l.address.to_string());
        }
        Topology { hosts }
    }
}
