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
    /// The spawned servers' observations (merged over the nodes with `--instances`).
    pub observations: Option<ServerObservations>,
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
        (Some(m), Some(queue)) => Some(queue.drain(m, &loaded.published, loaded.epoch).await),
        _ => None,
    };
    let faults = match loaded.faults.take() {
        Some(plan) => plan.finish().await,
        None => Vec::new(),
    };

    let started = Instant::now();
    // Long enough for every order in flight to finish even at the client's timeout.
    let grace = options.plan.client.timeout.max(Duration::from_secs(60)) * 2;
    let (observations, balancer) = match (deployment.server.take(), deployment.cluster.take()) {
        (_, Some(cluster)) => {
            eprintln!(
                "loadtest: load finished; stopping the nodes so in-flight orders reach the file, then HAProxy"
            );
            let seconds = &loaded.aggregates.seconds;
            let (merged, report) = cluster.stop(grace, loaded.epoch, seconds).await;
            (Some(merged), Some(report))
        }
        (Some(server), None) => {
            eprintln!(
                "loadtest: load finished; stopping the server so in-flight orders reach the file"
            );
            let handle = sole_handle(server)?;
            (
                Some(handle.stop(grace, loaded.epoch.into_std()).await),
                None,
            )
        }
        (None, None) => {
            settle_remote(options, deployment.orders_file.as_deref()).await;
            (None, None)
        }
    };
    Ok(Settled {
        drained,
        faults,
        observations,
        balancer,
        duration: started.elapsed(),
    })
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
