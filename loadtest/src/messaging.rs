//! The messaging half in the lab: where the queue stands while the load runs, waiting
//! for it to drain afterwards, and the one rule for orders that are neither written nor
//! provably lost.
//!
//! # Queue depth
//!
//! A message is somewhere between the publisher and the orders file:
//!
//! - **ready** in the queue: the broker's count from a passive `queue.declare` (it
//!   excludes unacknowledged messages; the management plugin's numbers lag seconds and
//!   are not used). The lab asks over a connection of its own ([`QueueProbe`]), which it
//!   re-opens after a broker restart.
//! - **at the worker**: reliable mode, received and not yet settled —
//!   `received − acked − rejected − requeued` from the worker's `/metrics` (what the
//!   broker counts as unacked); faithful mode, the order being written
//!   (`orders_in_flight`). What a faithful broker pushed beyond it sits in the worker's
//!   buffer, auto-acknowledged: neither side counts it, so the chart also draws the
//!   client's view, **outstanding** = acknowledged publishes − lines written so far.
//!
//! Worker counters start again at 0 in every process (a kill, a restart); the monitor
//! sums them across processes ([`Accumulated`]), missing only what a killed process
//! counted after its last sample.
//!
//! # The drain
//!
//! After the load the lab waits, at most `--drain-timeout`, until the queue is empty and
//! everything is written ([`Drained`]): ready = 0, nothing at the worker, and either every
//! acknowledged publish has its line (the common case: done at once), or nothing changed
//! (lines, worker counters) for [`QUIET`] and the broker holds nothing unacknowledged —
//! the remainder is then lost, not late (a faithful worker's buffer being worked through
//! keeps writing lines, so it is never mistaken for quiet). Then the worker is stopped
//! with SIGTERM.
//!
//! The broker's own unacknowledged count ([`UnackedProbe`], asked of a broker the lab
//! started) matters when a worker is cut off: the broker goes on delivering to it, the
//! worker receives nothing and so counts nothing, and the messages wait, unacknowledged,
//! until the broker declares the connection dead (its heartbeat) and requeues them for
//! the next consumer. Without this check such a run looks drained and quiet, and stopping
//! there would report every one of those messages lost.
//!
//! # Still queued
//!
//! When the deadline passes first, some acknowledged orders are absent from the file but
//! not lost: their messages are still in the queue. The lab cannot tell which messages
//! those are (reading them would consume them), only how many: the ready count after the
//! worker stopped (reliable mode returns what the worker held to the queue). So
//! [`split_absent`] counts acknowledged-but-absent orders as **still queued up to that
//! count**, the rest as **lost**. It is an upper bound in the worker's favour: a queued
//! message may also belong to a publish the client saw fail (a ghost in the making), so
//! `still_queued` can hide at most that many losses — never more than the queue holds,
//! and with a finished drain (nothing ready) it is exactly 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use amqp_link::{AmqpUrl, AmqpUrls};
use anyhow::Context;
use inventory::DeliveryMode;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::time::Instant;
use wire_contract::amqp::{DEAD_LETTER_QUEUE, QUEUE};

use crate::report::QueueSample;

/// How long the queue must show no progress (with nothing ready or held) before the
/// drain calls the remainder lost rather than late: several sample intervals, well above
/// one order's work in the test workloads, short next to a drain deadline.
pub const QUIET: Duration = Duration::from_secs(2);

/// Longest wait for one passive declare (or the connection before it). A broker that
/// does not answer leaves a gap in the chart instead of stalling the sampler.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the broker comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerSource {
    /// The lab starts a private broker (outside the emulated VM) of `nodes` nodes joined
    /// into one cluster (`--broker-nodes`), and stops it at the end.
    Spawn { nodes: usize },
    /// Brokers the user runs (`--amqp-url`: one, or a cluster's nodes).
    Url(AmqpUrls),
}

/// The messaging run's knobs (`--transport amqp`).
#[derive(Debug, Clone, PartialEq)]
pub struct MessagingOptions {
    pub broker: BrokerSource,
    /// Both sides: the publisher's and the worker's `--delivery`.
    pub delivery: DeliveryMode,
    /// `--workers K`: spawned workers competing for the queue (`worker0`, …; 1 without
    /// the flag, and for a remote worker).
    pub workers: usize,
    /// How long to wait after the load for the queue to drain.
    pub drain_timeout: Duration,
}

/// Splits the acknowledged orders absent from the file into (lost, still queued): still
/// queued up to the messages left ready in the queue, lost beyond (see the module doc).
/// Without a ready count (the broker could not be asked) nothing is called still queued.
pub fn split_absent(acknowledged_absent: u64, still_ready: Option<u64>) -> (u64, u64) {
    let queued = still_ready.unwrap_or(0).min(acknowledged_absent);
    (acknowledged_absent - queued, queued)
}

/// A connection of the lab's own to ask the broker how many messages are ready. Given a
/// cluster's nodes, it moves to the next node when the one it asks stops answering.
#[derive(Default)]
pub struct QueueProbe {
    /// `None` only in the placeholder a finished [`Monitor`] leaves behind, which
    /// answers nothing.
    urls: Option<AmqpUrls>,
    /// Which of `urls` to connect to next (counted round the list).
    next: usize,
    session: Option<(Connection, Channel)>,
}

impl QueueProbe {
    pub fn new(urls: &AmqpUrls) -> QueueProbe {
        QueueProbe {
            urls: Some(urls.clone()),
            next: 0,
            session: None,
        }
    }

    /// Opens the probe's connection now, to fail early with what to do when no broker
    /// can be reached (a wrong `--amqp-url`, a broker that is down): tries every node once.
    pub async fn check(&mut self) -> anyhow::Result<()> {
        let urls = self
            .urls
            .clone()
            .context("the queue probe has no broker URL")?;
        let mut failure = None;
        for url in urls.iter() {
            match self.check_one(url).await {
                Ok(()) => return Ok(()),
                Err(e) => failure = Some(e),
            }
            self.next += 1;
        }
        Err(failure.unwrap_or_else(|| anyhow::anyhow!("no broker URL to check")))
    }

    async fn check_one(&mut self, url: &AmqpUrl) -> anyhow::Result<()> {
        let wait = PROBE_TIMEOUT * 5;
        match tokio::time::timeout(wait, open_session(url)).await {
            Ok(Ok(session)) => {
                self.session = Some(session);
                Ok(())
            }
            Ok(Err(e)) => anyhow::bail!(
                "cannot reach the RabbitMQ broker at {url}: {e}; is it running, and are the user, password and virtual host in --amqp-url right? (or use --spawn-broker)"
            ),
            Err(_) => anyhow::bail!(
                "the RabbitMQ broker at {url} did not answer within {} s; is it running? (or use --spawn-broker)",
                wait.as_secs()
            ),
        }
    }

    /// Messages ready in `queue`; `None` when the broker does not answer or the queue does
    /// not exist (yet, or any more: a restarted broker forgets a faithful queue). The next
    /// call reconnects after a failure, to the next node of a cluster.
    pub async fn ready(&mut self, queue: &str) -> Option<u64> {
        let url = self.urls.as_ref()?.cycle(self.next).clone();
        let result = tokio::time::timeout(PROBE_TIMEOUT, self.try_ready(&url, queue)).await;
        match result {
            Ok(Ok(n)) => Some(n),
            _ => {
                self.close().await;
                self.next += 1;
                None
            }
        }
    }

    async fn try_ready(&mut self, url: &AmqpUrl, queue: &str) -> Result<u64, lapin::Error> {
        if !self
            .session
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected())
        {
            self.close().await;
            self.session = Some(open_session(url).await?);
        }
        let (_, channel) = self.session.as_ref().expect("opened above");
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await?;
        Ok(u64::from(queue.message_count()))
    }

    /// Closes the probe's connection (best effort).
    pub async fn close(&mut self) {
        if let Some((connection, _)) = self.session.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                connection.close(200, "loadtest probe done".into()),
            )
            .await;
        }
    }
}

/// The probe's connection and channel, connected to the host `url` names (an IPv6
/// literal included: [`AmqpUrl::uri`]).
async fn open_session(url: &AmqpUrl) -> Result<(Connection, Channel), lapin::Error> {
    let properties =
        ConnectionProperties::default().with_connection_name("loadtest queue probe".into());
    let connection = Connection::connect_uri(url.uri().clone(), properties).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// The worker's counters and gauges from one scrape of its `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounters {
    pub received: u64,
    pub redelivered: u64,
    pub written: u64,
    pub acked: u64,
    pub rejected: u64,
    pub requeued: u64,
    pub lost: u64,
    pub connections_lost: u64,
    pub in_flight: u64,
}

impl WorkerCounters {
    /// Reads the `purchasing_worker_*` samples of a Prometheus text exposition; `None`
    /// when it is not the worker's (no received counter).
    pub fn parse(text: &str) -> Option<WorkerCounters> {
        let get = |name: &str| -> Option<u64> {
            let name = format!("purchasing_worker_{name}");
            text.lines()
                .find_map(|line| line.strip_prefix(name.as_str())?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| v as u64)
        };
        Some(WorkerCounters {
            received: get("messages_received_total")?,
            redelivered: get("messages_redelivered_total").unwrap_or(0),
            written: get("orders_written_total").unwrap_or(0),
            acked: get("messages_acked_total").unwrap_or(0),
            rejected: get("messages_rejected_total").unwrap_or(0),
            requeued: get("messages_requeued_total").unwrap_or(0),
            lost: get("messages_lost_total").unwrap_or(0),
            connections_lost: get("connections_lost_total").unwrap_or(0),
            in_flight: get("orders_in_flight").unwrap_or(0),
        })
    }

    /// Messages the worker holds (see the module doc). After a lost connection the
    /// deliveries of the old channel can no longer be settled (the broker requeued them
    /// and counts them again when redelivered), so from then on this process's counters
    /// cannot balance and only the orders in flight are counted.
    pub fn held(&self, delivery: DeliveryMode) -> u64 {
        match delivery {
            DeliveryMode::Reliable if self.connections_lost > 0 => self.in_flight,
            DeliveryMode::Reliable => self
                .received
                .saturating_sub(self.acked + self.rejected + self.requeued)
                .max(self.in_flight),
            DeliveryMode::Faithful => self.in_flight,
        }
    }
}

/// A counter summed across the worker's processes: a reading lower than the previous
/// one means a new process started counting from 0.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Accumulated {
    carried: u64,
    last: u64,
}

impl Accumulated {
    pub fn update(&mut self, reading: u64) -> u64 {
        if reading < self.last {
            self.carried += self.last;
        }
        self.last = reading;
        self.total()
    }

    pub fn total(&self) -> u64 {
        self.carried + self.last
    }
}

/// What the monitor reads besides the broker: the workers' probe addresses (`worker0`,
/// …), the lines written so far and the acknowledged publishes so far.
pub struct MonitorInputs {
    pub workers: Vec<SocketAddr>,
    pub delivery: DeliveryMode,
    pub written: Box<dyn Fn() -> u64 + Send>,
    pub acknowledged: Box<dyn Fn() -> u64 + Send>,
}

/// One worker host as the monitor follows it: its latest scrape and its counters summed
/// across its processes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct WorkerTrack {
    /// `None` when its last scrape failed (it is down, or too busy to answer in time).
    pub latest: Option<WorkerCounters>,
    pub redelivered: Accumulated,
    pub lost: Accumulated,
    pub written: Accumulated,
}

impl WorkerTrack {
    fn update(&mut self, scraped: Option<WorkerCounters>) {
        if let Some(w) = scraped {
            self.redelivered.update(w.redelivered);
            self.lost.update(w.lost);
            self.written.update(w.written);
        }
        self.latest = scraped;
    }
}

/// The latest state and every sample, shared between the monitor task and the drain.
#[derive(Debug, Default)]
pub struct MonitorState {
    /// One per worker the lab spawned; empty when there is none to ask (a remote worker:
    /// what it holds is unknown and the drain goes by the queue and the orders file).
    pub workers: Vec<WorkerTrack>,
    pub samples: Vec<QueueSample>,
    /// When any figure last moved (lines, worker counters), since the epoch.
    pub last_change: Duration,
}

impl MonitorState {
    /// Messages all workers hold; `None` when one of them could not be asked. With no
    /// worker to ask, 0 (the drain then goes by the queue and the file).
    pub fn held(&self, delivery: DeliveryMode) -> Option<u64> {
        (self.workers.iter())
            .map(|w| w.latest.map(|c| c.held(delivery)))
            .sum()
    }

    /// Redeliveries the workers counted, over all their processes.
    pub fn redelivered(&self) -> u64 {
        self.workers.iter().map(|w| w.redelivered.total()).sum()
    }

    /// Faithful mode: messages the workers lost, over all their processes.
    pub fn worker_lost(&self) -> u64 {
        self.workers.iter().map(|w| w.lost.total()).sum()
    }
}

/// Samples the queue every `every` until stopped.
pub struct Monitor {
    state: Arc<std::sync::Mutex<MonitorState>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<QueueProbe>,
}

impl Monitor {
    pub fn start(
        probe: QueueProbe,
        inputs: MonitorInputs,
        epoch: Instant,
        every: Duration,
    ) -> Self {
        let state = Arc::new(std::sync::Mutex::new(MonitorState {
            workers: vec![WorkerTrack::default(); inputs.workers.len()],
            ..MonitorState::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(monitor(
            probe,
            inputs,
            epoch,
            every,
            state.clone(),
            stop.clone(),
        ));
        Monitor { state, stop, task }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, MonitorState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops sampling; returns the probe (to ask once more) and every sample.
    pub async fn finish(mut self) -> (QueueProbe, MonitorState) {
        self.stop.store(true, Ordering::Relaxed);
        let task = std::mem::replace(
            &mut self.task,
            tokio::spawn(async { QueueProbe::default() }),
        );
        let probe = task.await.unwrap_or_default();
        let state = std::mem::take(&mut *self.state.lock().unwrap_or_else(|p| p.into_inner()));
        (probe, state)
    }
}

impl Drop for Monitor {
    /// A run abandoned on the way stops its sampler too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn monitor(
    mut probe: QueueProbe,
    inputs: MonitorInputs,
    epoch: Instant,
    every: Duration,
    state: Arc<std::sync::Mutex<MonitorState>>,
    stop: Arc<AtomicBool>,
) -> QueueProbe {
    let mut tick = 0u32;
    let mut last_seen: Option<(u64, Vec<Option<WorkerCounters>>)> = None;
    while !stop.load(Ordering::Relaxed) {
        let ready = probe.ready(QUEUE).await;
        let dead_lettered = match inputs.delivery {
            DeliveryMode::Reliable => probe.ready(DEAD_LETTER_QUEUE).await,
            DeliveryMode::Faithful => None,
        };
        let workers = scrape_workers(&inputs.workers).await;
        let written = (inputs.written)();
        let acknowledged = (inputs.acknowledged)();
        let t = epoch.elapsed();
        record_tick(&state, &mut last_seen, t, (written, workers), |s| {
            QueueSample {
                t_s: t.as_secs_f64(),
                ready,
                at_worker: (!s.workers.is_empty())
                    .then(|| s.held(inputs.delivery))
                    .flatten(),
                outstanding: acknowledged.saturating_sub(written),
                written,
                redelivered: s.redelivered(),
                dead_lettered,
            }
        });
        tick += 1;
        let next = epoch + every * tick;
        if next > Instant::now() {
            tokio::time::sleep_until(next).await;
        } else {
            tick = (epoch.elapsed().as_secs_f64() / every.as_secs_f64()).ceil() as u32;
        }
    }
    probe
}

/// What the monitor saw at one tick, into the shared state: each worker's scrape, when
/// anything last moved, and the sample `sample` builds from the updated state.
fn record_tick(
    state: &std::sync::Mutex<MonitorState>,
    last_seen: &mut Option<(u64, Vec<Option<WorkerCounters>>)>,
    t: Duration,
    now: (u64, Vec<Option<WorkerCounters>>),
    sample: impl FnOnce(&MonitorState) -> QueueSample,
) {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    for (track, scraped) in s.workers.iter_mut().zip(&now.1) {
        track.update(*scraped);
    }
    if last_seen.as_ref() != Some(&now) {
        s.last_change = t;
        *last_seen = Some(now);
    }
    let sample = sample(&s);
    s.samples.push(sample);
}

/// One scrape of each worker's `/metrics`, in the order given (a std thread's plain
/// HTTP, off the runtime).
async fn scrape_workers(workers: &[SocketAddr]) -> Vec<Option<WorkerCounters>> {
    let (count, workers) = (workers.len(), workers.to_vec());
    let scrape = move || {
        (workers.iter())
            .map(|&addr| {
                crate::server::scrape_metrics(addr).and_then(|t| WorkerCounters::parse(&t))
            })
            .collect::<Vec<_>>()
    };
    tokio::task::spawn_blocking(scrape)
        .await
        .unwrap_or_else(|_| vec![None; count])
}

/// How the drain ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Drained {
    /// From the end of the load until the queue was empty and all was written; `None`
    /// when the deadline passed first.
    pub after: Option<Duration>,
}

/// The broker's count of the orders queue's unacknowledged messages, if it can be asked
/// (blocking: `rabbitmqctl` takes about a second).
pub type UnackedProbe = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// How often, at most, a quiet drain asks the broker for its unacknowledged count.
const UNACKED_EVERY: Duration = Duration::from_secs(2);

/// Waits until the queue has drained (see the module doc) or `timeout` passes.
/// `all_written` says whether every acknowledged publish has its line; `unacked` asks the
/// broker what it has delivered and not had acknowledged.
pub async fn wait_for_drain(
    monitor: &Monitor,
    delivery: DeliveryMode,
    epoch: Instant,
    timeout: Duration,
    every: Duration,
    all_written: impl Fn() -> bool,
    unacked: Option<UnackedProbe>,
) -> Drained {
    let started = Instant::now();
    let mut next_note = started + Duration::from_secs(5);
    // (when last asked, what the broker said)
    let mut broker_holds: Option<(Instant, u64)> = None;
    loop {
        let (empty, quiet, ready, held) = {
            let s = monitor.state();
            let last = s.samples.last();
            let ready = last.and_then(|q| q.ready);
            let held = s.held(delivery);
            let empty = ready == Some(0) && held == Some(0);
            // Quiet since the later of the last change and the drain's start.
            let since = s.last_change.max(started.duration_since(epoch));
            let quiet = epoch.elapsed().saturating_sub(since) >= QUIET;
            (empty, quiet, ready, held)
        };
        if empty && all_written() {
            return Drained {
                after: Some(started.elapsed()),
            };
        }
        if empty && quiet {
            let due = broker_holds.is_none_or(|(at, _)| at.elapsed() >= UNACKED_EVERY);
            if due && let Some(probe) = unacked.clone() {
                let held = tokio::task::spawn_blocking(move || probe())
                    .await
                    .ok()
                    .flatten();
                broker_holds = Some((Instant::now(), held.unwrap_or(0)));
            }
            if broker_holds.is_none_or(|(_, n)| n == 0) {
                return Drained {
                    after: Some(started.elapsed()),
                };
            }
        }
        if started.elapsed() >= timeout {
            return Drained { after: None };
        }
        if Instant::now() >= next_note {
            let unreached = match broker_holds {
                Some((_, n)) if n > 0 => format!(
                    ", {n} delivered and unacknowledged that no worker counts (on their way to one the broker cannot reach, until its heartbeat gives up on it)"
                ),
                _ => String::new(),
            };
            eprintln!(
                "loadtest: draining: {} ready, {} at the worker{unreached}, {:.0} s of {:.0} s",
                ready.map_or("?".to_string(), |n| n.to_string()),
                held.map_or("?".to_string(), |n| n.to_string()),
                started.elapsed().as_secs_f64(),
                timeout.as_secs_f64()
            );
            next_note += Duration::from_secs(5);
        }
        tokio::time::sleep(every).await;
    }
}

/// Orders written per second while the queue was not empty after the load: the lines
/// written between the load's end and the first sample with nothing outstanding, over
/// that time. `None` when the queue was already empty at the load's end.
pub fn drain_rate(samples: &[QueueSample], load_end_s: f64) -> Option<f64> {
    let after: Vec<&QueueSample> = samples.iter().filter(|s| s.t_s >= load_end_s).collect();
    let first = after.first()?;
    let busy = |s: &QueueSample| s.ready.unwrap_or(0) > 0 || s.outstanding > 0;
    if !busy(first) {
        return None;
    }
    let last = after.iter().find(|s| !busy(s)).or(after.last()).copied()?;
    let span = last.t_s - first.t_s;
    (span > 0.0).then(|| last.written.saturating_sub(first.written) as f64 / span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_orders_are_still_queued_up_to_the_ready_count() {
        // 10 acknowledged orders absent, 4 messages still ready: 4 may be them, 6 are lost.
        assert_eq!(split_absent(10, Some(4)), (6, 4));
        // More ready than absent (ghosts' messages queued too): all absent still queued.
        assert_eq!(split_absent(3, Some(50)), (0, 3));
        // Drained: nothing ready, every absent order is lost.
        assert_eq!(split_absent(5, Some(0)), (5, 0));
        // The broker could not be asked: nothing is excused.
        assert_eq!(split_absent(5, None), (5, 0));
        assert_eq!(split_absent(0, Some(7)), (0, 0));
    }

    #[test]
    fn worker_counters_are_read_and_summed_across_processes() {
        let text = "HTTP/1.1 200 OK\r\n\r\n# TYPE purchasing_worker_messages_received_total counter\n\
                    purchasing_worker_messages_received_total 10\n\
                    purchasing_worker_messages_redelivered_total 2\n\
                    purchasing_worker_orders_written_total 7\n\
                    purchasing_worker_messages_acked_total 6\n\
                    purchasing_worker_messages_rejected_total 1\n\
                    purchasing_worker_messages_requeued_total 0\n\
                    purchasing_worker_messages_lost_total 0\n\
                    purchasing_worker_orders_in_flight 2\n";
        let w = WorkerCounters::parse(text).unwrap();
        assert_eq!((w.received, w.written, w.in_flight), (10, 7, 2));
        assert_eq!(w.held(DeliveryMode::Reliable), 3);
        assert_eq!(w.held(DeliveryMode::Faithful), 2);
        let after_a_lost_connection = WorkerCounters {
            connections_lost: 1,
            ..w
        };
        assert_eq!(after_a_lost_connection.held(DeliveryMode::Reliable), 2);
        assert_eq!(
            WorkerCounters::parse("purchasing_admission_limit 3\n"),
            None
        );

        let mut a = Accumulated::default();
        assert_eq!(a.update(5), 5);
        assert_eq!(a.update(8), 8);
        assert_eq!(a.update(2), 10, "a new process: 8 carried + 2");
        assert_eq!(a.update(3), 11);
    }

    #[test]
    fn drain_rate_counts_lines_while_the_queue_was_busy() {
        let s = |t_s: f64, ready: u64, outstanding: u64, written: u64| QueueSample {
            t_s,
            ready: Some(ready),
            outstanding,
            written,
            ..Default::default()
        };
        let samples = vec![
            s(9.0, 50, 60, 40),
            s(10.0, 40, 50, 50),
            s(12.0, 10, 20, 80),
            s(14.0, 0, 0, 100),
            s(15.0, 0, 0, 100),
        ];
        assert_eq!(drain_rate(&samples, 10.0), Some(12.5));
        assert_eq!(drain_rate(&samples, 14.5), None, "already empty");
    }
}
