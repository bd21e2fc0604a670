//! The load and the fault plan together: the client built before the clock starts, the
//! watchers (progress line, queue, balancer) and the fault plan started with it, the load
//! run to its end and every record folded in. The fault plan keeps running through the
//! drain (a worker is busiest draining); the settle step stops it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::time::Instant;

use super::deploy::Deployment;
use super::options::LabOptions;
use super::queue::QueueWatch;
use super::recorder::{Recorder, Sent};
use crate::cluster::Watcher;
use crate::faults::schedule::Schedule;
use crate::progress::report_progress;
use crate::runner::{self, Live, Load};
use crate::stats::Aggregates;
use crate::topology::Topology;

/// The run so far, once the load is over.
pub(super) struct Loaded {
    /// Wall-clock start, RFC 3339, for the report.
    pub started_at: String,
    /// The run's clock: every time in the report is since this instant.
    pub epoch: Instant,
    /// When the load ended, since the epoch.
    pub load_end: Duration,
    pub aggregates: Aggregates,
    /// Every request's code and outcome, read back from the CSV.
    pub sent: Sent,
    /// How long the publisher's connection took, when it was opened before the load.
    pub connect_ms: Option<f64>,
    pub topology: Topology,
    /// `--balancer-url` with a stats socket.
    pub watcher: Option<Watcher>,
    /// Messaging runs.
    pub queue: Option<QueueWatch>,
    /// Still running: stopped after the drain (and taken then).
    pub faults: Option<Schedule>,
}

/// Runs the load against what `deployment` holds, with the fault plan alongside.
pub(super) async fn run_load(
    options: &LabOptions,
    deployment: &mut Deployment,
) -> anyhow::Result<Loaded> {
    let step_profile = match options.plan.load {
        Load::Closed { profile, .. } => Some(profile),
        Load::Open(_) => None,
    };
    let (recorder, records) =
        Recorder::start(&options.out_dir, step_profile, options.messaging.is_some())?;
    let client = options.plan.client.build()?;
    let connect_ms = connect_publisher(options, &client).await?;

    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let epoch = Instant::now();
    let live = Arc::new(Live::default());
    let progress = tokio::spawn(report_progress(
        epoch,
        live.clone(),
        deployment.crash_count(),
    ));
    let queue = watch_queue(options, deployment, &live, epoch);
    let watcher = (options.external_balancer.as_ref())
        .map(|b| Watcher::start(b, epoch))
        .transpose()?;
    if let Some(cluster) = &mut deployment.cluster {
        cluster.begin(epoch);
    }
    let topology = super::hosts::deployed_topology(options, deployment);
    let faults = Schedule::start(&options.faults, deployment.fault_targets(options), epoch);

    let plan = options.plan.clone();
    let cpu_before = own_cpu_seconds();
    let gauges = runner::run(plan, client, epoch, live, records).await;
    let load_end = epoch.elapsed();
    let _ = progress.await;
    let (aggregator, sent) = recorder.finish()?;
    let mut aggregates = aggregator.finish(&gauges);
    aggregates.generator.cpu_seconds = cpu_before
        .zip(own_cpu_seconds())
        .map(|(before, after)| after - before);
    Ok(Loaded {
        started_at,
        epoch,
        load_end,
        aggregates,
        sent,
        connect_ms,
        topology,
        watcher,
        queue,
        faults: Some(faults),
    })
}

/// CPU time (user + system) of this process so far, every thread counted: the lab's load
/// generator, its recorder and its watchers. `None` if the kernel will not say.
fn own_cpu_seconds() -> Option<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// A publisher that keeps one connection opens it before the clock starts, as a
/// long-running service does at start-up: otherwise the first users' publishes all wait
/// for its handshake (tens of ms, 2 % of the blog profile's 1000 publishes — exactly its
/// p99) and a one-off start-up cost is read as publish latency. With `--connection new`
/// the handshake is part of every publish, as in the original.
async fn connect_publisher(
    options: &LabOptions,
    client: &inventory::StockManager,
) -> anyhow::Result<Option<f64>> {
    let client_options = &options.plan.client;
    if client_options.amqp.is_none() || client_options.new_connection_per_request {
        return Ok(None);
    }
    let started = Instant::now();
    client
        .connect()
        .await
        .context("cannot connect the publisher before the load")?;
    // Whole microseconds, as the latency histograms record.
    let ms = started.elapsed().as_micros() as f64 / 1000.0;
    eprintln!(
        "loadtest: publisher connected in {ms:.0} ms (before the load, not counted as publish latency)"
    );
    Ok(Some(ms))
}

/// Messaging runs: the queue monitor and the orders-file tail, from the epoch.
fn watch_queue(
    options: &LabOptions,
    deployment: &Deployment,
    live: &Arc<Live>,
    epoch: Instant,
) -> Option<QueueWatch> {
    let (m, urls) = (
        options.messaging.as_ref()?,
        deployment.broker_urls.as_ref()?,
    );
    let orders = match (&deployment.orders_file, &deployment.mark) {
        (Some(path), Ok(Some(mark))) => Some((path.as_path(), *mark)),
        _ => None,
    };
    let workers = deployment.worker_addrs();
    Some(QueueWatch::start(
        urls, m.delivery, orders, workers, live, epoch,
    ))
}
