//! One lab run from start to report: start (or find) the target, drive the load while
//! recording every request, let the server settle, reconcile the orders file, write the
//! report files.
//!
//! With `--transport amqp` ([`LabOptions::messaging`]) the same run drives publishes
//! instead of calls: the lab starts (or is given) a broker, spawns the worker instead of
//! the API, samples the queue ([`crate::messaging`]) and tails the orders file for the
//! end-to-end latency ([`crate::e2e`]) while the load runs, waits for the queue to drain,
//! injects the faults asked for, then stops the worker and reconciles with the
//! still-queued rule.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::broker::{Broker, BrokerOptions, SharedBroker};
use crate::cluster::{Cluster, Watcher};
use crate::e2e::{OrdersTail, end_to_end, percentiles};
use crate::faults::schedule::{Deployed, Schedule};
use crate::messaging::MessagingOptions;
use crate::messaging::{
    BrokerSource, Monitor, MonitorInputs, MonitorState, QueueProbe, drain_rate, split_absent,
    wait_for_drain,
};
use crate::progress::{CrashCount, report_progress};
use crate::reconcile::{FileMark, reconcile};
use crate::record::{CsvWriter, RequestRecord};
use crate::report::{self, BrokerReport, CrashEvent, MessagingReport, Reconciliation, Report};
use crate::runner::{self, Live, Load};
use crate::server::ServerHandle;
use crate::stats::{Aggregates, Aggregator};
use crate::threshold;

mod build;
mod hosts;
mod options;

use build::build_report;
pub use build::write_report_files;
use hosts::deployed_topology;
pub use options::{LabOptions, Target};

/// Records buffered between the senders and the recorder thread.
const RECORD_BUFFER: usize = 8192;

/// How often the server's memory and CPU are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Sets the flag when dropped: abandons a broker start in progress if the run is dropped.
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What the messaging side of a run measured, for the report.
struct MessagingOutcome {
    report: MessagingReport,
    samples: Vec<report::QueueSample>,
    broker: Option<BrokerReport>,
}

/// Runs the lab and writes `report.json`, `requests.csv` and `report.html` to
/// `out_dir`. Returns the report (thresholds evaluated).
pub async fn run_lab(mut options: LabOptions) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&options.out_dir).with_context(|| {
        format!(
            "cannot create the output directory {}",
            options.out_dir.display()
        )
    })?;

    // The broker (messaging), before the worker that consumes from it.
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let mut broker_url: Option<String> = None;
    let broker: Option<SharedBroker> = match options.messaging.as_ref().map(|m| &m.broker) {
        Some(BrokerSource::Spawn) => {
            eprintln!("loadtest: starting a private RabbitMQ broker (usually 4-13 s)");
            let broker_options = BrokerOptions {
                progress: true,
                cancel: Some(cancel.clone()),
                ..BrokerOptions::default()
            };
            let broker = tokio::task::spawn_blocking(move || Broker::start(broker_options))
                .await
                .context("the broker start-up task failed")?
                .context("cannot start the private broker (--spawn-broker)")?;
            eprintln!(
                "loadtest: broker ready on {} (data in {})",
                broker.amqp_url(),
                broker.data_dir().display()
            );
            broker_url = Some(broker.amqp_url());
            Some(Arc::new(Mutex::new(Some(broker))))
        }
        Some(BrokerSource::Url(url)) => {
            let mut probe = QueueProbe::new(url);
            probe.check().await.map_err(|e| anyhow::anyhow!(e))?;
            probe.close().await;
            broker_url = Some(url.clone());
            None
        }
        None => None,
    };
    if let (Some(m), Some(url)) = (&options.messaging, &broker_url) {
        let parsed = inventory::AmqpUrl::parse(url)
            .map_err(|e| anyhow::anyhow!("the broker URL {url} is unusable: {e}"))?;
        options.plan.client.amqp = Some((parsed, m.delivery));
        if let Target::Spawn(spec) = &mut options.target {
            spec.lab_args = vec![
                "--amqp-url".into(),
                url.clone(),
                "--delivery".into(),
                m.delivery.as_str().into(),
            ];
        }
    }

    // The target.
    let mut cluster = None;
    let (server, orders_file) = match &options.target {
        Target::Spawn(spec) if let Some(scale) = &options.scale_out => {
            let started = Cluster::start(
                spec,
                scale.instances,
                &options.out_dir,
                options.plan.client.timeout,
            )
            .await?;
            let url = started.url();
            options.plan.client.base_url = inventory::BaseUrl::parse(&url)
                .map_err(|e| anyhow::anyhow!("the balancer's address {url} is unusable: {e}"))?;
            cluster = Some(started);
            (None, Some(spec.orders_file.clone()))
        }
        Target::Spawn(spec) => {
            let handle = ServerHandle::start(spec.clone()).await?;
            eprintln!(
                "loadtest: started {} → {}",
                handle.command_line().join(" "),
                handle.url()
            );
            let url = handle.url().to_string();
            options.plan.client.base_url = inventory::BaseUrl::parse(&url).map_err(|e| {
                anyhow::anyhow!("the spawned server's address {url} is unusable: {e}")
            })?;
            (Some(handle), Some(spec.orders_file.clone()))
        }
        Target::Remote { orders_file } => (None, orders_file.clone()),
    };
    let server_command = match &cluster {
        Some(c) => c
            .nodes()
            .lock()
            .ok()
            .and_then(|n| n.first().map(ServerHandle::command_line)),
        None => server.as_ref().map(ServerHandle::command_line),
    };
    let mark = orders_file.as_deref().map(FileMark::take).transpose();

    // The load, with a recorder thread writing the CSV and aggregating.
    let csv_path = options.out_dir.join("requests.csv");
    let csv_file =
        File::create(&csv_path).with_context(|| format!("cannot create {}", csv_path.display()))?;
    let csv = CsvWriter::new(BufWriter::new(csv_file))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let step_profile = match options.plan.load {
        Load::Closed { profile, .. } => Some(profile),
        Load::Open(_) => None,
    };
    let (records_tx, records_rx) = mpsc::channel(RECORD_BUFFER);
    let keep_publish_times = options.messaging.is_some();
    let recorder = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            record_all(
                records_rx,
                csv,
                Aggregator::new(step_profile),
                keep_publish_times,
            )
        })
        .context("cannot start the recorder thread")?;

    let server = server.map(|s| Arc::new(Mutex::new(s)));
    let crash_count: Option<CrashCount> = match &cluster {
        Some(c) => {
            let nodes = c.nodes();
            Some(Box::new(move || Cluster::crashes_so_far(&nodes)))
        }
        None => server.clone().map(|s| -> CrashCount {
            Box::new(move || s.lock().map(|s| s.crashes_so_far()).unwrap_or(0))
        }),
    };
    // The client, built before the clock starts. A publisher that keeps one connection
    // opens it now, as a long-running service does at start-up: otherwise the first users'
    // publishes all wait for its handshake (tens of ms, 2 % of the blog profile's 1000
    // publishes — exactly its p99) and a one-off start-up cost is read as publish latency.
    // With `--connection new` the handshake is part of every publish, as in the original.
    let client = options.plan.client.build()?;
    let connect_ms = match &options.plan.client.amqp {
        Some(_) if !options.plan.client.new_connection_per_request => {
            let started = Instant::now();
            client.connect().await.map_err(|e| {
                anyhow::anyhow!("cannot connect the publisher before the load: {e}")
            })?;
            // Whole microseconds, as the latency histograms record.
            let ms = started.elapsed().as_micros() as f64 / 1000.0;
            eprintln!(
                "loadtest: publisher connected in {ms:.0} ms (before the load, not counted as publish latency)"
            );
            Some(ms)
        }
        _ => None,
    };
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let epoch = Instant::now();
    let live = Arc::new(Live::default());
    let progress = tokio::spawn(report_progress(epoch, live.clone(), crash_count));

    // Messaging: the queue monitor, the orders-file tail and the fault injectors.
    let tail = match (&options.messaging, &orders_file, &mark) {
        (Some(_), Some(path), Ok(Some(mark))) => {
            Some(OrdersTail::start(path.clone(), mark.len, epoch))
        }
        _ => None,
    };
    let tail = tail.map(Arc::new);
    let monitor = match (&options.messaging, &broker_url) {
        (Some(m), Some(url)) => {
            let written: Box<dyn Fn() -> u64 + Send> = match &tail {
                Some(t) => {
                    let t = t.clone();
                    Box::new(move || t.lines())
                }
                None => Box::new(|| 0),
            };
            let acknowledged = {
                let live = live.clone();
                Box::new(move || live.acknowledged.load(std::sync::atomic::Ordering::Relaxed))
            };
            let inputs = MonitorInputs {
                worker: server
                    .as_ref()
                    .and_then(|s| s.lock().ok().map(|s| s.addr())),
                delivery: m.delivery,
                written,
                acknowledged,
            };
            Some(Monitor::start(
                QueueProbe::new(url),
                inputs,
                epoch,
                SAMPLE_EVERY,
            ))
        }
        _ => None,
    };
    let restart_events: Arc<Mutex<Vec<CrashEvent>>> = Arc::default();
    let watcher = options
        .external_balancer
        .as_ref()
        .map(|b| Watcher::start(b, epoch))
        .transpose()?;
    if let Some(cluster) = &mut cluster {
        cluster.begin(epoch);
    }
    let topology = deployed_topology(&options, server.as_ref(), cluster.as_ref());
    let deployed = Deployed {
        server: server
            .as_ref()
            .map(|s| (options.server_role().host(0), s.clone())),
        nodes: cluster
            .as_ref()
            .zip(options.scale_out)
            .map(|(c, scale)| (c.nodes(), scale.down_for)),
        broker: broker.clone().map(|b| (b, restart_events.clone())),
    };
    // Through the load and the drain (a worker is busiest draining): the plan is stopped
    // once the drain is over, before the hosts are.
    let faults = Schedule::start(&options.faults, deployed, epoch);

    let gauges = runner::run(
        options.plan.clone(),
        client,
        epoch,
        live.clone(),
        records_tx,
    )
    .await;
    let load_end = epoch.elapsed();
    let _ = progress.await;
    let (aggregator, published) = recorder
        .join()
        .map_err(|_| anyhow::anyhow!("the recorder thread panicked"))?
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let aggregates = aggregator.finish(&gauges);

    // Messaging: wait for the queue to drain before the worker is stopped.
    let drained = match (&options.messaging, &monitor) {
        (Some(m), Some(monitor)) => {
            eprintln!(
                "loadtest: load finished; waiting for the queue to drain (at most {:.0} s, --drain-timeout)",
                m.drain_timeout.as_secs_f64()
            );
            let acked: Vec<uuid::Uuid> = published.keys().copied().collect();
            let all_written = || match &tail {
                Some(t) => {
                    let seen = t.snapshot();
                    acked.iter().all(|c| seen.first_seen.contains_key(c))
                }
                None => false,
            };
            Some(
                wait_for_drain(
                    monitor,
                    m.delivery,
                    epoch,
                    m.drain_timeout,
                    SAMPLE_EVERY,
                    all_written,
                )
                .await,
            )
        }
        _ => None,
    };
    let fault_events = faults.finish().await;

    // Settle: in-flight work may still reach the file after the clients gave up.
    let settle_started = Instant::now();
    let mut balancer_report = None;
    let observations = match (server, cluster) {
        (_, Some(cluster)) => {
            eprintln!(
                "loadtest: load finished; stopping the nodes so in-flight orders reach the file, then HAProxy"
            );
            let grace = options.plan.client.timeout.max(Duration::from_secs(60)) * 2;
            let (merged, report) = cluster.stop(grace, epoch, &aggregates.seconds).await;
            balancer_report = Some(report);
            Some(merged)
        }
        (Some(server), None) => {
            eprintln!(
                "loadtest: load finished; stopping the server so in-flight orders reach the file"
            );
            let handle = Arc::try_unwrap(server)
                .map_err(|_| anyhow::anyhow!("server handle still shared"))?
                .into_inner()
                .map_err(|_| anyhow::anyhow!("server handle poisoned"))?;
            let grace = options.plan.client.timeout.max(Duration::from_secs(60)) * 2;
            Some(handle.stop(grace, epoch.into_std()).await)
        }
        (None, None) => {
            if let Some(path) = &orders_file {
                eprintln!(
                    "loadtest: load finished; waiting until {} is unchanged for {:?}",
                    path.display(),
                    options.settle
                );
                wait_until_stable(path, options.settle, options.plan.client.timeout * 4).await;
            }
            None
        }
    };
    let settle = settle_started.elapsed();

    // Messaging: the last look at the queue (after the worker stopped, a reliable worker's
    // unacknowledged messages are back in it), then the broker goes.
    let messaging = match (&options.messaging, monitor) {
        (Some(m), Some(monitor)) => {
            let (mut probe, state) = monitor.finish().await;
            let still_ready = probe.ready(wire_contract::amqp::QUEUE).await;
            let dead_lettered = match m.delivery {
                inventory::DeliveryMode::Reliable => {
                    probe.ready(wire_contract::amqp::DEAD_LETTER_QUEUE).await
                }
                inventory::DeliveryMode::Faithful => Some(0),
            };
            probe.close().await;
            let sightings = match tail {
                Some(t) => match Arc::try_unwrap(t) {
                    Ok(t) => t.finish().await,
                    Err(t) => t.snapshot(),
                },
                None => Default::default(),
            };
            let e2e = end_to_end(&published, &sightings.first_seen);
            let last_written = published
                .keys()
                .filter_map(|c| sightings.first_seen.get(c))
                .max()
                .copied();
            let broker_report = broker.as_ref().map(|_| {
                let events = restart_events.lock().map(|e| e.clone()).unwrap_or_default();
                BrokerReport {
                    spawned: true,
                    restarts: events.len() as u64,
                    restart_events: events,
                }
            });
            Some(messaging_outcome(
                m,
                state,
                &aggregates,
                &published,
                connect_ms,
                &e2e,
                last_written,
                drained.and_then(|d| d.after),
                load_end,
                still_ready,
                dead_lettered,
                broker_report,
            ))
        }
        _ => None,
    };
    if let Some(broker) = broker.and_then(|b| b.lock().ok().and_then(|mut b| b.take())) {
        eprintln!("loadtest: stopping the private broker");
        match tokio::task::spawn_blocking(move || broker.stop()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("loadtest: warning: the broker did not stop cleanly: {e}"),
            Err(e) => eprintln!("loadtest: warning: the broker stop task failed: {e}"),
        }
    }

    let reconciliation = match (orders_file, mark) {
        (None, _) => unavailable(
            None,
            "no orders file: pass --orders-file with a path readable here (or --spawn-server)"
                .into(),
        ),
        (Some(path), Err(e)) => {
            unavailable(Some(&path), format!("cannot read {}: {e}", path.display()))
        }
        (Some(path), Ok(mark)) => {
            let mark = mark.expect("a mark is taken whenever there is an orders file");
            match mark.read_since(&path) {
                Ok(written) => {
                    let c = reconcile(&aggregates.sent, &written);
                    let (lost, still_queued) = match &messaging {
                        Some(m) => {
                            let (lost, queued) = split_absent(c.lost, m.report.still_ready);
                            (lost, Some(queued))
                        }
                        None => (c.lost, None),
                    };
                    Reconciliation {
                        available: true,
                        unavailable_reason: None,
                        orders_file: Some(path.display().to_string()),
                        acknowledged_persisted: Some(c.acknowledged_persisted),
                        lost: Some(lost),
                        still_queued,
                        ghost: Some(c.ghost),
                        failed_absent: Some(c.failed_absent),
                        duplicates: Some(c.duplicates),
                        unexpected: Some(c.unexpected),
                        malformed_lines: Some(c.malformed_lines),
                        settle_s: Some(settle.as_secs_f64()),
                    }
                }
                Err(reason) => unavailable(Some(&path), reason),
            }
        }
    };

    let mut report = build_report(
        &options,
        started_at,
        server_command,
        aggregates,
        observations,
        reconciliation,
    );
    report.balancer = balancer_report.or_else(|| watcher.map(Watcher::finish));
    report.topology = Some(topology);
    report.faults = fault_events;
    if let Some(m) = messaging {
        report.run.transport = "amqp".into();
        if let Some((url, _)) = &options.plan.client.amqp {
            report.run.url = url.to_string();
        }
        report.messaging = Some(m.report);
        report.broker = m.broker;
        report.timeline.queue = m.samples;
    }
    report.thresholds = threshold::evaluate(&report, &options.thresholds);
    write_report_files(&report, &options.out_dir)?;
    Ok(report)
}

/// Item code → the start of its acknowledged publish (messaging runs), for the
/// end-to-end matcher.
type PublishTimes = std::collections::HashMap<uuid::Uuid, Duration>;

fn record_all(
    mut records: mpsc::Receiver<RequestRecord>,
    mut csv: CsvWriter<BufWriter<File>>,
    mut aggregator: Aggregator,
    keep_publish_times: bool,
) -> std::io::Result<(Aggregator, PublishTimes)> {
    let mut published = PublishTimes::new();
    while let Some(record) = records.blocking_recv() {
        csv.write(&record)?;
        aggregator.add(&record);
        if keep_publish_times && record.outcome.is_acknowledged() {
            published.insert(record.item_code, record.started);
        }
    }
    csv.finish()?;
    Ok((aggregator, published))
}

/// The messaging report from what the monitor, the tail and the drain saw.
#[allow(clippy::too_many_arguments)]
fn messaging_outcome(
    options: &MessagingOptions,
    state: MonitorState,
    aggregates: &Aggregates,
    published: &PublishTimes,
    connect_ms: Option<f64>,
    e2e: &[Duration],
    last_written: Option<Duration>,
    drain: Option<Duration>,
    load_end: Duration,
    still_ready: Option<u64>,
    dead_lettered: Option<u64>,
    broker: Option<BrokerReport>,
) -> MessagingOutcome {
    let samples = state.samples;
    let queue_depth_max = samples
        .iter()
        .filter_map(|s| match (s.ready, s.at_worker) {
            (None, None) => None,
            (r, w) => Some(r.unwrap_or(0) + w.unwrap_or(0)),
        })
        .max();
    let mut e2e_percentiles = percentiles(e2e);
    e2e_percentiles.count = e2e.len() as u64;
    let report = MessagingReport {
        delivery: options.delivery.as_str().into(),
        publish_latency_ms: report::Percentiles {
            count: published.len() as u64,
            p50: aggregates.latency.acknowledged_p50,
            p99: aggregates.latency.acknowledged_p99,
            max: aggregates.acknowledged_max_ms,
        },
        connect_ms,
        end_to_end_matched: e2e.len() as u64,
        end_to_end_ms: e2e_percentiles,
        drain_s: drain.map(|d| d.as_secs_f64()),
        drained: drain.is_some(),
        drain_timeout_s: options.drain_timeout.as_secs_f64(),
        drain_rate_per_s: drain_rate(&samples, load_end.as_secs_f64()),
        last_written_s: last_written.map(|d| d.as_secs_f64()),
        queue_depth_max,
        still_ready,
        redelivered: state.redelivered.total(),
        dead_lettered: dead_lettered.unwrap_or(0),
        worker_lost: state.worker_lost.total(),
    };
    MessagingOutcome {
        report,
        samples,
        broker,
    }
}

fn unavailable(path: Option<&Path>, reason: String) -> Reconciliation {
    Reconciliation {
        available: false,
        unavailable_reason: Some(reason),
        orders_file: path.map(|p| p.display().to_string()),
        ..Default::default()
    }
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
