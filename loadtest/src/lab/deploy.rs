//! Deploy and teardown: the hosts of the run started (or found) before the load, in
//! dependency order — the broker before the worker that consumes from it, the nodes before
//! the balancer in front of them — and stopped after it.
//!
//! Every host started here is owned by a guard that stops it when dropped, so a run that
//! fails half-way (or is interrupted) leaves nothing behind; [`Deployment::teardown`] is
//! the orderly stop at the end, which reports what did not stop cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use amqp_link::{AmqpUrl, AmqpUrls};
use anyhow::Context;

use super::options::{LabNetwork, LabOptions, Target};
use crate::broker::{Broker, BrokerNode, BrokerOptions, start_cluster};
use crate::cluster::Cluster;
use crate::faults::schedule::Deployed;
use crate::messaging::{BrokerSource, QueueProbe};
use crate::progress::CrashCount;
use crate::reconcile::FileMark;
use crate::server::ServerHandle;
use crate::topology::Role;

/// What the deploy step started, or found, for one run.
pub(super) struct Deployment {
    /// The private broker's nodes (`--spawn-broker`, `--broker-nodes N`); shared with the
    /// fault plan, which stops and restarts them.
    pub brokers: Vec<BrokerNode>,
    /// Where the broker is (every spawned node, or `--amqp-url`), for the queue probe.
    pub broker_urls: Option<AmqpUrls>,
    /// The spawned API (no `--instances`) or workers (`worker0`, … with `--workers K`),
    /// shared with the fault plan; empty for a remote target or a cluster.
    pub servers: Vec<Arc<Mutex<ServerHandle>>>,
    /// `--instances K`: the nodes and the HAProxy in front of them.
    pub cluster: Option<Cluster>,
    /// The file to reconcile, and where it stood before the load.
    pub orders_file: Option<PathBuf>,
    pub mark: std::io::Result<Option<FileMark>>,
    /// The (first) server's command line, for the report.
    pub server_command: Option<Vec<String>>,
    /// Abandons a broker start still in progress when the run is dropped.
    _cancel: CancelOnDrop,
}

/// Sets the flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Starts the run's hosts and points `options`' client (and spawned server) at them.
pub(super) async fn deploy(options: &mut LabOptions) -> anyhow::Result<Deployment> {
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let (brokers, broker_urls) = match options.messaging.as_ref().map(|m| &m.broker) {
        Some(BrokerSource::Spawn { nodes }) => {
            let cores = brokers_cores(options);
            let links: Vec<_> = (0..*nodes)
                .filter_map(|i| options.link(&Role::Broker.host(i)))
                .collect();
            let (brokers, urls) = start_brokers(*nodes, cores, links, cancel.0.clone()).await?;
            (brokers, Some(urls))
        }
        Some(BrokerSource::Url(urls)) => {
            let mut probe = QueueProbe::new(urls);
            probe.check().await?;
            probe.close().await;
            (Vec::new(), Some(urls.clone()))
        }
        None => (Vec::new(), None),
    };
    if let Some(urls) = &broker_urls {
        point_at_broker(options, urls);
    }
    let (servers, cluster) = start_target(options).await?;
    let orders_file = match &options.target {
        Target::Spawn(spec) => Some(spec.orders_file.clone()),
        Target::Remote { orders_file } => orders_file.clone(),
    };
    let server_command = match &cluster {
        Some(c) => c
            .nodes()
            .lock()
            .ok()
            .and_then(|n| n.first().map(ServerHandle::command_line)),
        None => servers.first().map(ServerHandle::command_line),
    };
    Ok(Deployment {
        brokers,
        broker_urls,
        servers: servers
            .into_iter()
            .map(|s| Arc::new(Mutex::new(s)))
            .collect(),
        cluster,
        mark: orders_file.as_deref().map(FileMark::take).transpose(),
        orders_file,
        server_command,
        _cancel: cancel,
    })
}

/// `--spawn-broker`: a private RabbitMQ of `nodes` nodes, outside the emulated VM; the URLs
/// of every node, the first node's first (clients fail over along the list).
async fn start_brokers(
    nodes: usize,
    cores: Option<Vec<usize>>,
    links: Vec<crate::network::HostLink>,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<(Vec<BrokerNode>, AmqpUrls)> {
    if nodes > 1 {
        eprintln!(
            "loadtest: starting a private RabbitMQ cluster of {nodes} nodes (usually 10-20 s)"
        );
    } else {
        eprintln!("loadtest: starting a private RabbitMQ broker (usually 4-13 s)");
    }
    let broker_options = BrokerOptions {
        progress: true,
        cancel: Some(cancel),
        cores,
        ..BrokerOptions::default()
    };
    let brokers = tokio::task::spawn_blocking(move || start_cluster(nodes, broker_options, &links))
        .await
        .context("the broker start-up task failed")?
        .context("cannot start the private broker (--spawn-broker)")?;
    let urls = brokers
        .iter()
        .map(|b| AmqpUrl::parse(&b.amqp_url()))
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .and_then(AmqpUrls::new)
        .context("the private broker's own URLs are unusable (a bug in loadtest)")?;
    for broker in &brokers {
        eprintln!(
            "loadtest: broker {} ready on {} (data in {})",
            broker.node_name(),
            amqp_link::redact(&broker.amqp_url()),
            broker.data_dir().display()
        );
    }
    let brokers = brokers.into_iter().enumerate();
    Ok((brokers.map(|(i, b)| BrokerNode::new(i, b)).collect(), urls))
}

/// Where the private brokers run: beside the lab, on the cores the confined servers will
/// leave free (a broker node is a machine of its own in the model, but this one has only
/// so many cores; what it must not do is take an emulated VM's CPU). `None` (anywhere)
/// when the servers are not confined to a CPU share or leave no core free — the report's
/// topology then shows brokers without cores, sharing with everyone.
fn brokers_cores(options: &LabOptions) -> Option<Vec<usize>> {
    let Target::Spawn(spec) = &options.target else {
        return None;
    };
    crate::confine::cores_left_by_confined(spec.limits.cpus?, options.spawned_servers())
}

/// The publisher and the spawned worker go to the brokers at `urls` (the worker gets them
/// as one comma-separated `--amqp-url`).
fn point_at_broker(options: &mut LabOptions, urls: &AmqpUrls) {
    let Some(m) = &options.messaging else { return };
    options.plan.client.amqp = Some((urls.clone(), m.delivery));
    if let Target::Spawn(spec) = &mut options.target {
        spec.lab_args = vec![
            "--amqp-url".into(),
            urls.secret(),
            "--delivery".into(),
            m.delivery.as_str().into(),
        ];
    }
}

/// The API or workers the load goes to: one process, K nodes behind HAProxy, K workers
/// on one queue, or a remote server (nothing to start). Points the HTTP client at what was
/// started.
async fn start_target(
    options: &mut LabOptions,
) -> anyhow::Result<(Vec<ServerHandle>, Option<Cluster>)> {
    let Target::Spawn(spec) = &options.target else {
        return Ok((Vec::new(), None));
    };
    let (servers, cluster, url) = match &options.scale_out {
        Some(scale) => {
            let timeout = options.plan.client.timeout;
            let network = options.network.as_ref().and_then(|n| n.built.as_deref());
            let cluster =
                Cluster::start(spec, scale.instances, &options.out_dir, timeout, network).await?;
            let url = cluster.url();
            (Vec::new(), Some(cluster), url)
        }
        None => {
            let count = options.spawned_servers();
            let network = options.network.as_ref();
            let servers = start_servers(spec, count, &options.out_dir, network).await?;
            let url = servers[0].url().to_string();
            (servers, None, url)
        }
    };
    options.plan.client.base_url = inventory::BaseUrl::parse(&url)
        .with_context(|| format!("the address {url} the lab started is unusable"))?;
    Ok((servers, cluster))
}

/// `count` servers from `spec`, one after the other: one alone as today (its log
/// `OUT/server.log`); several (`--workers K`) each on core slot `i` with its log in
/// `OUT/server.worker<i>.log`.
async fn start_servers(
    spec: &crate::server::ServerSpec,
    count: usize,
    out_dir: &std::path::Path,
    network: Option<&LabNetwork>,
) -> anyhow::Result<Vec<ServerHandle>> {
    let mut servers = Vec::with_capacity(count);
    for i in 0..count {
        let mut spec = spec.clone();
        let host = spec.kind.role().host(i);
        spec.link = network.and_then(|n| n.link(&host));
        if count > 1 {
            spec.core_slot = i;
            spec.log_file = Some(out_dir.join(format!("server.{host}.log")));
        }
        let of = format!("{} of {count}", i + 1);
        servers.push(ServerHandle::start_host(spec, &host, &of).await?);
    }
    Ok(servers)
}

impl Deployment {
    /// The servers' crashes so far, for the progress line.
    pub fn crash_count(&self) -> Option<CrashCount> {
        if let Some(cluster) = &self.cluster {
            let nodes = cluster.nodes();
            return Some(Box::new(move || Cluster::crashes_so_far(&nodes)));
        }
        if self.servers.is_empty() {
            return None;
        }
        let servers = self.servers.clone();
        Some(Box::new(move || {
            (servers.iter())
                .map(|s| s.lock().map(|s| s.crashes_so_far()).unwrap_or(0))
                .sum()
        }))
    }

    /// The spawned workers' probe addresses, to read what they hold.
    pub fn worker_addrs(&self) -> Vec<SocketAddr> {
        (self.servers.iter())
            .filter_map(|s| s.lock().ok().map(|s| s.addr()))
            .collect()
    }

    /// What the fault plan may act on.
    pub fn fault_targets(&self, options: &LabOptions) -> Deployed {
        Deployed {
            servers: (self.servers.iter().enumerate())
                .map(|(i, s)| (options.server_role().host(i), s.clone()))
                .collect(),
            nodes: self
                .cluster
                .as_ref()
                .zip(options.scale_out)
                .map(|(c, scale)| (c.nodes(), scale.down_for)),
            brokers: self.brokers.clone(),
            last_leader: Arc::default(),
            network: (options.network.as_ref())
                .and_then(|n| n.built.clone())
                .map(|n| (n, options.topology())),
        }
    }

    /// The orderly stop of what is still running (the servers stopped at the settle step):
    /// the private broker's nodes, the last first; a warning names a node that did not stop
    /// cleanly.
    pub async fn teardown(self) {
        let brokers: Vec<Broker> = (self.brokers.iter().rev())
            .filter_map(|n| n.broker.lock().ok().and_then(|mut b| b.take()))
            .collect();
        if brokers.is_empty() {
            return;
        }
        eprintln!("loadtest: stopping the private broker");
        let stopped = tokio::task::spawn_blocking(move || {
            for broker in brokers {
                let node = broker.node_name().to_string();
                if let Err(e) = broker.stop() {
                    eprintln!("loadtest: warning: the broker {node} did not stop cleanly: {e}");
                }
            }
        });
        if let Err(e) = stopped.await {
            eprintln!("loadtest: warning: the broker stop task failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_options(args: &[&str]) -> LabOptions {
        let argv = ["loadtest", "run"].iter().chain(args);
        let Command::Run(run) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!("parsed a run")
        };
        run.into_options().unwrap()
    }

    #[test]
    fn the_publisher_and_the_spawned_worker_get_every_broker_in_order() {
        let (a, b) = (
            "amqp://guest:s3cret@127.0.0.1:5672/%2f",
            "amqp://guest:s3cret@[::1]:5673/%2f",
        );
        let mut options = run_options(&[
            "--transport",
            "amqp",
            "--amqp-url",
            &format!("{a}, {b}"),
            "--spawn-server",
            "--server-bin",
            "/bin/true",
        ]);
        let Some(BrokerSource::Url(urls)) = options.messaging.as_ref().map(|m| m.broker.clone())
        else {
            panic!("the brokers given")
        };
        point_at_broker(&mut options, &urls);
        let (published_to, _) = options.plan.client.amqp.as_ref().unwrap();
        assert_eq!(published_to, &urls);
        let Target::Spawn(spec) = &options.target else {
            panic!("a spawned worker")
        };
        // One argument, as given, passwords and all: the worker's own parser splits it.
        assert_eq!(
            spec.lab_args[..2],
            ["--amqp-url".to_owned(), format!("{a},{b}")]
        );
    }
}
