//! `GET /metrics`: what the server is doing, in the Prometheus text exposition format
//! 0.0.4, so the lab (and any Prometheus) can chart memory, in-flight work, queueing and
//! shedding through a spike.
//!
//! The exposition is prometheus-client's (its Prometheus text encoder, not OpenMetrics:
//! the content type, metric names, types and help texts stay what scrapers already read).
//! Counters and the histogram are updated where things happen; what other parts own —
//! the admission queue and hold times, the store's failures, the resident memory — is
//! handed in as plain numbers at each scrape ([`Scrape`]), so this module depends on
//! nothing above it. Updates are atomics (the per-route counter also takes a read lock
//! on its label map); a scrape may see two counters a few increments apart, which
//! Prometheus tolerates. Always on (also in the faithful configuration) and exempt from
//! admission control, so it answers while every order slot is taken.
//!
//! `purchasing_requests_total` counts every request by route (`orders`, `health`,
//! `metrics`, `other`) and status; the latency histogram covers the orders route only.
//! A request whose client disconnects before the answer is not counted (its future is
//! dropped), but its work still shows in `purchasing_orders_in_flight` until it ends.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use purchasing_service::metrics::{OrdersInFlight, ResidentMemory, help, saturating_i64};

pub use purchasing_service::metrics::InFlight;

use crate::limits::Sizing;

/// The media type of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

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

type FloatGauge = Gauge<f64, AtomicU64>;
/// One label, both parts fixed strings.
type Label = [(&'static str, &'static str); 1];
/// `route` and `status`.
type RequestLabels = (Label, [(&'static str, u16); 1]);

/// What other parts of the server own, read at each scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrape {
    /// The admission controller's state, when admission control is on.
    pub admission: Option<AdmissionNow>,
    /// The process's resident memory, when it can be read.
    pub resident_memory_bytes: Option<u64>,
    /// The orders file refuses orders until a restart.
    pub orders_file_failed: bool,
    /// The idempotency journal refuses keyed orders until a restart.
    pub journal_failed: bool,
}

/// The admission controller's state at a scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmissionNow {
    /// Orders waiting for a slot.
    pub queued: u64,
    /// How long an order typically holds its slot.
    pub typical_hold: Duration,
    /// Mean deviation of a hold from the typical hold.
    pub hold_deviation: Duration,
}

/// Every counter and gauge the server exposes, and the registry that renders them in
/// the order they were registered.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    /// Orders in the blocking pool now, and the work they hold.
    in_flight: OrdersInFlight,
    admission_queued: Gauge,
    admission_limit: Gauge,
    gate_wait: FloatGauge,
    gate_wait_target: FloatGauge,
    fill: FloatGauge,
    limit_changes: Family<Label, Counter>,
    shed: Counter,
    deadline_rejected: Family<Label, Counter>,
    replayed: Counter,
    resident_memory: ResidentMemory,
    typical_hold: FloatGauge,
    hold_deviation: FloatGauge,
    store_failed: Family<Label, Gauge>,
}

impl Metrics {
    /// Registers every family the settings call for, in the order of the exposition. The
    /// admission limit starts at 0 (off); the admission controller sets it.
    pub fn new(settings: Settings) -> Self {
        let metrics = Self {
            registry: Registry::default(),
            requests: Family::default(),
            duration: Histogram::new(DURATION_BUCKETS),
            in_flight: OrdersInFlight::new(settings.alloc_chars),
            admission_queued: Gauge::default(),
            admission_limit: Gauge::default(),
            gate_wait: FloatGauge::default(),
            gate_wait_target: FloatGauge::default(),
            fill: FloatGauge::default(),
            limit_changes: Family::default(),
            shed: Counter::default(),
            deadline_rejected: Family::default(),
            replayed: Counter::default(),
            resident_memory: ResidentMemory::default(),
            typical_hold: FloatGauge::default(),
            hold_deviation: FloatGauge::default(),
            store_failed: Family::default(),
        };
        // The order of these calls is the order of the exposition.
        let mut registry = Registry::default();
        metrics.register_traffic(&mut registry);
        metrics.register_admission(&mut registry);
        if settings.adaptive_cap > 0 {
            metrics.register_adaptive(&mut registry, settings.adaptive_cap);
        }
        metrics.register_refusals(&mut registry, settings.queue_limit);
        metrics.resident_memory.register(&mut registry);
        if settings.admission {
            metrics.register_hold_times(&mut registry);
        }
        Self::register_start_up_facts(&mut registry, &settings);
        metrics.register_store_failed(&mut registry);
        Self {
            registry,
            ..metrics
        }
    }

    /// Every request by route and status, the orders route's latency, the orders in flight.
    fn register_traffic(&self, registry: &mut Registry) {
        registry.register(
            "purchasing_requests",
            help("HTTP requests answered, by route (orders, health, metrics, other) and status."),
            self.requests.clone(),
        );
        registry.register(
            "purchasing_request_duration_seconds",
            help("Time to answer a request on the orders route, whatever the answer."),
            self.duration.clone(),
        );
        self.in_flight.register(
            registry,
            "purchasing_",
            "Orders being worked on in the blocking pool now.",
        );
    }

    /// Admission control's queue and limit now (0 while it is off).
    fn register_admission(&self, registry: &mut Registry) {
        registry.register(
            "purchasing_admission_queued",
            help("Orders waiting for an admission slot now."),
            self.admission_queued.clone(),
        );
        registry.register(
            "purchasing_admission_limit",
            help(
                "Most orders in progress at once now (--max-in-flight; with adaptive, where the \
                 controller has set it); 0 when admission control is off.",
            ),
            self.admission_limit.clone(),
        );
    }

    /// The adaptive limit's bound, what it steers by and how often it moved.
    fn register_adaptive(&self, registry: &mut Registry, cap: u64) {
        let bound = Gauge::<i64>::default();
        bound.set(saturating_i64(cap));
        registry.register(
            "purchasing_admission_limit_cap",
            help("The adaptive limit's hard bound: orders whose memory fits (n_mem)."),
            bound,
        );
        registry.register(
            "purchasing_admission_gate_wait_seconds",
            help(
                "Moving average of how long an order waited for its turn to fill (the queue \
                 for the CPU): what the adaptive limit steers by.",
            ),
            self.gate_wait.clone(),
        );
        registry.register(
            "purchasing_admission_gate_wait_target_seconds",
            help("The gate wait the adaptive limit aims at: two moving-average fill times."),
            self.gate_wait_target.clone(),
        );
        registry.register(
            "purchasing_fill_seconds",
            help("Moving average of how long one order's fill (allocate and write) takes."),
            self.fill.clone(),
        );
        for direction in ["up", "down"] {
            drop(
                self.limit_changes
                    .get_or_create(&[("direction", direction)]),
            );
        }
        registry.register(
            "purchasing_admission_limit_changes",
            help("How often the adaptive limit moved, by direction (up, down)."),
            self.limit_changes.clone(),
        );
    }

    /// What was refused and replayed: the queue's bound, 503s, 504s by stage, replays.
    fn register_refusals(&self, registry: &mut Registry, queue_limit: u64) {
        let bound = Gauge::<i64>::default();
        bound.set(saturating_i64(queue_limit));
        registry.register(
            "purchasing_admission_queue_limit",
            help("Most orders waiting for a slot (--queue); 0 when admission control is off."),
            bound,
        );
        registry.register(
            "purchasing_shed",
            help("Orders refused with 503 because every slot and the queue were taken."),
            self.shed.clone(),
        );
        for stage in Stage::ALL {
            drop(
                self.deadline_rejected
                    .get_or_create(&[("stage", stage.label())]),
            );
        }
        registry.register(
            "purchasing_deadline_rejected",
            help(
                "Orders answered 504 because their deadline could not be met, by where it was \
                 found (arrival, queue, store); none was recorded.",
            ),
            self.deadline_rejected.clone(),
        );
        registry.register(
            "purchasing_idempotent_replays",
            help("Orders answered from an earlier request with the same Idempotency-Key."),
            self.replayed.clone(),
        );
    }

    /// Admission control's hold-time estimate, from which it predicts waits.
    fn register_hold_times(&self, registry: &mut Registry) {
        registry.register(
            "purchasing_admission_typical_hold_seconds",
            help(
                "How long an order typically holds its admission slot (moving average of \
                 real holds): what the queue predicts waits from.",
            ),
            self.typical_hold.clone(),
        );
        registry.register(
            "purchasing_admission_hold_deviation_seconds",
            help(
                "Mean deviation of a hold from the typical hold (moving average): a request \
                 queues only if its predicted wait plus 4 deviations fits the wait allowed.",
            ),
            self.hold_deviation.clone(),
        );
    }

    /// What was measured at start-up: the work estimate and the inputs of `auto` sizing.
    fn register_start_up_facts(registry: &mut Registry, settings: &Settings) {
        if let Some(estimate) = settings.work_estimate {
            registry.register(
                "purchasing_work_estimate_seconds",
                help(
                    "Estimated time of one order (delay + calibrated allocation): what a deadline \
                     must leave room for, and what Retry-After is computed from.",
                ),
                fixed(estimate.as_secs_f64()),
            );
        }
        if let Some(sizing) = &settings.sizing {
            let inputs = &sizing.inputs;
            for (name, text, value) in [
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
                registry.register(name, help(text), fixed(value));
            }
        }
    }

    /// Which part of the store refuses orders until a restart.
    fn register_store_failed(&self, registry: &mut Registry) {
        for part in ["orders_file", "journal"] {
            drop(self.store_failed.get_or_create(&[("part", part)]));
        }
        registry.register(
            "purchasing_store_failed",
            help(
                "1 while part of the store refuses orders until the server restarts: the orders \
                 file (a partial line could not be removed; every order fails) or the idempotency \
                 journal (an fsync or an undo failed; keyed orders fail).",
            ),
            self.store_failed.clone(),
        );
    }

    /// The admission limit now.
    pub fn set_admission_limit(&self, limit: usize) {
        self.admission_limit.set(saturating_i64(limit as u64));
    }

    /// The adaptive controller's inputs after an observation.
    pub fn set_adaptive_state(&self, gate_wait: Duration, target: Duration, fill: Duration) {
        self.gate_wait.set(gate_wait.as_secs_f64());
        self.gate_wait_target.set(target.as_secs_f64());
        self.fill.set(fill.as_secs_f64());
    }

    /// Counts one move of the adaptive limit.
    pub fn limit_changed(&self, grew: bool) {
        let direction = if grew { "up" } else { "down" };
        self.limit_changes
            .get_or_create(&[("direction", direction)])
            .inc();
    }

    pub fn record_response(&self, route: Route, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&([("route", route.label())], [("status", status)]))
            .inc();
        if route == Route::Orders {
            self.duration.observe(elapsed.as_secs_f64());
        }
    }

    /// Counts an order as in the blocking pool until the returned guard drops. Call it
    /// inside the blocking closure, so the count is the orders really holding memory.
    pub fn order_started(&self) -> InFlight {
        self.in_flight.start()
    }

    pub fn shed(&self) {
        self.shed.inc();
    }

    pub fn deadline_rejected(&self, stage: Stage) {
        self.deadline_rejected
            .get_or_create(&[("stage", stage.label())])
            .inc();
    }

    pub fn replayed(&self) {
        self.replayed.inc();
    }

    /// The exposition text, with what other parts own as of now (see [`Scrape`]).
    pub fn render(&self, scrape: &Scrape) -> String {
        self.in_flight.refresh();
        let admission = scrape.admission.unwrap_or_default();
        self.admission_queued.set(saturating_i64(admission.queued));
        self.typical_hold.set(admission.typical_hold.as_secs_f64());
        self.hold_deviation
            .set(admission.hold_deviation.as_secs_f64());
        self.resident_memory.set(scrape.resident_memory_bytes);
        for (part, failed) in [
            ("orders_file", scrape.orders_file_failed),
            ("journal", scrape.journal_failed),
        ] {
            self.store_failed
                .get_or_create(&[("part", part)])
                .set(i64::from(failed));
        }
        let mut text = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail, and every name is valid.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// A gauge fixed at start-up.
fn fixed(value: f64) -> FloatGauge {
    let gauge = FloatGauge::default();
    gauge.set(value);
    gauge
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

#[cfg(test)]
mod tests {
    use prometheus_parse::{Scrape as Parsed, Value};

    use super::*;

    fn settings() -> Settings {
        Settings {
            alloc_chars: 1000,
            ..Settings::default()
        }
    }

    /// The exposition as a real parser reads it (every line must parse).
    fn parse(text: &str) -> Parsed {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
                "{line}"
            );
        }
        Parsed::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    fn value(parsed: &Parsed, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        parsed
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name}: {other:?}"),
            })
    }

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let metrics = Metrics::new(settings());
        for ms in [1, 7, 7, 300, 120_000] {
            metrics.record_response(Route::Orders, 201, Duration::from_millis(ms));
        }
        metrics.record_response(Route::Health, 200, Duration::from_millis(1));
        let text = metrics.render(&Scrape::default());
        for line in [
            "purchasing_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "purchasing_request_duration_seconds_bucket{le=\"0.01\"} 3",
            "purchasing_request_duration_seconds_bucket{le=\"0.5\"} 4",
            "purchasing_request_duration_seconds_bucket{le=\"60\"} 4",
            "purchasing_request_duration_seconds_bucket{le=\"+Inf\"} 5",
            "purchasing_request_duration_seconds_count 5",
            "purchasing_requests_total{route=\"orders\",status=\"201\"} 5",
            "purchasing_requests_total{route=\"health\",status=\"200\"} 1",
            "purchasing_admission_limit 0",
            "# TYPE purchasing_requests_total counter",
            "# HELP purchasing_shed_total Orders refused with 503 because every slot and the \
             queue were taken.",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        let parsed = parse(&text);
        let histogram = parsed
            .samples
            .iter()
            .find(|s| s.metric == "purchasing_request_duration_seconds")
            .expect("the histogram parses as one");
        let Value::Histogram(buckets) = &histogram.value else {
            panic!("not a histogram: {histogram:?}")
        };
        assert_eq!(buckets.last().map(|b| b.count), Some(5.0));
        assert_eq!(
            value(&parsed, "purchasing_requests_total", &[("route", "orders")]),
            Some(5.0)
        );
        assert!(
            !text.contains("process_resident_memory_bytes"),
            "absent while unknown"
        );
    }

    #[test]
    fn in_flight_gauges_follow_the_guard() {
        let metrics = Arc::new(Metrics::new(settings()));
        let guard = metrics.order_started();
        let _second = metrics.order_started();
        let parsed = parse(&metrics.render(&Scrape::default()));
        assert_eq!(
            value(&parsed, "purchasing_orders_in_flight", &[]),
            Some(2.0)
        );
        assert_eq!(
            value(&parsed, "purchasing_work_bytes_in_flight", &[]),
            Some(2000.0)
        );
        drop(guard);
        let parsed = parse(&metrics.render(&Scrape::default()));
        assert_eq!(
            value(&parsed, "purchasing_orders_in_flight", &[]),
            Some(1.0)
        );
    }

    #[test]
    fn scraped_numbers_and_optional_families_render() {
        let metrics = Metrics::new(Settings {
            admission: true,
            adaptive_cap: 8,
            queue_limit: 4,
            work_estimate: Some(Duration::from_millis(600)),
            ..settings()
        });
        metrics.limit_changed(true);
        metrics.deadline_rejected(Stage::Queue);
        let parsed = parse(&metrics.render(&Scrape {
            admission: Some(AdmissionNow {
                queued: 3,
                typical_hold: Duration::from_millis(250),
                hold_deviation: Duration::from_millis(50),
            }),
            resident_memory_bytes: Some(4096),
            orders_file_failed: false,
            journal_failed: true,
        }));
        for (name, labels, expected) in [
            ("purchasing_admission_queued", &[][..], 3.0),
            ("purchasing_admission_queue_limit", &[], 4.0),
            ("purchasing_admission_limit_cap", &[], 8.0),
            ("purchasing_admission_typical_hold_seconds", &[], 0.25),
            ("purchasing_admission_hold_deviation_seconds", &[], 0.05),
            ("purchasing_work_estimate_seconds", &[], 0.6),
            ("process_resident_memory_bytes", &[], 4096.0),
            (
                "purchasing_admission_limit_changes_total",
                &[("direction", "up")],
                1.0,
            ),
            (
                "purchasing_admission_limit_changes_total",
                &[("direction", "down")],
                0.0,
            ),
            (
                "purchasing_deadline_rejected_total",
                &[("stage", "queue")],
                1.0,
            ),
            (
                "purchasing_deadline_rejected_total",
                &[("stage", "arrival")],
                0.0,
            ),
            ("purchasing_store_failed", &[("part", "journal")], 1.0),
            ("purchasing_store_failed", &[("part", "orders_file")], 0.0),
        ] {
            assert_eq!(value(&parsed, name, labels), Some(expected), "{name}");
        }
    }

    #[test]
    fn routes_are_counted_by_their_canonical_path() {
        assert_eq!(
            Route::of(wire_contract::http::REPLENISHMENT_PATH),
            Route::Orders
        );
        assert_eq!(Route::of(wire_contract::http::METRICS_PATH), Route::Metrics);
        assert_eq!(Route::of("/nope"), Route::Other);
    }
}
