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

use amqp_link::AmqpUrl;
use anyhow::Context;

use super::options::{LabOptions, Target};
use crate::broker::{Broker, BrokerNode, BrokerOptions, start_cluster};
use crate::cluster::Cluster;
use crate::faults::schedule::Deployed;
use crate::messaging::{BrokerSource, QueueProbe};
use crate::progress::CrashCount;
use crate::reconcile::FileMark;
use crate::server::ServerHandle;

/// What the deploy step started, or found, for one run.
pub(super) struct Deployment {
    /// The private broker's nodes (`--spawn-broker`, `--broker-nodes N`); shared with the
    /// fault plan, which stops and restarts them.
    pub brokers: Vec<BrokerNode>,
    /// Where the broker is (spawned or `--amqp-url`), for the publisher and the probe.
    pub broker_url: Option<AmqpUrl>,
    /// The one spawned API or worker (no `--instances`).
    pub server: Option<Arc<Mutex<ServerHandle>>>,
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
    let (brokers, broker_url) = match options.messaging.as_ref().map(|m| &m.broker) {
        Some(BrokerSource::Spawn { nodes }) => {
            let (brokers, url) = start_brokers(*nodes, cancel.0.clone()).await?;
            (brokers, Some(url))
        }
        Some(BrokerSource::Url(url)) => {
            let mut probe = QueueProbe::new(url);
            probe.check().await?;
            probe.close().await;
            (Vec::new(), Some(url.clone()))
        }
        None => (Vec::new(), None),
    };
    if let Some(url) = &broker_url {
        point_at_broker(options, url);
    }
    let (server, cluster) = start_target(options).await?;
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
        None => server.as_ref().map(ServerHandle::command_line),
    };
    Ok(Deployment {
        brokers,
        broker_url,
        server: server.map(|s| Arc::new(Mutex::new(s))),
        cluster,
        mark: orders_file.as_deref().map(FileMark::take).transpose(),
        orders_file,
        server_command,
        _cancel: cancel,
    })
}

/// `--spawn-broker`: a private RabbitMQ of `nodes` nodes, outside the emulated VM; the URL
/// of the first node.
async fn start_brokers(
    nodes: usize,
    cancel: Arc<AtomicBool>,
) -> anyhow::Result<(Vec<BrokerNode>, AmqpUrl)> {
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
        ..BrokerOptions::default()
    };
    let brokers = tokio::task::spawn_blocking(move || start_cluster(nodes, broker_options))
        .await
        .context("the broker start-up task failed")?
        .context("cannot start the private broker (--spawn-broker)")?;
    let url = AmqpUrl::parse(&brokers[0].amqp_url())
        .context("the private broker's own URL is unusable (a bug in loadtest)")?;
    for broker in &brokers {
        eprintln!(
            "loadtest: broker {} ready on {} (data in {})",
            broker.node_name(),
            amqp_link::redact(&broker.amqp_url()),
            broker.data_dir().display()
        );
    }
    let brokers = brokers.into_iter().enumerate();
    Ok((brokers.map(|(i, b)| BrokerNode::new(i, b)).collect(), url))
}

/// The publisher and the spawned worker go to the broker at `url`.
fn point_at_broker(options: &mut LabOptions, url: &AmqpUrl) {
    let Some(m) = &options.messaging else { return };
    options.plan.client.amqp = Some((url.clone(), m.delivery));
    if let Target::Spawn(spec) = &mut options.target {
        spec.lab_args = vec![
            "--amqp-url".into(),
            url.secret().into(),
            "--delivery".into(),
            m.delivery.as_str().into(),
        ];
    }
}

/// The API or worker the load goes to: one process, K nodes behind HAProxy, or a remote
/// server (nothing to start). Points the HTTP client at what was started.
async fn start_target(
    options: &mut LabOptions,
) -> anyhow::Result<(Option<ServerHandle>, Option<Cluster>)> {
    let Target::Spawn(spec) = &options.target else {
        return Ok((None, None));
    };
    let (server, cluster, url) = match &options.scale_out {
        Some(scale) => {
            let timeout = options.plan.client.timeout;
            let cluster = Cluster::start(spec, scale.instances, &options.out_dir, timeout).await?;
            let url = cluster.url();
            (None, Some(cluster), url)
        }
        None => {
            let handle = ServerHandle::start(spec.clone()).await?;
            let url = handle.url().to_string();
            eprintln!(
                "loadtest: started {} → {url}",
                handle.command_line().join(" ")
            );
            (Some(handle), None, url)
        }
    };
    options.plan.client.base_url = inventory::BaseUrl::parse(&url)
        .with_context(|| format!("the address {url} the lab started is unusable"))?;
    Ok((server, cluster))
}

impl Deployment {
    /// The servers' crashes so far, for the progress line.
    pub fn crash_count(&self) -> Option<CrashCount> {
        if let Some(cluster) = &self.cluster {
            let nodes = cluster.nodes();
            return Some(Box::new(move || Cluster::crashes_so_far(&nodes)));
        }
        let server = self.server.clone()?;
        Some(Box::new(move || {
            server.lock().map(|s| s.crashes_so_far()).unwrap_or(0)
        }))
    }

    /// The spawned worker's probe address, to read what it holds.
    pub fn worker_addr(&self) -> Option<SocketAddr> {
        self.server
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.addr()))
    }

    /// What the fault plan may act on.
    pub fn fault_targets(&self, options: &LabOptions) -> Deployed {
        Deployed {
            server: self
                .server
                .as_ref()
                .map(|s| (options.server_role().host(0), s.clone())),
            nodes: self
                .cluster
                .as_ref()
                .zip(options.scale_out)
                .map(|(c, scale)| (c.nodes(), scale.down_for)),
            brokers: self.brokers.clone(),
            last_leader: Arc::default(),
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
