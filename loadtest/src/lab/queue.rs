//! The messaging side of a run, watched: the queue monitor and the orders-file tail
//! started with the clock, the drain after the load, and the last look at the queue once
//! the worker has stopped — what [`crate::messaging`] measures, put together for the
//! report.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use amqp_link::{AmqpUrls, redact};
use inventory::DeliveryMode;
use tokio::time::Instant;
use wire_contract::amqp::{DEAD_LETTER_QUEUE, QUEUE};

use super::options::SAMPLE_EVERY;
use super::recorder::PublishTimes;
use crate::broker::BrokerNode;
use crate::e2e::{OrdersTail, end_to_end, percentiles};
use crate::messaging::{
    Drained, MessagingOptions, Monitor, MonitorInputs, MonitorState, QueueProbe, drain_rate,
    wait_for_drain,
};
use crate::reconcile::FileMark;
use crate::report::{
    self, BrokerNodeReport, BrokerReport, CrashEvent, MessagingReport, WorkerReport,
};
use crate::runner::Live;
use crate::server::ServerObservations;
use crate::stats::Aggregates;

/// The queue and the orders file, watched from the load's start.
pub(super) struct QueueWatch {
    monitor: Monitor,
    /// `None` without an orders file readable here (then end-to-end times are unknown).
    tail: Option<Arc<OrdersTail>>,
}

/// What the messaging side of a run measured, for the report.
pub(super) struct MessagingOutcome {
    pub report: MessagingReport,
    pub samples: Vec<report::QueueSample>,
    /// Orders each spawned worker wrote, by its `/metrics` (in host order).
    pub written_by_worker: Vec<u64>,
}

/// What [`QueueWatch::finish`] needs from the rest of the run.
pub(super) struct Measured<'a> {
    pub aggregates: &'a Aggregates,
    pub published: &'a PublishTimes,
    pub connect_ms: Option<f64>,
    pub load_end: Duration,
    pub drained: Option<Drained>,
}

impl QueueWatch {
    /// Starts the monitor (asking `workers` what they hold, when the lab spawned them)
    /// and the tail of the orders file from `mark`.
    pub fn start(
        urls: &AmqpUrls,
        delivery: DeliveryMode,
        orders: Option<(&std::path::Path, FileMark)>,
        workers: Vec<std::net::SocketAddr>,
        live: &Arc<Live>,
        epoch: Instant,
    ) -> QueueWatch {
        let tail = orders
            .map(|(path, mark)| Arc::new(OrdersTail::start(path.to_path_buf(), mark.len, epoch)));
        let written: Box<dyn Fn() -> u64 + Send> = match &tail {
            Some(t) => {
                let t = t.clone();
                Box::new(move || t.lines())
            }
            None => Box::new(|| 0),
        };
        let live = live.clone();
        let inputs = MonitorInputs {
            workers,
            delivery,
            written,
            acknowledged: Box::new(move || live.acknowledged.load(Ordering::Relaxed)),
        };
        let monitor = Monitor::start(QueueProbe::new(urls), inputs, epoch, SAMPLE_EVERY);
        QueueWatch { monitor, tail }
    }

    /// Waits, at most `--drain-timeout`, until the queue is empty and every acknowledged
    /// publish is written (or nothing moves any more).
    pub async fn drain(
        &self,
        options: &MessagingOptions,
        published: &PublishTimes,
        epoch: Instant,
        brokers: &[BrokerNode],
    ) -> Drained {
        eprintln!(
            "loadtest: load finished; waiting for the queue to drain (at most {:.0} s, --drain-timeout)",
            options.drain_timeout.as_secs_f64()
        );
        let all_written = || match &self.tail {
            Some(t) => {
                let seen = t.snapshot();
                published.keys().all(|c| seen.first_seen.contains_key(c))
            }
            None => false,
        };
        let (delivery, timeout) = (options.delivery, options.drain_timeout);
        wait_for_drain(
            &self.monitor,
            delivery,
            epoch,
            timeout,
            SAMPLE_EVERY,
            all_written,
            unacked_probe(brokers),
        )
        .await
    }

    /// The last look, once the worker has stopped (a reliable worker's unacknowledged
    /// messages are back in the queue by then): what is still ready, what was
    /// dead-lettered, and the end-to-end times the tail matched.
    pub async fn finish(self, options: &MessagingOptions, run: Measured<'_>) -> MessagingOutcome {
        let (mut probe, state) = self.monitor.finish().await;
        let still_ready = probe.ready(QUEUE).await;
        let dead_lettered = match options.delivery {
            DeliveryMode::Reliable => probe.ready(DEAD_LETTER_QUEUE).await,
            DeliveryMode::Faithful => Some(0),
        };
        probe.close().await;
        let sightings = match self.tail.map(Arc::try_unwrap) {
            Some(Ok(tail)) => tail.finish().await,
            Some(Err(tail)) => tail.snapshot(),
            None => Default::default(),
        };
        let e2e = end_to_end(run.published, &sightings.first_seen);
        let last_written = (run.published.keys())
            .filter_map(|c| sightings.first_seen.get(c))
            .max()
            .copied();
        let report = messaging_report(options, &state, &run, &e2e, last_written);
        MessagingOutcome {
            report: MessagingReport {
                still_ready,
                dead_lettered: dead_lettered.unwrap_or(0),
                ..report
            },
            written_by_worker: state.workers.iter().map(|w| w.written.total()).collect(),
            samples: state.samples,
        }
    }
}

/// The report's `messaging` object from what the monitor, the tail and the drain saw
/// (the final queue counts are filled in by the caller).
fn messaging_report(
    options: &MessagingOptions,
    state: &MonitorState,
    run: &Measured<'_>,
    e2e: &[Duration],
    last_written: Option<Duration>,
) -> MessagingReport {
    let samples = &state.samples;
    let queue_depth_max = samples
        .iter()
        .filter_map(|s| match (s.ready, s.at_worker) {
            (None, None) => None,
            (r, w) => Some(r.unwrap_or(0) + w.unwrap_or(0)),
        })
        .max();
    let mut end_to_end_ms = percentiles(e2e);
    end_to_end_ms.count = e2e.len() as u64;
    let drain = run.drained.as_ref().and_then(|d| d.after);
    let latency = &run.aggregates.latency;
    MessagingReport {
        delivery: options.delivery.as_str().into(),
        queue_type: options.delivery.queue_type().into(),
        publish_latency_ms: report::Percentiles {
            count: run.published.len() as u64,
            p50: latency.acknowledged_p50,
            p99: latency.acknowledged_p99,
            max: run.aggregates.acknowledged_max_ms,
        },
        connect_ms: run.connect_ms,
        end_to_end_matched: e2e.len() as u64,
        end_to_end_ms,
        drain_s: drain.map(|d| d.as_secs_f64()),
        drained: drain.is_some(),
        drain_timeout_s: options.drain_timeout.as_secs_f64(),
        drain_rate_per_s: drain_rate(samples, run.load_end.as_secs_f64()),
        last_written_s: last_written.map(|d| d.as_secs_f64()),
        queue_depth_max,
        still_ready: None,
        redelivered: state.redelivered(),
        dead_lettered: 0,
        worker_lost: state.worker_lost(),
        workers: Vec::new(),
    }
}

/// The report's `messaging.workers`: each spawned worker's observations with the orders
/// its counters say it wrote.
pub(super) fn worker_reports(
    per_server: &[(String, ServerObservations)],
    written: &[u64],
) -> Vec<WorkerReport> {
    (per_server.iter().enumerate())
        .map(|(i, (name, o))| WorkerReport {
            name: name.clone(),
            confinement: o.confinement.clone(),
            orders_written: written.get(i).copied().unwrap_or(0),
            cpu_seconds: o.cpu_seconds,
            peak_memory_bytes: o.peak_memory_bytes,
            crashes: o.crashes.len() as u64,
            restarts: o.restarts,
        })
        .collect()
}

/// The report's `broker` object for the nodes the lab spawned: what the fault plan did to
/// each (every node's restarts also in `restart_events`, in time order).
pub(super) fn broker_report(nodes: &[BrokerNode]) -> BrokerReport {
    let lock = |n: &BrokerNode| n.restarts.lock().map(|e| e.clone()).unwrap_or_default();
    let mut restart_events: Vec<CrashEvent> = nodes.iter().flat_map(lock).collect();
    restart_events.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    let node = |n: &BrokerNode| {
        let broker = n.broker.lock().ok();
        let broker = broker.as_ref().and_then(|b| b.as_ref());
        BrokerNodeReport {
            name: n.host.clone(),
            node: broker
                .map(|b| b.node_name().to_string())
                .unwrap_or_default(),
            url: broker.map(|b| redact(&b.amqp_url())).unwrap_or_default(),
            crashes: n.kills.load(Ordering::Relaxed),
            restarts: lock(n).len() as u64,
        }
    };
    BrokerReport {
        spawned: true,
        restarts: restart_events.len() as u64,
        restart_events,
        nodes: nodes.iter().map(node).collect(),
    }
}

/// Asks the first running node of the brokers the lab started how many of the orders
/// queue's messages are delivered and unacknowledged; `None` for a broker the lab does not
/// run (`--amqp-url`), which it cannot ask.
fn unacked_probe(brokers: &[BrokerNode]) -> Option<crate::messaging::UnackedProbe> {
    if brokers.is_empty() {
        return None;
    }
    let brokers = brokers.to_vec();
    Some(Arc::new(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        (brokers.iter()).find_map(|node| node.ctl()?.unacknowledged(QUEUE, deadline).ok())
    }))
}
