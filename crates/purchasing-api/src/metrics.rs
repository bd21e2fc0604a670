//! `GET /metrics`: what the server is doing, in the Prometheus text exposition format
//! 0.0.4, so the lab (and any Prometheus) can chart memory, in-flight work, queueing and
//! shedding through a spike.
//!
//! Written by hand: a dozen counters do not need a metrics framework. Every value is an
//! atomic updated with `Relaxed` ordering — no lock on the request path; a scrape may see
//! two counters a few increments apart, which Prometheus tolerates. Always on (also in
//! the faithful configuration, where it costs two atomic increments per request) and
//! exempt from admission control, so it answers while every order slot is taken.
//!
//! `purchasing_requests_total` counts every request by route (`orders`, `health`,
//! `metrics`, `other`) and status; the latency histogram covers the orders route only.
//! A request whose client disconnects before the answer is not counted (its future is
//! dropped), but its work still shows in `purchasing_orders_in_flight` until it ends.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::limits::{self, Sizing};

/// The media type of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the latency buckets: from a shed 503 (a few ms) through a
/// healthy faithful order (≈ 0.6 s) to the deadline (10 s) and well beyond.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The routes requests are counted by. A fixed set keeps the label's cardinality bounded
/// whatever paths clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Orders,
    Health,
    Metrics,
    Other,
}

impl Route {
    const ALL: [Route; 4] = [Route::Orders, Route::Health, Route::Metrics, Route::Other];

    /// The route of a (canonicalised) path.
    pub fn of(path: &str) -> Self {
        match path {
            wire_contract::http::REPLENISHMENT_PATH => Route::Orders,
            wire_contract::http::HEALTH_PATH => Route::Health,
            wire_contract::http::METRICS_PATH => Route::Metrics,
            _ => Route::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Orders => "orders",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

/// Where a deadline was found to be unmeetable (a label of
/// `purchasing_deadline_rejected_total`; see [`crate::deadline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Arrival,
    Queue,
    Store,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Arrival, Stage::Queue, Stage::Store];

    pub fn label(self) -> &'static str {
        match self {
            Stage::Arrival => "arrival",
            Stage::Queue => "queue",
            Stage::Store => "store",
        }
    }
}

/// HTTP status codes are 100–599: one counter slot each, per route.
const STATUS_MIN: u16 = 100;
const STATUS_SLOTS: usize = 500;

/// The facts fixed at start-up, rendered beside the counters.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Bytes one order holds (`--alloc-chars`), for the work-bytes gauge.
    pub alloc_chars: u64,
    /// Admission control is on.
    pub admission: bool,
    /// The adaptive limit's memory bound (0: the limit does not adapt).
    pub adaptive_cap: u64,
    /// Most orders waiting for a slot (0: admission control is off).
    pub queue_limit: u64,
    /// One order's estimated time, when a protection measured it.
    pub work_estimate: Option<Duration>,
    /// How `--max-in-flight auto` was sized, when it was.
    pub sizing: Option<Sizing>,
}

/// Every counter and gauge the server exposes.
#[derive(Debug)]
pub struct Metrics {
    settings: Settings,
    /// `route × STATUS_SLOTS + (status − 100)`.
    requests: Box<[AtomicU64]>,
    /// Per bucket of [`DURATION_BUCKETS`] plus one for +Inf; not cumulative (the
    /// rendering adds them up).
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_sum_micros: AtomicU64,
    orders_in_flight: AtomicU64,
    /// Orders waiting for an admission slot. The admission queue's own counter, not a
    /// copy: one fact, read by both.
    pub(crate) admission_queued: AtomicU64,
    /// How long an order typically holds its admission slot, µs (0: no admission
    /// control). Maintained by the admission controller, which predicts waits from it.
    pub(crate) admission_typical_hold_us: AtomicU64,
    /// Mean deviation of the hold from the typical hold, µs.
    pub(crate) admission_hold_deviation_us: AtomicU64,
    shed: AtomicU64,
    deadline_rejected: [AtomicU64; Stage::ALL.len()],
    replayed: AtomicU64,
    /// The admission limit now (fixed, or where the adaptive controller set it).
    admission_limit: AtomicU64,
    /// The adaptive controller's inputs, µs: moving averages of the wait at the fill gate
    /// and of a fill, and the wait it aims at.
    gate_wait_us: AtomicU64,
    gate_wait_target_us: AtomicU64,
    fill_us: AtomicU64,
    /// How often the adaptive limit grew and shrank.
    limit_increases: AtomicU64,
    limit_decreases: AtomicU64,
}

impl Metrics {
    /// The admission limit starts at 0 (off); the admission controller sets it.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            requests: (0..Route::ALL.len() * STATUS_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            duration_buckets: Default::default(),
            duration_sum_micros: AtomicU64::new(0),
            orders_in_flight: AtomicU64::new(0),
            admission_queued: AtomicU64::new(0),
            admission_typical_hold_us: AtomicU64::new(0),
            admission_hold_deviation_us: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            deadline_rejected: Default::default(),
            replayed: AtomicU64::new(0),
            admission_limit: AtomicU64::new(0),
            gate_wait_us: AtomicU64::new(0),
            gate_wait_target_us: AtomicU64::new(0),
            fill_us: AtomicU64::new(0),
            limit_increases: AtomicU64::new(0),
            limit_decreases: AtomicU64::new(0),
        }
    }

    /// The admission limit now.
    pub fn set_admission_limit(&self, limit: usize) {
        self.admission_limit.store(limit as u64, Relaxed);
    }

    /// The adaptive controller's inputs after an observation.
    pub fn set_adaptive_state(&self, gate_wait: Duration, target: Duration, fill: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.gate_wait_us.store(us(gate_wait), Relaxed);
        self.gate_wait_target_us.store(us(target), Relaxed);
        self.fill_us.store(us(fill), Relaxed);
    }

    /// Counts one move of the adaptive limit.
    pub fn limit_changed(&self, grew: bool) {
        if grew {
            self.limit_increases.fetch_add(1, Relaxed);
        } else {
            self.limit_decreases.fetch_add(1, Relaxed);
        }
    }

    pub fn record_response(&self, route: Route, status: u16, elapsed: Duration) {
        if let Some(slot) = status.checked_sub(STATUS_MIN).map(usize::from)
            && slot < STATUS_SLOTS
        {
            self.requests[route as usize * STATUS_SLOTS + slot].fetch_add(1, Relaxed);
        }
        if route == Route::Orders {
            let seconds = elapsed.as_secs_f64();
            let bucket = DURATION_BUCKETS
                .iter()
                .position(|&le| seconds <= le)
                .unwrap_or(DURATION_BUCKETS.len());
            self.duration_buckets[bucket].fetch_add(1, Relaxed);
            let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            self.duration_sum_micros.fetch_add(micros, Relaxed);
        }
    }

    /// Counts an order as in the blocking pool until the returned guard drops. Call it
    /// inside the blocking closure, so the count is the orders really holding memory.
    pub fn order_started(self: &Arc<Self>) -> InFlight {
        self.orders_in_flight.fetch_add(1, Relaxed);
        InFlight(Arc::clone(self))
    }

    pub fn shed(&self) {
        self.shed.fetch_add(1, Relaxed);
    }

    pub fn deadline_rejected(&self, stage: Stage) {
        self.deadline_rejected[stage as usize].fetch_add(1, Relaxed);
    }

    pub fn replayed(&self) {
        self.replayed.fetch_add(1, Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = Exposition(String::with_capacity(8 * 1024));

        out.family(
            "purchasing_requests_total",
            "counter",
            "HTTP requests answered, by route (orders, health, metrics, other) and status.",
        );
        for route in Route::ALL {
            for slot in 0..STATUS_SLOTS {
                let count = self.requests[route as usize * STATUS_SLOTS + slot].load(Relaxed);
                if count > 0 {
                    let status = slot as u16 + STATUS_MIN;
                    out.sample(
                        "purchasing_requests_total",
                        &[("route", route.label()), ("status", &status.to_string())],
                        count as f64,
                    );
                }
            }
        }

        out.family(
            "purchasing_request_duration_seconds",
            "histogram",
            "Time to answer a request on the orders route, whatever the answer.",
        );
        let mut cumulative = 0;
        for (i, bucket) in self.duration_buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = DURATION_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |le| le.to_string());
            out.sample(
                "purchasing_request_duration_seconds_bucket",
                &[("le", &le)],
                cumulative as f64,
            );
        }
        let sum = self.duration_sum_micros.load(Relaxed) as f64 / 1e6;
        out.sample("purchasing_request_duration_seconds_sum", &[], sum);
        out.sample(
            "purchasing_request_duration_seconds_count",
            &[],
            cumulative as f64,
        );

        let in_flight = self.orders_in_flight.load(Relaxed);
        out.gauge(
            "purchasing_orders_in_flight",
            "Orders being worked on in the blocking pool now.",
            in_flight as f64,
        );
        out.gauge(
            "purchasing_work_bytes_in_flight",
            "Bytes of simulated work held by the orders in flight (alloc_chars each; an \
             upper bound with --release-early).",
            in_flight.saturating_mul(self.settings.alloc_chars) as f64,
        );
        out.gauge(
            "purchasing_admission_queued",
            "Orders waiting for an admission slot now.",
            self.admission_queued.load(Relaxed) as f64,
        );
        out.gauge(
            "purchasing_admission_limit",
            "Most orders in progress at once now (--max-in-flight; with adaptive, where the \
             controller has set it); 0 when admission control is off.",
            self.admission_limit.load(Relaxed) as f64,
        );
        if self.settings.adaptive_cap > 0 {
            let seconds = |v: &AtomicU64| v.load(Relaxed) as f64 / 1e6;
            out.gauge(
                "purchasing_admission_limit_cap",
                "The adaptive limit's hard bound: orders whose memory fits (n_mem).",
                self.settings.adaptive_cap as f64,
            );
            out.gauge(
                "purchasing_admission_gate_wait_seconds",
                "Moving average of how long an order waited for its turn to fill (the queue \
                 for the CPU): what the adaptive limit steers by.",
                seconds(&self.gate_wait_us),
            );
            out.gauge(
                "purchasing_admission_gate_wait_target_seconds",
                "The gate wait the adaptive limit aims at: two moving-average fill times.",
                seconds(&self.gate_wait_target_us),
            );
            out.gauge(
                "purchasing_fill_seconds",
                "Moving average of how long one order's fill (allocate and write) takes.",
                seconds(&self.fill_us),
            );
            out.family(
                "purchasing_admission_limit_changes_total",
                "counter",
                "How often the adaptive limit moved, by direction (up, down).",
            );
            for (direction, count) in [
                ("up", &self.limit_increases),
                ("down", &self.limit_decreases),
            ] {
                out.sample(
                    "purchasing_admission_limit_changes_total",
                    &[("direction", direction)],
                    count.load(Relaxed) as f64,
                );
            }
        }
        out.gauge(
            "purchasing_admission_queue_limit",
            "Most orders waiting for a slot (--queue); 0 when admission control is off.",
            self.settings.queue_limit as f64,
        );
        out.family(
            "purchasing_shed_total",
            "counter",
            "Orders refused with 503 because every slot and the queue were taken.",
        );
        out.sample("purchasing_shed_total", &[], self.shed.load(Relaxed) as f64);
        out.family(
            "purchasing_deadline_rejected_total",
            "counter",
            "Orders answered 504 because their deadline could not be met, by where it was \
             found (arrival, queue, store); none was recorded.",
        );
        for stage in Stage::ALL {
            out.sample(
                "purchasing_deadline_rejected_total",
                &[("stage", stage.label())],
                self.deadline_rejected[stage as usize].load(Relaxed) as f64,
            );
        }
        out.family(
            "purchasing_idempotent_replays_total",
            "counter",
            "Orders answered from an earlier request with the same Idempotency-Key.",
        );
        out.sample(
            "purchasing_idempotent_replays_total",
            &[],
            self.replayed.load(Relaxed) as f64,
        );
        if let Some(rss) = limits::resident_memory_bytes() {
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes (VmRSS).",
                rss as f64,
            );
        }

        let typical_hold_us = self.admission_typical_hold_us.load(Relaxed);
        if self.settings.admission {
            out.gauge(
                "purchasing_admission_typical_hold_seconds",
                "How long an order typically holds its admission slot (moving average of \
                 real holds): what the queue predicts waits from.",
                typical_hold_us as f64 / 1e6,
            );
            out.gauge(
                "purchasing_admission_hold_deviation_seconds",
                "Mean deviation of a hold from the typical hold (moving average): a request \
                 queues only if its predicted wait plus 4 deviations fits the wait allowed.",
                self.admission_hold_deviation_us.load(Relaxed) as f64 / 1e6,
            );
        }
        if let Some(estimate) = self.settings.work_estimate {
            out.gauge(
                "purchasing_work_estimate_seconds",
                "Estimated time of one order (delay + calibrated allocation): what a deadline \
                 must leave room for, and what Retry-After is computed from.",
                estimate.as_secs_f64(),
            );
        }
        if let Some(sizing) = &self.settings.sizing {
            let inputs = &sizing.inputs;
            for (name, help, value) in [
                (
                    "purchasing_sizing_memory_limit_bytes",
                    "Memory limit the process runs under (smallest cgroup limit, else \
                     physical memory).",
                    inputs.memory_limit_bytes as f64,
                ),
                (
                    "purchasing_sizing_baseline_rss_bytes",
                    "Resident memory at start-up, before any order.",
                    inputs.baseline_rss_bytes as f64,
                ),
                (
                    "purchasing_sizing_cpus",
                    "CPUs the process may use (smallest cgroup quota and available \
                     parallelism).",
                    inputs.cpus,
                ),
                (
                    "purchasing_sizing_alloc_seconds",
                    "Calibrated time to allocate and fill one order's string.",
                    inputs.alloc_time.as_secs_f64(),
                ),
                (
                    "purchasing_sizing_memory_max_in_flight",
                    "Orders whose memory fits: floor((0.8 limit - baseline) / alloc_chars).",
                    sizing.n_mem as f64,
                ),
                (
                    "purchasing_sizing_cpu_max_in_flight",
                    "Orders the CPUs can serve at 70 % use: floor(0.7 cpus (delay + alloc) / alloc).",
                    sizing.n_cpu as f64,
                ),
            ] {
                out.gauge(name, help, value);
            }
        }
        out.0
    }
}

/// An order in the blocking pool; counted down on drop.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.orders_in_flight.fetch_sub(1, Relaxed);
    }
}

/// Builds the exposition text.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // HELP text escapes backslash and newline; ours has neither, but stay correct.
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let value = value
                    .replace('\\', r"\\")
                    .replace('"', "\\\"")
                    .replace('\n', r"\n");
                let _ = write!(self.0, "{label}=\"{value}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }
}

/// A sample value as the format spells it (Go's ParseFloat syntax: `+Inf`, not `inf`).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

/// Counts every response by route and status, and times the orders route. Runs after
/// path canonicalisation, so every spelling of a route counts as that route.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = Route::of(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.record_response(route, response.status().as_u16(), started.elapsed());
    response
}

/// The store's lasting failures as gauges: 1 while the orders file or the idempotency
/// journal refuses orders until a restart (see [`crate::routes::health`]), else 0.
pub fn render_store_failures(orders_file_failed: bool, journal_failed: bool) -> String {
    let mut out = Exposition(String::new());
    out.family(
        "purchasing_store_failed",
        "gauge",
        "1 while part of the store refuses orders until the server restarts: the orders \
         file (a partial line could not be removed; every order fails) or the idempotency \
         journal (an fsync or an undo failed; keyed orders fail).",
    );
    for (part, failed) in [
        ("orders_file", orders_file_failed),
        ("journal", journal_failed),
    ] {
        out.sample(
            "purchasing_store_failed",
            &[("part", part)],
            f64::from(u8::from(failed)),
        );
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let metrics = Metrics::new(Settings {
            alloc_chars: 1000,
            ..Settings::default()
        });
        for ms in [1, 7, 7, 300, 120_000] {
            metrics.record_response(Route::Orders, 201, Duration::from_millis(ms));
        }
        metrics.record_response(Route::Health, 200, Duration::from_millis(1));
        let text = metrics.render();
        for line in [
            "purchasing_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "purchasing_request_duration_seconds_bucket{le=\"0.01\"} 3",
            "purchasing_request_duration_seconds_bucket{le=\"0.5\"} 4",
            "purchasing_request_duration_seconds_bucket{le=\"60\"} 4",
            "purchasing_request_duration_seconds_bucket{le=\"+Inf\"} 5",
            "purchasing_request_duration_seconds_count 5",
            "purchasing_request_duration_seconds_sum 120.315",
            "purchasing_requests_total{route=\"orders\",status=\"201\"} 5",
            "purchasing_requests_total{route=\"health\",status=\"200\"} 1",
            "purchasing_admission_limit 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn in_flight_gauges_follow_the_guard() {
        let metrics = Arc::new(Metrics::new(Settings {
            alloc_chars: 1000,
            ..Settings::default()
        }));
        let guard = metrics.order_started();
        let _second = metrics.order_started();
        assert!(
            metrics
                .render()
                .contains("\npurchasing_orders_in_flight 2\n")
        );
        assert!(
            metrics
                .render()
                .contains("\npurchasing_work_bytes_in_flight 2000\n")
        );
        drop(guard);
        assert!(
            metrics
                .render()
                .contains("\npurchasing_orders_in_flight 1\n")
        );
    }

    #[test]
    fn values_are_spelled_as_prometheus_expects() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(0.005), "0.005");
        assert_eq!(number(3.0), "3");
        assert_eq!(Route::of("/api/StockReplenishmentRequests"), Route::Orders);
        assert_eq!(Route::of("/nope"), Route::Other);
    }
}
