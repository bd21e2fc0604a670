//! `report.html` from synthetic but realistic reports: a one-minute blog-like step run
//! with an OOM crash, and a ten-hour, million-request run. The page must be
//! self-contained (nothing fetched from the network) and small (< 5 MB).
//!
//! Set `HTML_REPORT_OUT_DIR=/some/dir` to keep the pages and the standalone chart SVGs
//! (e.g. to look at them in a browser: scripts/check-report-in-browser.sh).

use std::collections::BTreeMap;
use std::path::PathBuf;

use lab_report::html::{Chart, escape, render, render_chart_svg};
use lab_report::{
    CrashEvent, GeneratorHealth, LatencySummary, Reconciliation, Report, RequestCounts, RunInfo,
    SCHEMA_VERSION, SecondRow, ServerReport, ServerSample, StepRow, ThresholdResult, Throughput,
    Timeline,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const URL: &str = "http://127.0.0.1:41234/api/purchaseorders";

/// A small deterministic pseudo-random generator (xorshift), so the data looks noisy but
/// the test is reproducible.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 10_000) as f64 / 10_000.0
    }
}

fn base_report(profile: &str, shape: &str, elapsed_s: f64) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        tool: "loadtest 0.1.0".into(),
        started_at: "2025-06-01T12:00:00Z".into(),
        run: RunInfo {
            profile: profile.into(),
            model: "closed".into(),
            shape: shape.into(),
            url: URL.into(),
            timeout_ms: 30_000,
            new_connection_per_request: true,
            iterations_cap: Some(1000),
            duration_cap_s: None,
            elapsed_s,
            transport: "http".into(),
            server_command: Some(vec![
                "/work/target/release/purchasing-api".into(),
                "--bind".into(),
                "127.0.0.1:0".into(),
                "--orders-file".into(),
                "/tmp/run/PurchaseOrders.txt".into(),
                "--alloc-chars".into(),
                "75000000".into(),
            ]),
            orders_file: Some("/tmp/run/PurchaseOrders.txt".into()),
        },
        requests: RequestCounts::default(),
        latency_ms: LatencySummary {
            note: "Closed model: each virtual user waits for its answer before sending again, so a stalled \
                   server slows the senders and these latencies suffer coordinated omission (they understate \
                   what an open stream of users would see)."
                .into(),
            ..Default::default()
        },
        throughput: Throughput::default(),
        generator: GeneratorHealth {
            lag_p50_ms: Some(0.2),
            lag_p99_ms: Some(1.4),
            lag_max_ms: Some(6.0),
            saturated: false,
            cpu_seconds: None,
        },
        steps: Vec::new(),
        knee_step: None,
        reconciliation: Reconciliation::default(),
        server: ServerReport {
            spawned: true,
            memory_limit_bytes: Some(2 * GIB),
            cpu_limit: Some(1.0),
            confinement: "cgroup v1".into(),
            ..Default::default()
        },
        timeline: Timeline::default(),
        thresholds: Vec::new(),
        retries: Default::default(),
        messaging: None,
        broker: None,
        balancer: None,
        topology: None,
        faults: Vec::new(),
    }
}

/// Totals, percentiles and throughput derived from the timeline, as the real aggregation
/// would (roughly).
fn fill_totals(r: &mut Report) {
    let s = &r.timeline.seconds;
    let q = &mut r.requests;
    q.acknowledged = s.iter().map(|x| x.acknowledged).sum();
    q.failed_status = s.iter().map(|x| x.failed_status).sum();
    q.timed_out = s.iter().map(|x| x.timed_out).sum();
    q.connect_errors = s.iter().map(|x| x.connect_errors).sum();
    q.transport_errors = s.iter().map(|x| x.transport_errors).sum();
    q.total =
        q.acknowledged + q.failed_status + q.timed_out + q.connect_errors + q.transport_errors;
    q.by_status = BTreeMap::from([
        ("500".to_string(), q.failed_status * 2 / 3),
        ("503".to_string(), q.failed_status - q.failed_status * 2 / 3),
    ]);
    let elapsed = r.run.elapsed_s;
    r.throughput = Throughput {
        requests_per_s: q.total as f64 / elapsed,
        acknowledged_per_s: q.acknowledged as f64 / elapsed,
        ..Default::default()
    };
    let max = |f: fn(&SecondRow) -> Option<f64>| s.iter().filter_map(f).fold(0.0, f64::max);
    r.latency_ms.count = q.total;
    r.latency_ms.avg = Some(1840.0);
    r.latency_ms.min = Some(3.1);
    r.latency_ms.p50 = Some(620.0);
    r.latency_ms.p90 = Some(7400.0);
    r.latency_ms.p99 = Some(max(|x| x.p99_ms).min(30_000.0));
    r.latency_ms.max = Some(30_004.0);
    r.latency_ms.acknowledged_p50 = Some(540.0);
    r.latency_ms.acknowledged_p99 = Some(12_800.0);
    let samples = &r.timeline.server;
    r.server.peak_memory_bytes = samples.iter().filter_map(|x| x.memory_bytes).max();
    r.server.peak_cpu_percent = Some(
        samples
            .iter()
            .filter_map(|x| x.cpu_percent)
            .fold(0.0, f64::max),
    );
    r.server.peak_threads = samples.iter().filter_map(|x| x.threads).max();
    r.server.cpu_seconds =
        Some(samples.iter().filter_map(|x| x.cpu_percent).sum::<f64>() / 100.0 * 0.25);
}

/// The original experiment in miniature: 20 users +20 every 5 s up to 240, the server
/// OOM-killed at t = 7 s and restarted, memory climbing to the 2 GiB limit again.
pub fn blog_like() -> Report {
    let mut r = base_report(
        "blog",
        "20 users +20 every 5s up to 500 (stopped at 240 after 60s)",
        60.0,
    );
    let mut noise = Noise(0x9e3779b97f4a7c15);
    let restart_at = 9.0;
    r.timeline.seconds = (0..60u64)
        .map(|t| {
            let users = 20 * (t / 5 + 1);
            let down = (7..9).contains(&t);
            let capacity = 9.0 + noise.next() * 3.0;
            let ack = if down {
                0
            } else {
                (users as f64 * 0.9).min(capacity) as u64
            };
            let status = if down {
                0
            } else if users > 120 {
                (noise.next() * 6.0) as u64
            } else {
                0
            };
            let timed_out = if t >= 35 {
                (noise.next() * 4.0 + (users as f64 - 140.0) / 40.0).max(0.0) as u64
            } else {
                0
            };
            let connect = if down { (users / 2).max(1) } else { 0 };
            let transport = if t == 7 { users / 2 } else { 0 };
            let load = users as f64 / capacity;
            let p50 = (40.0 * load * (1.0 + noise.next() * 0.3)).min(30_000.0);
            SecondRow {
                t_s: t,
                users: Some(users),
                offered_rate: None,
                acknowledged: ack,
                failed_status: status,
                timed_out,
                connect_errors: connect,
                transport_errors: transport,
                p50_ms: if down { None } else { Some(p50) },
                p90_ms: if down {
                    None
                } else {
                    Some((p50 * 2.6).min(30_000.0))
                },
                p99_ms: if down {
                    None
                } else {
                    Some(if timed_out > 0 {
                        30_000.0
                    } else {
                        (p50 * 5.0).min(30_000.0)
                    })
                },
                in_flight: users,
            }
        })
        .collect();
    r.timeline.server = (0..240)
        .map(|i| {
            let t = i as f64 * 0.25;
            let mem = if t < 7.0 {
                60.0 * MIB as f64 + (2 * GIB - 60 * MIB) as f64 * (t / 7.0).powf(1.6)
            } else if t < restart_at {
                return ServerSample {
                    t_s: t,
                    ..Default::default()
                };
            } else {
                let climb = ((t - restart_at) / 12.0).min(1.0);
                (60 * MIB) as f64 + (1.93 * GIB as f64 - (60 * MIB) as f64) * climb
                    - noise.next() * 90.0 * MIB as f64 * climb
            };
            let mem = (mem as u64).min(2 * GIB);
            ServerSample {
                t_s: t,
                memory_bytes: Some(mem),
                rss_bytes: Some((mem as f64 * 0.93) as u64),
                cpu_percent: Some(if t < 1.0 {
                    35.0 + noise.next() * 20.0
                } else {
                    88.0 + noise.next() * 12.0
                }),
                threads: Some(4 + (mem / (150 * MIB)).min(60)),
                admission_limit: None,
            }
        })
        .collect();
    r.server.crashes = 1;
    r.server.restarts = 1;
    r.server.crash_events = vec![CrashEvent {
        t_s: 7.0,
        cause: "OOM-killed (SIGKILL from the kernel's OOM killer)".into(),
        oom_killed: true,
    }];
    r.steps = (0..12)
        .map(|i| {
            let rows = &r.timeline.seconds[i * 5..i * 5 + 5];
            let ack: u64 = rows.iter().map(|x| x.acknowledged).sum();
            let failed: u64 = rows.iter().map(SecondRow::failed).sum();
            let timed_out: u64 = rows.iter().map(|x| x.timed_out).sum();
            StepRow {
                index: i,
                users: 20 * (i as u64 + 1),
                start_s: i as f64 * 5.0,
                end_s: (i + 1) as f64 * 5.0,
                sent: ack + failed,
                acknowledged: ack,
                failed,
                timed_out,
                requests_per_s: (ack + failed) as f64 / 5.0,
                acknowledged_per_s: ack as f64 / 5.0,
                p50_ms: rows.iter().filter_map(|x| x.p50_ms).reduce(f64::max),
                p99_ms: rows.iter().filter_map(|x| x.p99_ms).reduce(f64::max),
                knee: i == 1,
            }
        })
        .collect();
    r.knee_step = Some(1);
    fill_totals(&mut r);
    let failed = r.requests.failed();
    r.reconciliation = Reconciliation {
        available: true,
        unavailable_reason: None,
        orders_file: Some("/tmp/run/PurchaseOrders.txt".into()),
        acknowledged_persisted: Some(r.requests.acknowledged - 3),
        lost: Some(3),
        ghost: Some(12),
        failed_absent: Some(failed - 12),
        duplicates: Some(0),
        unexpected: Some(0),
        malformed_lines: Some(1),
        still_queued: None,
        settle_s: Some(31.0),
    };
    r.thresholds = vec![
        ThresholdResult {
            expression: "lost>0".into(),
            value: Some(3.0),
            passed: false,
        },
        ThresholdResult {
            expression: "p99>2000".into(),
            value: r.latency_ms.p99,
            passed: false,
        },
        ThresholdResult {
            expression: "crashes>5".into(),
            value: Some(1.0),
            passed: true,
        },
    ];
    r
}

/// Ten hours at ~28 requests/s: a million requests, one row per second, a server sample
/// every 250 ms, a crash every half hour.
pub fn ten_hours() -> Report {
    let secs = 36_000u64;
    let mut r = base_report("step", "50 users +10 every 10min up to 100", secs as f64);
    r.run.iterations_cap = Some(1_000_000);
    r.run.duration_cap_s = Some(36_000.0);
    r.run.new_connection_per_request = false;
    r.generator.saturated = true;
    r.generator.lag_p99_ms = Some(180.0);
    let mut noise = Noise(42);
    r.timeline.seconds = (0..secs)
        .map(|t| {
            let users = (50 + 10 * (t / 600)).min(100);
            let ack = 26 + (noise.next() * 4.0) as u64;
            let failed = if noise.next() < 0.05 { 1 } else { 0 };
            let p50 = 30.0 + noise.next() * 20.0 + (t % 1800) as f64 / 60.0;
            SecondRow {
                t_s: t,
                users: Some(users),
                offered_rate: None,
                acknowledged: ack,
                failed_status: failed,
                timed_out: if noise.next() < 0.01 { 1 } else { 0 },
                connect_errors: 0,
                transport_errors: 0,
                p50_ms: Some(p50),
                p90_ms: Some(p50 * 2.5),
                p99_ms: Some(if noise.next() < 0.005 {
                    30_000.0
                } else {
                    p50 * 6.0
                }),
                in_flight: users,
            }
        })
        .collect();
    // Nudge the per-second counts, one request at a time across the run, so it has
    // exactly one million requests.
    let total: i64 = r
        .timeline
        .seconds
        .iter()
        .map(|x| (x.acknowledged + x.failed()) as i64)
        .sum();
    let mut excess = total - 1_000_000;
    let n = r.timeline.seconds.len();
    let mut i = 0;
    while excess != 0 {
        let row = &mut r.timeline.seconds[i % n];
        if excess > 0 && row.acknowledged > 0 {
            row.acknowledged -= 1;
            excess -= 1;
        } else if excess < 0 {
            row.acknowledged += 1;
            excess += 1;
        }
        i += 1;
    }
    r.timeline.server = (0..144_000)
        .map(|i| {
            let t = i as f64 * 0.25;
            let phase = (t % 1800.0) / 1800.0;
            ServerSample {
                t_s: t,
                memory_bytes: Some(
                    200 * MIB + ((2 * GIB - 200 * MIB) as f64 * phase) as u64
                        - (noise.next() * 30.0 * MIB as f64) as u64,
                ),
                rss_bytes: Some(190 * MIB + ((2 * GIB - 300 * MIB) as f64 * phase) as u64),
                cpu_percent: Some(60.0 + noise.next() * 40.0),
                threads: Some(8),
                admission_limit: None,
            }
        })
        .collect();
    r.server.crash_events = (1..20)
        .map(|k| CrashEvent {
            t_s: k as f64 * 1800.0,
            cause: "OOM-killed (SIGKILL from the kernel's OOM killer)".into(),
            oom_killed: true,
        })
        .collect();
    r.server.crashes = r.server.crash_events.len() as u64;
    r.server.restarts = r.server.crashes;
    r.steps = (0..6)
        .map(|i| StepRow {
            index: i,
            users: 50 + 10 * i as u64,
            start_s: i as f64 * 600.0,
            end_s: if i == 5 {
                36_000.0
            } else {
                (i + 1) as f64 * 600.0
            },
            sent: 17_000,
            acknowledged: 16_900,
            failed: 100,
            timed_out: 10,
            requests_per_s: 28.0,
            acknowledged_per_s: 27.8,
            p50_ms: Some(40.0),
            p99_ms: Some(300.0),
            knee: false,
        })
        .collect();
    fill_totals(&mut r);
    assert_eq!(r.requests.total, 1_000_000);
    r.reconciliation = Reconciliation {
        available: true,
        unavailable_reason: None,
        orders_file: Some("/tmp/run/PurchaseOrders.txt".into()),
        acknowledged_persisted: Some(r.requests.acknowledged),
        lost: Some(0),
        ghost: Some(40),
        failed_absent: Some(r.requests.failed() - 40),
        duplicates: Some(0),
        unexpected: Some(0),
        malformed_lines: Some(0),
        still_queued: None,
        settle_s: Some(2.0),
    };
    r
}

/// The open model through a spike: 20/s, 120/s from 20 s to 30 s, back to 20/s; the
/// server (unconfined) queues, then sheds with 503s.
pub fn open_spike() -> Report {
    let mut r = base_report("rate", "20/s, spike to 120/s at 20s for 10s, 60s", 60.0);
    r.run.model = "open".into();
    r.run.iterations_cap = None;
    r.run.duration_cap_s = Some(60.0);
    r.latency_ms.note =
        "Open model: latency counts from each request's scheduled send time, so queueing \
                         in a stalled server is included (no coordinated omission)."
            .into();
    r.server.memory_limit_bytes = None;
    r.server.cpu_limit = None;
    r.server.confinement = "none".into();
    let mut noise = Noise(7);
    r.timeline.seconds = (0..60u64)
        .map(|t| {
            let offered = if (20..30).contains(&t) { 120.0 } else { 20.0 };
            let spike = (20..34).contains(&t);
            let ack = if spike {
                45 + (noise.next() * 10.0) as u64
            } else {
                19 + (noise.next() * 3.0) as u64
            };
            let shed = if (22..31).contains(&t) {
                60 + (noise.next() * 20.0) as u64
            } else {
                0
            };
            let p50 = if spike {
                800.0 + noise.next() * 400.0
            } else {
                12.0 + noise.next() * 4.0
            };
            SecondRow {
                t_s: t,
                users: None,
                offered_rate: Some(offered),
                acknowledged: ack,
                failed_status: shed,
                p50_ms: Some(p50),
                p90_ms: Some(p50 * 2.0),
                p99_ms: Some(p50 * 3.5),
                in_flight: if spike { 40 } else { 1 },
                ..Default::default()
            }
        })
        .collect();
    r.timeline.server = (0..240)
        .map(|i| {
            let t = i as f64 * 0.25;
            let busy = (20.0..34.0).contains(&t);
            ServerSample {
                t_s: t,
                memory_bytes: Some(
                    if busy { 1_500 * MIB } else { 300 * MIB } + (noise.next() * 50.0) as u64 * MIB,
                ),
                rss_bytes: None,
                cpu_percent: Some(if busy { 390.0 } else { 60.0 } + noise.next() * 10.0),
                threads: Some(12),
                admission_limit: None,
            }
        })
        .collect();
    fill_totals(&mut r);
    let failed = r.requests.failed();
    r.reconciliation = Reconciliation {
        available: true,
        unavailable_reason: None,
        orders_file: Some("/tmp/run/PurchaseOrders.txt".into()),
        acknowledged_persisted: Some(r.requests.acknowledged),
        lost: Some(0),
        ghost: Some(0),
        failed_absent: Some(failed),
        duplicates: Some(0),
        unexpected: Some(0),
        malformed_lines: Some(0),
        still_queued: None,
        settle_s: Some(1.0),
    };
    r
}

fn out_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("HTML_REPORT_OUT_DIR") {
        Some(d) => {
            std::fs::create_dir_all(&d).unwrap();
            (None, PathBuf::from(d))
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

/// Nothing in the page may be fetched: the only URLs are the report's own target URL,
/// shown as text.
fn assert_self_contained(html: &str, report: &Report) {
    let without_target = html.replace(&escape(&report.run.url), "");
    assert!(
        !without_target.contains("http://"),
        "an http:// reference besides the target URL"
    );
    assert!(
        !without_target.contains("https://"),
        "an https:// reference"
    );
    let lower = html.to_ascii_lowercase();
    for needle in [
        "<script", "<link", "url(", "@import", "<img", "<iframe", "<object", "<embed", "src=",
    ] {
        assert!(!lower.contains(needle), "found {needle:?}");
    }
    assert!(!html.contains("NaN"));
}

#[test]
fn blog_like_report_is_self_contained_and_complete() {
    let report = blog_like();
    let html = render(&report);
    assert!(html.len() < 5_000_000);
    assert!(html.contains("<svg"));
    assert_self_contained(&html, &report);
    assert!(html.contains("limit 2.0 GiB"), "memory limit line");
    assert!(html.contains("crash 1 · OOM"), "crash marker");
    assert!(html.contains("<tr class=\"knee\">"), "knee row");
    assert!(html.contains("coordinated omission"));
    assert!(html.contains("lost"));
    // Every time chart carries the crash line.
    assert_eq!(html.matches("crash 1 at 7 s: OOM-killed").count(), 4);
    assert!(html.contains(&escape("/tmp/run/PurchaseOrders.txt")));

    let (_keep, dir) = out_dir();
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    assert_eq!(std::fs::metadata(&page).unwrap().len(), html.len() as u64);
    for chart in Chart::ALL {
        let svg = render_chart_svg(&report, chart);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("NaN"));
        std::fs::write(dir.join(chart.file_name()), svg).unwrap();
    }
    eprintln!(
        "blog-like report: {} bytes at {}",
        html.len(),
        page.display()
    );
}

#[test]
fn million_request_ten_hour_report_stays_small() {
    let report = ten_hours();
    assert_eq!(report.timeline.seconds.len(), 36_000);
    assert_eq!(report.timeline.server.len(), 144_000);
    let html = render(&report);
    eprintln!("1M requests / 10 h report: {} bytes", html.len());
    assert!(html.len() < 5_000_000, "{} bytes", html.len());
    assert!(html.contains("<svg"));
    assert!(html.contains("Generator saturated"));
    assert_self_contained(&html, &report);
    let (_keep, dir) = out_dir();
    std::fs::write(dir.join("report-10h.html"), &html).unwrap();
}

#[test]
fn remote_run_without_server_or_reconciliation_renders() {
    let mut report = blog_like();
    report.run.server_command = None;
    report.run.orders_file = None;
    report.server = ServerReport {
        confinement: "none".into(),
        ..Default::default()
    };
    report.timeline.server.clear();
    report.reconciliation = Reconciliation {
        available: false,
        unavailable_reason: Some(
            "no readable orders file for a server the lab did not start".into(),
        ),
        ..Default::default()
    };
    let html = render(&report);
    assert!(html.contains("Reconciliation unavailable"));
    assert!(html.contains("no readable orders file"));
    assert!(html.contains("No server charts"));
    assert_self_contained(&html, &report);
    let (_keep, dir) = out_dir();
    std::fs::write(dir.join("report-remote.html"), &html).unwrap();
}

#[test]
fn open_model_spike_renders_the_offered_rate() {
    let report = open_spike();
    let html = render(&report);
    assert!(html.contains("offered rate"));
    assert!(html.contains("Offered rate and completed requests per second"));
    assert!(
        !html.contains("knee: ") && !html.contains("<tr class=\"knee\">"),
        "no steps, no knee"
    );
    assert_self_contained(&html, &report);
    let (_keep, dir) = out_dir();
    std::fs::write(dir.join("report-open.html"), &html).unwrap();
}
