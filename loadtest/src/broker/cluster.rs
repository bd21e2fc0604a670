//! A RabbitMQ cluster of N nodes on this host: [`start_cluster`].
//!
//! Why each step:
//!
//! - **One epmd and one cookie for all nodes** ([`SharedErlang`]). A node finds a peer's
//!   distribution port through the epmd of the peer's host — here one epmd on one port —
//!   and two nodes talk only if they hold the same Erlang cookie, read from
//!   `$HOME/.erlang.cookie`: every node (and every `rabbitmqctl` call) gets the same `HOME`.
//! - **Its own name, ports and data directory per node**: `broker0-ID@localhost`, …, so
//!   the nodes of two clusters (tests run in parallel) never meet.
//! - **Booted side by side, then joined one after another** with RabbitMQ's own
//!   procedure: `rabbitmqctl -n NODE stop_app`, `join_cluster broker0-ID@localhost`,
//!   `start_app`. Each boot costs seconds of Erlang start-up and they overlap; joins
//!   change the cluster's membership, so they go one at a time.
//! - **Ready = every node answers AMQP and the cluster reports N running nodes**
//!   (`cluster_status` on the first node). Until then a client could land on a node that
//!   still thinks it is alone.
//! - A node restarted later (the fault plan) finds its cluster in its data directory and
//!   rejoins by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ctl::{Ctl, CtlError};
use super::erlang::{SharedErlang, node_host};
use super::handle::Broker;
use super::install::Installation;
use super::options::{BrokerError, BrokerOptions};

/// Most nodes `--broker-nodes` accepts: each node is an Erlang VM of ≈ 130 MB idle, and
/// quorum queues are replicated to every node, so more nodes cost every publish more.
pub const MAX_NODES: usize = 7;

/// Starts `nodes` RabbitMQ nodes joined into one cluster, and returns once every node
/// answers AMQP and the cluster reports them all running (see the module doc). One node
/// is a plain [`Broker::start`]. On failure everything started is stopped. Blocks for
/// seconds (≈ 5 s per node on two cores): call it through `spawn_blocking` in async code.
///
/// `links` (`--network`): node `i` runs on host `links[i]`, in its namespace and on its
/// address (see [`super::erlang`]); empty, every node is on this machine's loopback.
pub fn start_cluster(
    nodes: usize,
    mut options: BrokerOptions,
    links: &[crate::network::HostLink],
) -> Result<Vec<Broker>, BrokerError> {
    if !links.is_empty() && links.len() != nodes {
        return Err(BrokerError::Setup(format!(
            "a cluster of {nodes} nodes was given {} hosts (a bug in loadtest)",
            links.len()
        )));
    }
    if nodes <= 1 {
        options.link = links.first().cloned();
        return Ok(vec![Broker::start(options)?]);
    }
    if nodes > MAX_NODES {
        return Err(BrokerError::Setup(format!(
            "a cluster of {nodes} nodes is more than this lab starts (at most {MAX_NODES})"
        )));
    }
    if let Some(dir) = &options.data_dir {
        return Err(BrokerError::Setup(format!(
            "a cluster keeps its nodes in temporary directories; --keep-data {} works with one node only",
            dir.display()
        )));
    }
    let started = Instant::now();
    let installation = Installation::find()?;
    let hosts: Vec<(String, std::net::Ipv4Addr)> = (links.iter())
        .map(|l| (l.host.clone(), l.address))
        .collect();
    let shared = Arc::new(SharedErlang::start(&installation, &options, &hosts)?);
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let members = boot_all(nodes, id, &installation, &shared, &options, links)?;
    join_all(&members, options.ready_timeout)?;
    if options.progress {
        eprintln!(
            "loadtest: RabbitMQ cluster of {nodes} nodes ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(members)
}

/// Boots every node side by side; all or none (the ones started are dropped, so stopped,
/// when another fails).
fn boot_all(
    nodes: usize,
    id: &str,
    installation: &Installation,
    shared: &Arc<SharedErlang>,
    options: &BrokerOptions,
    links: &[crate::network::HostLink],
) -> Result<Vec<Broker>, BrokerError> {
    let results: Vec<Result<Broker, BrokerError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..nodes)
            .map(|i| {
                let link = links.get(i).cloned();
                let host = (link.as_ref()).map_or("localhost".into(), |l| node_host(&l.host));
                let node = format!("broker{i}-{id}@{host}");
                let (installation, shared) = (installation.clone(), shared.clone());
                let mut options = options.clone();
                options.link = link;
                scope.spawn(move || Broker::start_member(installation, node, shared, options))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BrokerError::Start("a node's start thread panicked".into()))
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

/// Joins every node after the first to the first, then waits until all of them run and
/// answer AMQP.
fn join_all(members: &[Broker], ready_timeout: Duration) -> Result<(), BrokerError> {
    let deadline = Instant::now() + ready_timeout;
    let first = &members[0];
    let failed = |node: &Broker, e: CtlError| {
        BrokerError::Start(format!(
            "RabbitMQ node {} could not join {}: {e}",
            node.node_name(),
            first.node_name()
        ))
    };
    for node in &members[1..] {
        let ctl = Ctl::of(node);
        for step in [
            vec!["stop_app"],
            vec!["join_cluster", first.node_name()],
            vec!["start_app"],
        ] {
            ctl.run(&step, deadline).map_err(|e| failed(node, e))?;
        }
    }
    wait_running(first, members.len(), deadline)?;
    for node in members {
        node.wait_amqp(deadline).map_err(BrokerError::Start)?;
    }
    Ok(())
}

/// Until `node`'s `cluster_status` lists `expected` running nodes.
fn wait_running(node: &Broker, expected: usize, deadline: Instant) -> Result<(), BrokerError> {
    let ctl = Ctl::of(node);
    loop {
        let seen = ctl.running_nodes(deadline);
        match &seen {
            Ok(running) if running.len() >= expected => return Ok(()),
            _ if Instant::now() >= deadline => {
                let seen = match seen {
                    Ok(running) => format!("running: {}", running.join(", ")),
                    Err(e) => e.to_string(),
                };
                return Err(BrokerError::Start(format!(
                    "the RabbitMQ cluster did not report {expected} running nodes in time ({seen})"
                )));
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
