//! Drain and settle: after the load, the queue is drained (messaging) while the fault plan
//! still runs, then the plan stops and the servers are stopped — each finishes its
//! in-flight orders, so the orders file is complete before it is reconciled. A remote
//! server cannot be stopped: the lab waits until its orders file stops growing.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::deploy::Deployment;
use super::load::Loaded;
use super::options::LabOptions;
use crate::messaging::Drained;
use crate::report::{BalancerReport, FaultEvent};
use crate::server::{ServerHandle, ServerObservations};

/// What the drain and the settle step saw.
pub(super) struct Settled {
    /// `None`: not a messaging run.
    pub drained: Option<Drained>,
    pub faults: Vec<FaultEvent>,
    /// The spawned servers' observations (merged over the nodes with `--instances`, and
    /// over the workers with `--workers`).
    pub observations: Option<ServerObservations>,
    /// The spawned servers one by one, by host (`worker0`, …; empty with `--instances`,
    /// whose nodes are in the `balancer` object).
    pub per_server: Vec<(String, ServerObservations)>,
    /// `--instances`: what HAProxy saw.
    pub balancer: Option<BalancerReport>,
    /// From the drain's end until the file was complete.
    pub duration: Duration,
}

/// Drains the queue, stops the fault plan, then stops the servers `deployment` holds.
pub(super) async fn drain_and_settle(
    options: &LabOptions,
    deployment: &mut Deployment,
    loaded: &mut Loaded,
) -> anyhow::Result<Settled> {
    let drained = match (&options.messaging, &loaded.queue) {
        (Some(m), Some(queue)) => Some(
            queue
                .drain(m, &loaded.sent.published, loaded.epoch, &deployment.brokers)
                .await,
        ),
        _ => None,
    };
    let faults = match loaded.faults.take() {
        Some(plan) => plan.finish().await,
        None => Vec::new(),
    };

    let started = Instant::now();
    // Long enough for every order in flight to finish even at the client's timeout.
    let grace = options.plan.client.timeout.max(Duration::from_secs(60)) * 2;
    let servers = std::mem::take(&mut deployment.servers);
    let (mut observations, mut balancer, mut per_server) = (None, None, Vec::new());
    if let Some(cluster) = deployment.cluster.take() {
        eprintln!(
            "loadtest: load finished; stopping the nodes so in-flight orders reach the file, then HAProxy"
        );
        let seconds = &loaded.aggregates.seconds;
        let (merged, report) = cluster.stop(grace, loaded.epoch, seconds).await;
        (observations, balancer) = (Some(merged), Some(report));
    } else if !servers.is_empty() {
        eprintln!(
            "loadtest: load finished; stopping the server{} so in-flight orders reach the file",
            if servers.len() > 1 { "s" } else { "" }
        );
        per_server = stop_servers(options, servers, grace, loaded.epoch).await?;
        observations = Some(merged(&per_server));
    } else {
        settle_remote(options, deployment.orders_file.as_deref()).await;
    }
    Ok(Settled {
        drained,
        faults,
        observations,
        per_server,
        balancer,
        duration: started.elapsed(),
    })
}

/// Stops every server side by side (each finishes its in-flight orders within `grace`);
/// their observations by host name.
async fn stop_servers(
    options: &LabOptions,
    servers: Vec<Arc<Mutex<ServerHandle>>>,
    grace: Duration,
    epoch: Instant,
) -> anyhow::Result<Vec<(String, ServerObservations)>> {
    let mut stops = Vec::with_capacity(servers.len());
    for server in servers {
        let handle = sole_handle(server)?;
        stops.push(tokio::spawn(handle.stop(grace, epoch.into_std())));
    }
    let mut stopped = Vec::with_capacity(stops.len());
    for (i, stop) in stops.into_iter().enumerate() {
        let host = options.server_role().host(i);
        stopped.push((host, stop.await.unwrap_or_default()));
    }
    Ok(stopped)
}

/// One server's observations as they are; several merged for the `server` object.
fn merged(per_server: &[(String, ServerObservations)]) -> ServerObservations {
    if let [(_, only)] = per_server {
        return only.clone();
    }
    let (names, observations): (Vec<String>, Vec<ServerObservations>) =
        per_server.iter().cloned().unzip();
    ServerObservations::merge(
        &names,
        observations,
        "workers on one queue",
        "the lab runs on",
    )
}

/// The server's handle, once the fault plan (its other holder) has finished.
fn sole_handle(server: Arc<Mutex<ServerHandle>>) -> anyhow::Result<ServerHandle> {
    Arc::try_unwrap(server)
        .map_err(|_| anyhow::anyhow!("the server's handle is still shared after the fault plan"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("the server's handle was poisoned by a panic"))
}

/// A remote server's in-flight work may still reach the file after the clients gave up:
/// wait until the file is unchanged for `--settle`.
async fn settle_remote(options: &LabOptions, orders_file: Option<&Path>) {
    let Some(path) = orders_file else { return };
    eprintln!(
        "loadtest: load finished; waiting until {} is unchanged for {:?}",
        path.display(),
        options.settle
    );
    wait_until_stable(path, options.settle, options.plan.client.timeout * 4).await;
}

/// Waits until the file's length has not changed for `window` (at most `limit`).
async fn wait_until_stable(path: &Path, window: Duration, limit: Duration) {
    let started = Instant::now();
    let len = || std::fs::metadata(path).map(|m| m.len()).ok();
    let mut last = len();
    let mut stable_since = Instant::now();
    while started.elapsed() < limit && stable_since.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = len();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
}
