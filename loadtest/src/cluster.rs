//! A scaled-out target (`--instances K`): K purchasing nodes, each in an emulated VM of
//! its own (a cgroup with the run's `--cpus`/`--memory`, on cores of its own while the
//! machine has enough), all appending to one orders file, behind one real HAProxy
//! ([`crate::balancer`]). The lab sends every order to HAProxy.
//!
//! [`Cluster::start`] starts the nodes, reads the first node's admission limit from its
//! `/metrics` (HAProxy's per-node `maxconn`), then starts HAProxy; [`Cluster::begin`]
//! starts sampling its stats at the load's start (the fault plan reaches the nodes through
//! [`Cluster::nodes`]); [`Cluster::stop`] stops the nodes (they finish their
//! in-flight orders, which HAProxy still relays), then HAProxy, and builds the report's
//! `balancer` object, with the failover times of every crash.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use crate::balancer::{
    Balancer, LoggedRequest, Node, SampledStats, StatsSampler, Transition, node_per_request,
};
use crate::e2e::percentiles_ms;
use crate::report::{BalancerReport, CrashEvent, NodeCrash, NodeReport, SecondRow};
use crate::server::{ServerHandle, ServerObservations, ServerSpec, scrape_gauge};

/// `--instances K`, and how its nodes come back from a kill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleOut {
    /// Nodes behind the balancer (at least 1: one node behind HAProxy is the fair
    /// baseline for K = 2, paying the same hop).
    pub instances: usize,
    /// `--instance-down-for`: how long a node killed by the fault plan stays down before
    /// its restart.
    pub down_for: Duration,
}

/// How long a killed node stays down by default: longer than HAProxy needs to notice
/// (two failed checks 500 ms apart), as a VM that reboots would.
pub const DEFAULT_DOWN_FOR: Duration = Duration::from_secs(3);

/// The most nodes a run may start: each is a confined process with its own sampler and
/// supervisor threads; beyond this the lab itself would be the bottleneck here.
pub const MAX_INSTANCES: usize = 16;

/// The balancer samples kept for the timeline: one every this many stats polls
/// (100 ms each), i.e. the lab's 250 ms-ish server sampling rate rounded to 200 ms.
const KEEP_EVERY_POLLS: u32 = 2;

/// The nodes, shared with the kill injector and the live crash count.
pub type SharedNodes = Arc<Mutex<Vec<ServerHandle>>>;

pub struct Cluster {
    nodes: SharedNodes,
    names: Vec<Node>,
    balancer: Option<Balancer>,
    sampler: Option<StatsSampler>,
    lab_cpu_at_start: Option<f64>,
}

impl Cluster {
    /// Starts `instances` nodes from `spec` (each with `core_slot` = its index and a log
    /// file of its own) and HAProxy in front of them, its configuration and log in
    /// `out_dir`. `client_timeout`: HAProxy waits a little longer for a node.
    pub async fn start(
        spec: &ServerSpec,
        instances: usize,
        out_dir: &std::path::Path,
        client_timeout: Duration,
        network: Option<&crate::network::Network>,
    ) -> anyhow::Result<Cluster> {
        let mut handles = Vec::with_capacity(instances);
        let mut names = Vec::with_capacity(instances);
        for index in 0..instances {
            let mut spec = spec.clone();
            spec.link = network.and_then(|n| n.host(&spec.kind.role().host(index)).cloned());
            let (handle, node) = start_node(&spec, index, instances, out_dir).await?;
            handles.push(handle);
            names.push(node);
        }
        let first = handles[0].addr();
        let maxconn = tokio::task::spawn_blocking(move || admission_limit(first))
            .await
            .ok()
            .flatten();
        let nodes = names.clone();
        let out = out_dir.to_path_buf();
        let link = network.and_then(|n| n.host(&crate::topology::Role::Balancer.host(0)).cloned());
        let balancer = tokio::task::spawn_blocking(move || {
            Balancer::start(nodes, &out, link.as_ref(), |config| {
                config.maxconn_per_node = maxconn;
                config.server_timeout = client_timeout + Duration::from_secs(5);
            })
        })
        .await
        .context("the balancer start-up task failed")?
        .context("cannot start HAProxy in front of the nodes")?;
        eprintln!(
            "loadtest: HAProxy → {} in front of {instances} node(s) (maxconn per node: {}; configuration {})",
            balancer.url(),
            maxconn.map_or("none".into(), |m| m.to_string()),
            balancer.config_path().display()
        );
        Ok(Cluster {
            nodes: Arc::new(Mutex::new(handles)),
            names,
            balancer: Some(balancer),
            sampler: None,
            lab_cpu_at_start: None,
        })
    }

    /// Where the clients send their orders: HAProxy.
    pub fn url(&self) -> String {
        self.balancer
            .as_ref()
            .map(|b| b.url().to_string())
            .unwrap_or_default()
    }

    /// The nodes, for the live crash count and the kill injector.
    pub fn nodes(&self) -> SharedNodes {
        self.nodes.clone()
    }

    /// Starts sampling HAProxy's stats, with times relative to `epoch` (the load's start).
    pub fn begin(&mut self, epoch: Instant) {
        self.lab_cpu_at_start = own_cpu_seconds();
        if let Some(balancer) = &self.balancer {
            self.sampler = Some(StatsSampler::start(
                balancer.stats_reader(),
                self.names.iter().map(|n| n.name.clone()).collect(),
                balancer.pid(),
                epoch.into_std(),
                KEEP_EVERY_POLLS,
            ));
        }
    }

    /// Crashes of every node so far.
    pub fn crashes_so_far(nodes: &SharedNodes) -> u64 {
        nodes
            .lock()
            .map(|n| n.iter().map(ServerHandle::crashes_so_far).sum())
            .unwrap_or(0)
    }

    /// Stops the nodes (each finishes its in-flight orders within `grace`), then the
    /// sampler and HAProxy. Returns the observations merged as one server (for the
    /// report's `server` object: crashes and CPU of all nodes, the first node's samples
    /// and confinement) and the `balancer` object. `seconds`: the run's per-second rows,
    /// for the failures during each failover window.
    pub async fn stop(
        mut self,
        grace: Duration,
        epoch: Instant,
        seconds: &[SecondRow],
    ) -> (ServerObservations, BalancerReport) {
        let handles = std::mem::take(&mut *self.nodes.lock().unwrap_or_else(|p| p.into_inner()));
        let mut observations = Vec::with_capacity(handles.len());
        let stops: Vec<_> = handles
            .into_iter()
            .map(|h| tokio::spawn(h.stop(grace, epoch.into_std())))
            .collect();
        for stop in stops {
            observations.push(stop.await.unwrap_or_default());
        }
        let sampled = self
            .sampler
            .take()
            .map(StatsSampler::finish)
            .unwrap_or_default();
        let lab_cpu = match (own_cpu_seconds(), self.lab_cpu_at_start) {
            (Some(now), Some(start)) => Some(now - start),
            _ => None,
        };
        let balancer = self.balancer.take();
        let (config, log_path) = match &balancer {
            Some(b) => (Some(b.config().clone()), Some(b.log_path().to_path_buf())),
            None => (None, None),
        };
        let url = balancer
            .as_ref()
            .map(|b| b.url().to_string())
            .unwrap_or_default();
        let stop_outcome = match balancer {
            Some(b) => tokio::task::spawn_blocking(move || b.stop())
                .await
                .unwrap_or_else(|e| format!("the stop task failed: {e}")),
            None => "was not running".into(),
        };
        let logged = log_path
            .as_deref()
            .and_then(|p| node_per_request(p).ok())
            .unwrap_or_default();
        let report = balancer_report(BalancerInputs {
            config: config.as_ref(),
            url,
            names: &self.names,
            observations: &observations,
            sampled: &sampled,
            logged: logged.values().flatten(),
            seconds,
            lab_cpu,
            stop_outcome,
        });
        let names: Vec<String> = self.names.iter().map(|n| n.name.clone()).collect();
        let merged = ServerObservations::merge(
            &names,
            observations,
            "nodes behind HAProxy",
            "the lab and HAProxy run on",
        );
        (merged, report)
    }
}

struct BalancerInputs<'a, L> {
    config: Option<&'a crate::balancer::BalancerConfig>,
    url: String,
    names: &'a [Node],
    observations: &'a [ServerObservations],
    sampled: &'a SampledStats,
    logged: L,
    seconds: &'a [SecondRow],
    lab_cpu: Option<f64>,
    stop_outcome: String,
}

/// What HAProxy's log says about a run, per node and in all.
struct LogCounts {
    /// Per node, in the order of the configuration: requests it got, orders it
    /// acknowledged (201), refusals (503).
    per_node: Vec<(u64, u64, u64)>,
    /// 503s HAProxy answered itself (its queue full or timed out, no node up).
    refused_by_balancer: u64,
    /// HAProxy's own share of each acknowledged order's time (the hop), ms.
    added_ms: Vec<f64>,
    /// Each acknowledged order's wait in HAProxy's queue, ms.
    queued_ms: Vec<f64>,
}

fn count_logged<'a>(names: &[Node], logged: impl Iterator<Item = &'a LoggedRequest>) -> LogCounts {
    let mut counts = LogCounts {
        per_node: vec![(0, 0, 0); names.len()],
        refused_by_balancer: 0,
        added_ms: Vec::new(),
        queued_ms: Vec::new(),
    };
    for logged in logged {
        let node = match &logged.node {
            Some(name) if logged.answered_by_node() => names.iter().position(|n| &n.name == name),
            // HAProxy answered itself (no node, or one that never answered).
            _ => {
                counts.refused_by_balancer += u64::from(logged.status == 503);
                continue;
            }
        };
        let Some(i) = node else { continue };
        counts.per_node[i].0 += 1;
        if logged.status == 201 {
            counts.per_node[i].1 += 1;
            counts.added_ms.extend(logged.own_time_ms());
            if logged.queue_ms >= 0 {
                counts.queued_ms.push(logged.queue_ms as f64);
            }
        }
        counts.per_node[i].2 += u64::from(logged.status == 503);
    }
    counts
}

fn balancer_report<'a>(
    inputs: BalancerInputs<'a, impl Iterator<Item = &'a LoggedRequest>>,
) -> BalancerReport {
    let counts = count_logged(inputs.names, inputs.logged);
    let nodes = inputs
        .names
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let observed = inputs.observations.get(i).cloned().unwrap_or_default();
            node_report(
                node,
                observed,
                counts.per_node[i],
                inputs.sampled,
                inputs.seconds,
            )
        })
        .collect();
    let config = inputs.config;
    BalancerReport {
        kind: "haproxy".into(),
        spawned: true,
        url: inputs.url,
        config_file: "haproxy.cfg".into(),
        log_file: "haproxy.log".into(),
        instances: inputs.names.len() as u64,
        maxconn_per_node: config.and_then(|c| c.maxconn_per_node),
        queue_bound: config.and_then(|c| c.queue_bound()),
        check_interval_ms: config.map_or(0, |c| c.check_interval.as_millis() as u64),
        fall: config.map_or(0, |c| c.fall),
        rise: config.map_or(0, |c| c.rise),
        refused_by_balancer: counts.refused_by_balancer,
        added_latency_ms: percentiles_ms(counts.added_ms),
        queue_wait_ms: percentiles_ms(counts.queued_ms),
        cpu_seconds: inputs.sampled.cpu_seconds,
        lab_cpu_seconds: inputs.lab_cpu,
        stop_outcome: inputs.stop_outcome,
        nodes,
        transitions: inputs.sampled.transitions.clone(),
        samples: inputs.sampled.samples.clone(),
    }
}

/// One node's entry in the report: what its supervisor observed, what HAProxy's log
/// counted for it (`(requests, acknowledged, refused)`), and the failover of each crash.
fn node_report(
    node: &Node,
    observed: ServerObservations,
    (requests, acknowledged, refused): (u64, u64, u64),
    sampled: &SampledStats,
    seconds: &[SecondRow],
) -> NodeReport {
    let crash_events = observed
        .crashes
        .iter()
        .map(|c| {
            failover(
                &node.name,
                c,
                &observed.restarted_at_s,
                &sampled.transitions,
                seconds,
            )
        })
        .collect();
    NodeReport {
        name: node.name.clone(),
        addr: node.addr.to_string(),
        confinement: observed.confinement,
        crashes: observed.crashes.len() as u64,
        restarts: observed.restarts,
        crash_events,
        peak_memory_bytes: observed.peak_memory_bytes,
        cpu_seconds: observed.cpu_seconds,
        stopped_cleanly: observed.stopped_cleanly,
        requests,
        acknowledged,
        refused,
    }
}

/// The failover around one crash of `node`: when HAProxy took it out, when it was
/// restarted and back in rotation, and how many requests failed in between.
fn failover(
    node: &str,
    crash: &CrashEvent,
    restarted_at_s: &[f64],
    transitions: &[Transition],
    seconds: &[SecondRow],
) -> NodeCrash {
    // The sampler sees a state change up to one poll late, never early.
    let down_at = transitions
        .iter()
        .find(|t| t.node == node && !t.up && t.t_s >= crash.t_s - 0.01)
        .map(|t| t.t_s);
    let restarted = restarted_at_s.iter().copied().find(|&r| r >= crash.t_s);
    let up_at = restarted.and_then(|r| {
        transitions
            .iter()
            .find(|t| t.node == node && t.up && t.t_s >= r - 0.01)
            .map(|t| t.t_s)
    });
    let failed_during_window = down_at.map(|down| {
        seconds
            .iter()
            .filter(|s| (s.t_s as f64 + 1.0) > crash.t_s && (s.t_s as f64) <= down)
            .map(SecondRow::failed)
            .sum()
    });
    NodeCrash {
        t_s: crash.t_s,
        cause: crash.cause.clone(),
        oom_killed: crash.oom_killed,
        // The supervisor words every kill the lab injected as "injected: …".
        injected: crash.cause.starts_with("injected"),
        detect_down_s: down_at.map(|d| (d - crash.t_s).max(0.0)),
        restarted_at_s: restarted,
        back_up_s: match (restarted, up_at) {
            (Some(r), Some(u)) => Some((u - r).max(0.0)),
            _ => None,
        },
        failed_during_window,
    }
}

/// Starts the `index`-th node from `spec`: on core slot `index`, its stderr in
/// `OUT/server.<host>.log`, and (an API node) answering HAProxy's agent check. Returns it
/// with its entry in the balancer's configuration, named as its topology host (`api0`).
async fn start_node(
    spec: &ServerSpec,
    index: usize,
    instances: usize,
    out_dir: &std::path::Path,
) -> anyhow::Result<(ServerHandle, Node)> {
    let name = spec.kind.role().host(index);
    let mut node_spec = spec.clone();
    node_spec.core_slot = index;
    node_spec.log_file = Some(out_dir.join(format!("server.{name}.log")));
    // The API answers HAProxy's agent check with its admission limit as it moves (a
    // fixed port, so a restarted node answers on the same one).
    let agent = match spec.kind {
        crate::server::SutKind::Api => {
            let port = crate::balancer::free_port()
                .context("cannot find a free port for a node's agent check")?;
            let ip = (node_spec.link.as_ref()).map_or(std::net::Ipv4Addr::LOCALHOST, |l| l.address);
            let addr = std::net::SocketAddr::from((ip, port));
            node_spec.args.push("--haproxy-agent-bind".into());
            node_spec.args.push(addr.to_string());
            Some(addr)
        }
        crate::server::SutKind::Worker => None,
    };
    let of = format!("node {} of {instances}", index + 1);
    let handle = ServerHandle::start_host(node_spec, &name, &of).await?;
    let node = Node {
        agent,
        ..Node::numbered(index, handle.addr())
    };
    Ok((handle, node))
}

/// The admission limit a node enforces, from its `/metrics`: its hard cap under the
/// adaptive limit, else its fixed limit; `None` when admission control is off.
fn admission_limit(addr: std::net::SocketAddr) -> Option<u32> {
    let cap = scrape_gauge(addr, "purchasing_admission_limit_cap");
    let limit = scrape_gauge(addr, "purchasing_admission_limit");
    cap.or(limit)
        .filter(|&n| n > 0)
        .and_then(|n| u32::try_from(n).ok())
}

/// This process's CPU time (user + system), for the lab's own share of the machine.
fn own_cpu_seconds() -> Option<f64> {
    crate::server::process_cpu_seconds(std::process::id())
}

/// A balancer the user runs (`--balancer-url`): the lab sends its orders there and, given
/// its stats socket, watches its backend's servers — states, sessions, queue, requests per
/// server — into the report's `balancer` object. It cannot see the nodes' processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalBalancer {
    pub url: String,
    /// HAProxy's `stats socket` path, readable here.
    pub stats_socket: Option<std::path::PathBuf>,
    /// The backend whose servers are the nodes.
    pub backend: String,
}

/// Watches a balancer the user runs while the load runs.
pub struct Watcher {
    url: String,
    names: Vec<String>,
    sampler: Option<StatsSampler>,
}

impl Watcher {
    /// Reads the backend's servers (a clear error when the socket cannot be read or the
    /// backend has none) and starts sampling, with times relative to `epoch`.
    pub fn start(balancer: &ExternalBalancer, epoch: Instant) -> anyhow::Result<Watcher> {
        let Some(socket) = &balancer.stats_socket else {
            return Ok(Watcher {
                url: balancer.url.clone(),
                names: Vec::new(),
                sampler: None,
            });
        };
        let reader = crate::balancer::StatsReader::new(socket.clone(), &balancer.backend);
        let names = reader.servers().map_err(|e| anyhow::anyhow!(e))?;
        let sampler = StatsSampler::start(
            reader,
            names.clone(),
            None,
            epoch.into_std(),
            KEEP_EVERY_POLLS,
        );
        Ok(Watcher {
            url: balancer.url.clone(),
            names,
            sampler: Some(sampler),
        })
    }

    /// Stops watching; the `balancer` object as far as the stats could tell.
    pub fn finish(self) -> BalancerReport {
        let sampled = self.sampler.map(StatsSampler::finish).unwrap_or_default();
        let nodes = self
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| NodeReport {
                name: name.clone(),
                confinement: "unknown (not spawned by the lab)".into(),
                requests: sampled
                    .last_totals
                    .get(i)
                    .zip(sampled.first_totals.get(i))
                    .map_or(0, |(last, first)| last.saturating_sub(*first)),
                ..Default::default()
            })
            .collect();
        BalancerReport {
            kind: "haproxy".into(),
            spawned: false,
            url: self.url,
            instances: self.names.len() as u64,
            stop_outcome: "not stopped: the balancer is yours".into(),
            nodes,
            transitions: sampled.transitions,
            samples: sampled.samples,
            ..Default::default()
        }
    }
}
