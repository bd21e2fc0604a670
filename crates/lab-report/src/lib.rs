//! The report: its data model ([`model`]), the summary table for the terminal
//! ([`summary`]), and the self-contained HTML page ([`html`]).
//!
//! The page, one job per module: [`page`] (the document's skeleton and style sheet),
//! [`cards`] (its sections), [`charts`] (the catalogue of charts and their time axis), [`markers`],
//! [`request_charts`], [`server_charts`], [`queue`] (the messaging card and chart),
//! [`reconciliation`], [`tooltips`]; the drawing: [`time_chart`], [`bar_chart`], [`svg`]
//! (building blocks), [`axes`], [`downsampling`]; and [`format`], the one place for
//! escaping and number formatting. [`comparison`], [`transports`] and [`sweep`] render the side-by-side pages.
//!
//! A crate of its own so that the boundary holds: data and rendering only, on serde and
//! the topology's data types (`lab-topology`), with no runtime, network or processes.
//! The lab (`loadtest`) fills a [`Report`] and re-exports this crate as `loadtest::report`.

pub mod axes;
pub mod balancer;
pub mod bar_chart;
pub mod cards;
pub mod charts;
pub mod comparison;
pub mod downsampling;
pub mod format;
pub mod html;
pub mod markers;
pub mod model;
pub mod page;
pub mod queue;
pub mod reconciliation;
pub mod request_charts;
pub mod server_charts;
pub mod summary;
pub mod svg;
pub mod sweep;
pub mod time_chart;
pub mod tooltips;
pub mod transports;

pub use model::*;

/// A fully populated report for unit tests of the modules that read reports (this crate's,
/// and with the `test-support` feature, loadtest's).
#[cfg(any(test, feature = "test-support"))]
pub mod tests_support {
    use super::*;

    pub fn sample_report() -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            tool: "loadtest test".into(),
            started_at: "2026-11-21T00:00:00Z".into(),
            run: RunInfo {
                profile: "blog".into(),
                model: "closed".into(),
                shape: "20 users, +20 every 5s, up to 500".into(),
                url: "http://127.0.0.1:1".into(),
                timeout_ms: 30_000,
                new_connection_per_request: true,
                iterations_cap: Some(1000),
                duration_cap_s: Some(60.0),
                elapsed_s: 10.0,
                transport: "http".into(),
                server_command: Some(vec!["purchasing-api".into()]),
                orders_file: Some("PurchaseOrders.txt".into()),
            },
            requests: RequestCounts {
                total: 100,
                acknowledged: 60,
                failed_status: 10,
                timed_out: 10,
                connect_errors: 15,
                transport_errors: 5,
                by_status: [("500".to_string(), 10)].into_iter().collect(),
            },
            latency_ms: LatencySummary {
                count: 100,
                avg: Some(900.0),
                min: Some(500.0),
                p50: Some(600.0),
                p90: Some(1500.0),
                p99: Some(29_000.0),
                max: Some(30_000.0),
                acknowledged_p50: Some(600.0),
                acknowledged_p99: Some(2000.0),
                note: "closed model".into(),
                shed_p50: Some(1.0),
                shed_p99: Some(4.0),
                admitted_p50: Some(600.0),
                admitted_p99: Some(1200.0),
            },
            throughput: Throughput {
                requests_per_s: 10.0,
                acknowledged_per_s: 6.0,
                pre_spike_acknowledged_per_s: Some(6.0),
                recovery_s: Some(2.0),
            },
            generator: GeneratorHealth {
                lag_p50_ms: Some(0.0),
                lag_p99_ms: Some(1.0),
                lag_max_ms: Some(2.0),
                saturated: false,
                cpu_seconds: None,
            },
            steps: Vec::new(),
            knee_step: None,
            reconciliation: Reconciliation {
                available: true,
                unavailable_reason: None,
                orders_file: Some("PurchaseOrders.txt".into()),
                acknowledged_persisted: Some(60),
                lost: Some(0),
                ghost: Some(3),
                failed_absent: Some(37),
                duplicates: Some(0),
                unexpected: Some(0),
                malformed_lines: Some(0),
                still_queued: None,
                settle_s: Some(1.0),
            },
            server: ServerReport {
                spawned: true,
                crashes: 1,
                crash_events: vec![CrashEvent {
                    t_s: 4.0,
                    cause: "OOM-killed".into(),
                    oom_killed: true,
                }],
                restarts: 1,
                peak_memory_bytes: Some(2 << 30),
                memory_limit_bytes: Some(2 << 30),
                cpu_limit: Some(1.0),
                peak_cpu_percent: Some(100.0),
                cpu_seconds: Some(9.0),
                peak_threads: Some(30),
                confinement: "cgroup v1".into(),
            },
            timeline: Timeline::default(),
            thresholds: Vec::new(),
            retries: RetryStats {
                enabled: true,
                max_attempts: 3,
                attempts_total: 105,
                attempts_per_request: Some(1.05),
                attempts_max: 3,
                budget_denied: 2,
                replayed: 1,
            },
            messaging: None,
            broker: None,
            balancer: None,
            topology: None,
            faults: Vec::new(),
        }
    }
}
