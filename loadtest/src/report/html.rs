//! `report.html`: one self-contained page — inline CSS, charts as inline SVG drawn here
//! ([`super::svg`]), no script, no font, no image, nothing fetched from the network — so it
//! opens from a CI artifact or an e-mail as it is.
//!
//! Contents: the run, headline figures, the counters of the original Visual Studio load
//! test (total, passed, failed by kind, test times, tests/s) with the server's peak memory
//! and CPU, the reconciliation of every order (table and bar), charts over time (users and
//! completions per second, latency percentiles, server memory against its limit, CPU) with
//! crashes marked on each, the per-step table with the knee, generator health, thresholds
//! and crash events. The timeline is already per second; long series are downsampled with
//! LTTB, so a ten-hour, million-request run stays well under 5 MB.
//!
//! [`render_chart_svg`] gives one chart as a standalone SVG document (for the README).

use std::fmt::Write as _;

use super::format::{
    DASH, at, duration, fin, fmt_bytes, fmt_ms, int, opt_bytes, opt_int, opt_ms, pct, plural, rate,
    trim,
};
use super::svg::{
    self, AreaLayer, Axis, BarSegment, HoverBand, LineSeries, MAX_POINTS, Marker, Rule,
    StackedArea, StackedBar, TimeAxis, TimeChart, Unit,
};
use super::{Report, SecondRow, ServerSample};

pub use super::format::escape;

/// The charts of the report, each available as a standalone SVG document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chart {
    /// Users (or offered rate) and completed requests per second by outcome.
    Throughput,
    /// Latency percentiles p50/p90/p99 per second.
    Latency,
    /// Server memory with the limit line.
    Memory,
    /// Server CPU in % of one CPU.
    Cpu,
    /// The reconciliation as a horizontal stacked bar.
    Reconciliation,
}

impl Chart {
    pub const ALL: [Chart; 5] = [
        Chart::Throughput,
        Chart::Latency,
        Chart::Memory,
        Chart::Cpu,
        Chart::Reconciliation,
    ];

    /// A file name for the chart, e.g. `throughput.svg`.
    pub fn file_name(self) -> &'static str {
        match self {
            Chart::Throughput => "throughput.svg",
            Chart::Latency => "latency.svg",
            Chart::Memory => "memory.svg",
            Chart::Cpu => "cpu.svg",
            Chart::Reconciliation => "reconciliation.svg",
        }
    }
}

/// One chart as a standalone SVG document (with its `xmlns`), e.g. to commit next to the
/// README.
pub fn render_chart_svg(report: &Report, chart: Chart) -> String {
    let x = time_axis(report);
    match chart {
        Chart::Throughput => throughput_chart(report, &x).to_svg(true),
        Chart::Latency => latency_chart(report, &x).to_svg(true),
        Chart::Memory => memory_chart(report, &x).to_svg(true),
        Chart::Cpu => cpu_chart(report, &x).to_svg(true),
        Chart::Reconciliation => reconciliation_bar(report).to_svg(true),
    }
}

// ---------------------------------------------------------------------------------------
// Colours
// ---------------------------------------------------------------------------------------

const C_ACK: &str = "#4e9a57";
const C_STATUS: &str = "#f28e2b";
const C_TIMEOUT: &str = "#e15759";
const C_CONNECT: &str = "#9467bd";
const C_TRANSPORT: &str = "#8c6d5a";
const C_USERS: &str = "#1f2937";
const C_OFFERED: &str = "#2f6db5";
const C_P50: &str = "#2f6db5";
const C_P90: &str = "#f28e2b";
const C_P99: &str = "#d62728";
const C_MEMORY: &str = "#2f6db5";
const C_RSS: &str = "#17a2b8";
const C_CPU: &str = "#e07b00";
const C_ADMISSION: &str = "#1f2937";
const C_LIMIT: &str = "#c0392b";
const C_CRASH: &str = "#d0021b";
const C_KNEE: &str = "#a16207";
const C_LOST: &str = "#c0392b";
const C_GHOST: &str = "#f28e2b";
const C_ABSENT: &str = "#a8a29e";
const C_DUP: &str = "#9467bd";
const C_UNEXPECTED: &str = "#8c6d5a";
const C_MALFORMED: &str = "#374151";

// ---------------------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------------------

/// The x axis every time chart shares: from the load start to the last thing recorded.
fn time_axis(report: &Report) -> TimeAxis {
    let mut max = fin(Some(report.run.elapsed_s)).unwrap_or(0.0);
    if let Some(last) = report.timeline.seconds.last() {
        max = max.max(last.t_s as f64 + 1.0);
    }
    if let Some(t) = server_samples(report).last() {
        max = max.max(t.t_s);
    }
    for e in &report.server.crash_events {
        if e.t_s.is_finite() {
            max = max.max(e.t_s);
        }
    }
    TimeAxis::new(max.max(1.0))
}

/// Vertical markers for crashes and the knee, shared by the time charts.
fn markers(report: &Report, with_knee: bool) -> (Vec<Marker>, Vec<(String, &'static str, bool)>) {
    let mut out = Vec::new();
    let mut legend = Vec::new();
    if with_knee && let Some(step) = report.knee_step.and_then(|k| report.steps.get(k)) {
        out.push(Marker {
            x: step.start_s,
            label: format!("knee: {} users", step.users),
            tooltip: format!(
                "knee at {}: step {} with {} users (p99 {}, {} tests/s)",
                at(step.start_s),
                step.index + 1,
                step.users,
                opt_ms(step.p99_ms),
                rate(step.requests_per_s)
            ),
            color: C_KNEE,
            dashed: true,
        });
        legend.push(("knee".to_string(), C_KNEE, true));
    }
    // Hundreds of crash lines say "crashing all the time" as well as thousands do; beyond
    // a few, labels would only hide each other (each line keeps its tooltip).
    let events = &report.server.crash_events;
    let labelled = events.len() <= MAX_LABELLED_CRASHES;
    for (i, e) in events.iter().enumerate().take(500) {
        if !e.t_s.is_finite() {
            continue;
        }
        let label = if !labelled {
            String::new()
        } else if e.oom_killed {
            format!("crash {} · OOM", i + 1)
        } else {
            format!("crash {}", i + 1)
        };
        out.push(Marker {
            x: e.t_s,
            label,
            tooltip: format!("crash {} at {}: {}", i + 1, at(e.t_s), e.cause),
            color: C_CRASH,
            dashed: false,
        });
    }
    match events.len() {
        0 => {}
        1 => legend.push(("crash".to_string(), C_CRASH, false)),
        n => legend.push((format!("crashes ({})", int(n as u64)), C_CRASH, false)),
    }
    (out, legend)
}

/// Crash lines beyond this many are drawn without a label.
const MAX_LABELLED_CRASHES: usize = 6;

const HOVER_BANDS: usize = 300;

fn span_label(t0: f64, t1: f64) -> String {
    if t1 - t0 <= 1.0 + 1e-9 {
        format!("t = {}", at(t0))
    } else {
        format!("t = {} – {}", at(t0), at(t1))
    }
}

/// Tooltip for a range of per-second rows: the values for one second, or averages (rates)
/// and maxima (latencies) over several.
fn seconds_tooltip(rows: &[SecondRow]) -> String {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return String::new();
    };
    let n = rows.len() as f64;
    let sum = |f: fn(&SecondRow) -> u64| rows.iter().map(f).sum::<u64>() as f64 / n;
    let maxf = |f: fn(&SecondRow) -> Option<f64>| {
        rows.iter()
            .filter_map(|r| fin(f(r)))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let per = if rows.len() > 1 { "/s avg" } else { "/s" };
    let agg = if rows.len() > 1 { "max " } else { "" };
    let mut s = span_label(first.t_s as f64, last.t_s as f64 + 1.0);
    if let Some(u) = rows.iter().filter_map(|r| r.users).max() {
        let _ = write!(s, " · {} users", int(u));
    }
    if let Some(r) = maxf(|r| r.offered_rate) {
        let _ = write!(s, " · offered {}{per}", rate(r));
    }
    let _ = write!(s, "\nacknowledged {}{per}", rate(sum(|r| r.acknowledged)));
    let failed = sum(SecondRow::failed);
    let _ = write!(s, " · failed {}{per}", rate(failed));
    if failed > 0.0 {
        let parts: Vec<String> = [
            ("HTTP status", sum(|r| r.failed_status)),
            ("timed out", sum(|r| r.timed_out)),
            ("refused", sum(|r| r.connect_errors)),
            ("reset/other", sum(|r| r.transport_errors)),
        ]
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(k, v)| format!("{k} {}", rate(*v)))
        .collect();
        let _ = write!(s, " ({})", parts.join(", "));
    }
    let _ = write!(
        s,
        "\n{agg}p50 {} · {agg}p90 {} · {agg}p99 {}",
        opt_ms(maxf(|r| r.p50_ms)),
        opt_ms(maxf(|r| r.p90_ms)),
        opt_ms(maxf(|r| r.p99_ms))
    );
    let _ = write!(
        s,
        "\nin flight {}{}",
        if rows.len() > 1 { "max " } else { "" },
        int(rows.iter().map(|r| r.in_flight).max().unwrap_or(0))
    );
    s
}

fn seconds_hover(report: &Report) -> Vec<HoverBand> {
    let rows = &report.timeline.seconds;
    svg::bucket_ranges(rows.len(), HOVER_BANDS)
        .into_iter()
        .map(|r| HoverBand {
            x0: rows[r.start].t_s as f64,
            x1: rows[r.end - 1].t_s as f64 + 1.0,
            text: seconds_tooltip(&rows[r]),
        })
        .collect()
}

/// Keeps the first point of each run of equal values, and the last point: enough for a
/// staircase line, and tiny for a step profile.
fn dedupe_steps(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let n = points.len();
    for (i, p) in points.into_iter().enumerate() {
        if out.last().is_none_or(|l| l.1 != p.1) || i + 1 == n {
            out.push(p);
        }
    }
    out
}

/// Reads one count, or one latency percentile, from a per-second row.
type Count = fn(&SecondRow) -> u64;
type Percentile = fn(&SecondRow) -> Option<f64>;

fn throughput_chart(report: &Report, x: &TimeAxis) -> TimeChart {
    let rows = &report.timeline.seconds;
    let xs: Vec<f64> = rows.iter().map(|r| r.t_s as f64 + 0.5).collect();
    let kinds: [(&str, &'static str, Count); 5] = [
        ("acknowledged", C_ACK, |r| r.acknowledged),
        ("failed: HTTP status", C_STATUS, |r| r.failed_status),
        ("failed: timed out", C_TIMEOUT, |r| r.timed_out),
        ("failed: refused", C_CONNECT, |r| r.connect_errors),
        ("failed: reset/other", C_TRANSPORT, |r| r.transport_errors),
    ];
    let layers: Vec<AreaLayer> = kinds
        .iter()
        .enumerate()
        .filter(|(i, (_, _, f))| *i == 0 || rows.iter().any(|r| f(r) > 0))
        .map(|(_, (name, color, f))| AreaLayer {
            name: name.to_string(),
            color,
            values: rows.iter().map(|r| f(r) as f64).collect(),
        })
        .collect();
    let mut left_max = rows
        .iter()
        .map(|r| (r.acknowledged + r.failed()) as f64)
        .fold(0.0, f64::max);

    let mut lines = Vec::new();
    let offered: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| fin(r.offered_rate).map(|v| (r.t_s as f64, v)))
        .collect();
    if !offered.is_empty() {
        left_max = left_max.max(offered.iter().map(|p| p.1).fold(0.0, f64::max));
        lines.push(LineSeries {
            name: "offered rate".into(),
            color: C_OFFERED,
            width: 2.0,
            dash: Some("6 4"),
            right_axis: false,
            fill: false,
            step: true,
            segments: svg::segments(
                dedupe_steps(offered).into_iter().map(|(x, y)| (x, Some(y))),
                None,
                MAX_POINTS,
            ),
        });
    }
    let users: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.users.map(|u| (r.t_s as f64, u as f64)))
        .collect();
    let right = if users.is_empty() {
        None
    } else {
        let max_users = users.iter().map(|p| p.1).fold(0.0, f64::max);
        lines.push(LineSeries {
            name: "virtual users".into(),
            color: C_USERS,
            width: 2.0,
            dash: None,
            right_axis: true,
            fill: false,
            step: true,
            segments: svg::segments(
                dedupe_steps(users).into_iter().map(|(x, y)| (x, Some(y))),
                None,
                MAX_POINTS,
            ),
        });
        Some(Axis::linear("virtual users", max_users * 1.05, Unit::Count))
    };
    let (markers, marker_legend) = markers(report, true);
    TimeChart {
        title: if right.is_some() {
            "Users and completed requests per second".into()
        } else {
            "Offered rate and completed requests per second".into()
        },
        height: 340.0,
        x: x.clone(),
        left: Axis::linear("requests / s (completed)", left_max * 1.05, Unit::Count),
        right,
        area: Some(StackedArea { xs, layers }),
        lines,
        rules: Vec::new(),
        markers,
        marker_legend,
        hover: seconds_hover(report),
        note: rows
            .is_empty()
            .then(|| "no requests were recorded".to_string()),
    }
}

fn latency_chart(report: &Report, x: &TimeAxis) -> TimeChart {
    let rows = &report.timeline.seconds;
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.p50_ms, r.p90_ms, r.p99_ms])
        .filter_map(fin)
        .filter(|v| *v > 0.0)
        .collect();
    let min = all.iter().copied().fold(f64::INFINITY, f64::min);
    let mut max = all.iter().copied().fold(0.0, f64::max);
    let timeout = report.run.timeout_ms as f64;
    let show_timeout = timeout > 0.0 && max >= timeout * 0.2;
    if show_timeout {
        max = max.max(timeout);
    }
    let log = !all.is_empty() && max / min.max(0.1) > 30.0;
    let left = if log {
        Axis::log_ms("latency (log scale)", min, max)
    } else {
        Axis::linear("latency", max * 1.05, Unit::Ms)
    };
    let series: [(&str, &'static str, f64, Percentile); 3] = [
        ("p50", C_P50, 1.6, |r| r.p50_ms),
        ("p90", C_P90, 1.6, |r| r.p90_ms),
        ("p99", C_P99, 2.0, |r| r.p99_ms),
    ];
    let lines = series
        .iter()
        .map(|(name, color, width, f)| LineSeries {
            name: name.to_string(),
            color,
            width: *width,
            dash: None,
            right_axis: false,
            fill: false,
            step: false,
            segments: svg::segments(
                rows.iter().map(|r| (r.t_s as f64 + 0.5, f(r))),
                Some(1.5),
                MAX_POINTS,
            ),
        })
        .collect();
    let rules = if show_timeout {
        vec![Rule {
            value: timeout,
            right_axis: false,
            label: format!("client timeout {}", fmt_ms(timeout)),
            color: C_LIMIT,
        }]
    } else {
        Vec::new()
    };
    let (markers, marker_legend) = markers(report, true);
    TimeChart {
        title: "Latency per second (test time of the requests completed in that second)".into(),
        height: 320.0,
        x: x.clone(),
        left,
        right: None,
        area: None,
        lines,
        rules,
        markers,
        marker_legend,
        hover: seconds_hover(report),
        note: all.is_empty().then(|| "no completed requests".to_string()),
    }
}

/// Largest gap between server samples that still counts as continuous sampling.
fn sample_gap(samples: &[&ServerSample]) -> f64 {
    let mut d: Vec<f64> = samples
        .windows(2)
        .map(|w| w[1].t_s - w[0].t_s)
        .filter(|d| d.is_finite() && *d > 0.0)
        .collect();
    if d.is_empty() {
        return 1.0;
    }
    let mid = d.len() / 2;
    let (_, median, _) = d.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
    (*median * 4.0).max(1.0)
}

/// The server samples that can be placed on the time axis.
fn server_samples(report: &Report) -> Vec<&ServerSample> {
    report
        .timeline
        .server
        .iter()
        .filter(|s| s.t_s.is_finite())
        .collect()
}

fn server_hover(samples: &[&ServerSample]) -> Vec<HoverBand> {
    svg::bucket_ranges(samples.len(), HOVER_BANDS)
        .into_iter()
        .map(|r| {
            let s = &samples[r.clone()];
            let t0 = s[0].t_s;
            let t1 = s[s.len() - 1].t_s;
            let x1 = samples.get(r.end).map(|n| n.t_s).unwrap_or(t1 + 0.25);
            let max_u = |f: fn(&ServerSample) -> Option<u64>| s.iter().filter_map(|x| f(x)).max();
            let max_f = |f: fn(&ServerSample) -> Option<f64>| {
                s.iter()
                    .filter_map(|x| fin(f(x)))
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            };
            let agg = if s.len() > 1 { "max " } else { "" };
            let mut text = if s.len() > 1 {
                format!("t = {} – {}", at(t0), at(t1))
            } else {
                format!("t = {}", at(t0))
            };
            let _ = write!(
                text,
                "\n{agg}memory {} · {agg}RSS {}\n{agg}CPU {} · {agg}threads {}",
                opt_bytes(max_u(|x| x.memory_bytes)),
                opt_bytes(max_u(|x| x.rss_bytes)),
                fin(max_f(|x| x.cpu_percent))
                    .map(|v| format!("{} %", trim(v, 0)))
                    .unwrap_or_else(|| DASH.into()),
                opt_int(max_u(|x| x.threads))
            );
            HoverBand { x0: t0, x1, text }
        })
        .collect()
}

fn no_server_note(report: &Report) -> String {
    if report.server.spawned {
        "no server samples were recorded".to_string()
    } else {
        "no server samples: the server was not started by the lab (--spawn-server), so it was not sampled".to_string()
    }
}

fn memory_chart(report: &Report, x: &TimeAxis) -> TimeChart {
    let samples = &server_samples(report);
    let gap = sample_gap(samples);
    let confined = report.server.confinement.starts_with("cgroup");
    let mut max = samples
        .iter()
        .flat_map(|s| [s.memory_bytes, s.rss_bytes])
        .flatten()
        .max()
        .unwrap_or(0) as f64;
    max = max.max(report.server.peak_memory_bytes.unwrap_or(0) as f64);
    let limit = report.server.memory_limit_bytes.filter(|l| *l > 0);
    if let Some(l) = limit {
        max = max.max(l as f64);
    }
    let mut lines = vec![LineSeries {
        name: if confined {
            "memory (cgroup)".into()
        } else {
            "memory (RSS)".into()
        },
        color: C_MEMORY,
        width: 2.0,
        dash: None,
        right_axis: false,
        fill: true,
        step: false,
        segments: svg::segments(
            samples
                .iter()
                .map(|s| (s.t_s, s.memory_bytes.map(|b| b as f64))),
            Some(gap),
            MAX_POINTS,
        ),
    }];
    if confined && samples.iter().any(|s| s.rss_bytes.is_some()) {
        lines.push(LineSeries {
            name: "process RSS".into(),
            color: C_RSS,
            width: 1.4,
            dash: Some("5 3"),
            right_axis: false,
            fill: false,
            step: false,
            segments: svg::segments(
                samples
                    .iter()
                    .map(|s| (s.t_s, s.rss_bytes.map(|b| b as f64))),
                Some(gap),
                MAX_POINTS,
            ),
        });
    }
    let rules = limit
        .map(|l| {
            vec![Rule {
                value: l as f64,
                right_axis: false,
                label: format!("limit {}", fmt_bytes(l as f64)),
                color: C_LIMIT,
            }]
        })
        .unwrap_or_default();
    let (markers, marker_legend) = markers(report, false);
    TimeChart {
        title: "Server memory".into(),
        height: 300.0,
        x: x.clone(),
        left: Axis::linear("memory", max * 1.1, Unit::Bytes),
        right: None,
        area: None,
        lines,
        rules,
        markers,
        marker_legend,
        hover: server_hover(samples),
        note: samples.is_empty().then(|| no_server_note(report)),
    }
}

fn cpu_chart(report: &Report, x: &TimeAxis) -> TimeChart {
    let samples = &server_samples(report);
    let gap = sample_gap(samples);
    let limit = fin(report.server.cpu_limit)
        .filter(|l| *l > 0.0)
        .map(|l| l * 100.0);
    let mut max = samples
        .iter()
        .filter_map(|s| fin(s.cpu_percent))
        .fold(0.0, f64::max);
    max = max.max(fin(report.server.peak_cpu_percent).unwrap_or(0.0));
    if let Some(l) = limit {
        max = max.max(l);
    }
    let rules = limit
        .map(|l| {
            let cpus = l / 100.0;
            vec![Rule {
                value: l,
                right_axis: false,
                label: format!(
                    "limit {} CPU{}",
                    trim(cpus, 2),
                    if cpus == 1.0 { "" } else { "s" }
                ),
                color: C_LIMIT,
            }]
        })
        .unwrap_or_default();
    let (markers, marker_legend) = markers(report, false);
    let mut lines = vec![LineSeries {
        name: "CPU".into(),
        color: C_CPU,
        width: 1.6,
        dash: None,
        right_axis: false,
        fill: true,
        step: false,
        segments: svg::segments(
            samples.iter().map(|s| (s.t_s, s.cpu_percent)),
            Some(gap),
            MAX_POINTS,
        ),
    }];
    // The admission limit beside the CPU it is meant to keep busy (a protected server
    // reports it; with --max-in-flight adaptive it moves).
    let most_admitted = samples.iter().filter_map(|s| s.admission_limit).max();
    let right = most_admitted.map(|most| {
        lines.push(LineSeries {
            name: "admission limit (orders, right axis)".into(),
            color: C_ADMISSION,
            width: 1.4,
            dash: None,
            right_axis: true,
            fill: false,
            step: true,
            segments: svg::segments(
                samples
                    .iter()
                    .map(|s| (s.t_s, s.admission_limit.map(|n| n as f64))),
                Some(gap),
                MAX_POINTS,
            ),
        });
        Axis::linear("admission limit", (most as f64 * 1.2).max(2.0), Unit::Count)
    });
    TimeChart {
        title: if right.is_some() {
            "Server CPU (% of one CPU) and admission limit".into()
        } else {
            "Server CPU (% of one CPU)".into()
        },
        height: 240.0,
        x: x.clone(),
        left: Axis::linear("CPU", max.max(10.0) * 1.1, Unit::Percent),
        right,
        area: None,
        lines,
        rules,
        markers,
        marker_legend,
        hover: server_hover(samples),
        note: samples.is_empty().then(|| no_server_note(report)),
    }
}

/// The reconciliation classes: name, colour, count, meaning. The first four partition the
/// item codes sent; the others are counted besides them.
fn reconciliation_classes(
    report: &Report,
) -> Vec<(&'static str, &'static str, Option<u64>, &'static str)> {
    let r = &report.reconciliation;
    vec![
        (
            "acknowledged & persisted",
            C_ACK,
            r.acknowledged_persisted,
            "acknowledged and in the file: the good case",
        ),
        (
            "lost",
            C_LOST,
            r.lost,
            "acknowledged but not in the file: an order promised and lost",
        ),
        (
            "ghost",
            C_GHOST,
            r.ghost,
            "failed or timed out at the client but in the file: a retry would order twice",
        ),
        (
            "failed & absent",
            C_ABSENT,
            r.failed_absent,
            "failed and not in the file: consistent, the client knows to retry",
        ),
        (
            "duplicates",
            C_DUP,
            r.duplicates,
            "sent once, in the file more than once",
        ),
        (
            "unexpected",
            C_UNEXPECTED,
            r.unexpected,
            "in the file but never sent by this run",
        ),
        (
            "malformed lines",
            C_MALFORMED,
            r.malformed_lines,
            "lines of the file that are not well-formed orders",
        ),
    ]
}

const PARTITION: usize = 4;

fn reconciliation_bar(report: &Report) -> StackedBar {
    let r = &report.reconciliation;
    let title = if r.available {
        "Reconciliation: what happened to every order".to_string()
    } else {
        format!(
            "Reconciliation unavailable: {}",
            r.unavailable_reason
                .as_deref()
                .unwrap_or("the orders file could not be read")
        )
    };
    let sent = report.requests.total;
    StackedBar {
        title,
        segments: reconciliation_classes(report)
            .into_iter()
            .filter(|_| r.available)
            .map(|(name, color, v, meaning)| {
                let v = v.unwrap_or(0);
                BarSegment {
                    name: name.to_string(),
                    color,
                    value: v,
                    tooltip: format!("{name}: {} ({} of sent) — {meaning}", int(v), pct(v, sent)),
                }
            })
            .collect(),
        gap_before: Some(PARTITION),
    }
}

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

pub(crate) const CSS: &str = r#"
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f5f6f8;--ok:#2e7d32;--bad:#c0392b;--warn:#b45309}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","DejaVu Sans",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:28px 28px 48px}
header h1{font-size:26px;line-height:1.2;margin:0 0 6px;letter-spacing:-.01em}
header .sub{color:var(--muted);margin:0}
h2{font-size:17px;margin:0 0 12px}
h3{font-size:14px;margin:18px 0 8px;color:#374151}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:16px 0;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.grid2{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;margin:16px 0}
.grid2>.card{margin:0}
.col>.card{margin:0 0 16px}.col>.card:last-child{margin:0}
@media (max-width:920px){.grid2{grid-template-columns:minmax(0,1fr)}}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(112px,1fr));gap:12px;margin:18px 0}
.kpi{background:#fff;border:1px solid var(--line);border-top:4px solid #94a3b8;border-radius:10px;padding:10px 12px;min-width:0}
.kpi .l{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;white-space:nowrap}
.kpi .v{font-size:20px;font-weight:650;font-variant-numeric:tabular-nums;white-space:nowrap}
.kpi .s{color:var(--muted);font-size:12px;line-height:1.3}
.kpi.good{border-top-color:var(--ok)}
.kpi.bad{border-top-color:var(--bad)}.kpi.bad .v{color:var(--bad)}
.kpi.warn{border-top-color:#f59e0b}
table{border-collapse:collapse;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{font-size:11.5px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.04em;border-bottom:2px solid var(--line)}
tbody th{font-weight:500}
.counters th{white-space:nowrap}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.sub>th{padding-left:28px;color:#4b5563;font-weight:400}
tr.sep>*{border-top:2px solid var(--line)}
tr.knee>*{background:#fef3c7;font-weight:600}
tr.bad>*{color:var(--bad)}
.scroll{overflow-x:auto}
.badge{display:inline-block;padding:0 8px;border-radius:999px;font-size:12px;font-weight:600;line-height:20px;white-space:nowrap}
.badge.pass{background:#e6f4ea;color:#1e6b2c}.badge.fail{background:#fde8e6;color:#a1271b}
.badge.knee{background:#fcd34d;color:#713f12}.badge.muted{background:#f3f4f6;color:#4b5563}
.banner{border:1px solid;border-radius:10px;padding:12px 16px;margin:12px 0}
.banner b{display:block;margin-bottom:2px}
.banner.warn{background:#fffbeb;border-color:#fcd34d;color:#78350f}
.banner.bad{background:#fef2f2;border-color:#fca5a5;color:#7f1d1d}
.banner.ok{background:#f0fdf4;border-color:#86efac;color:#14532d}
.note{background:#f8fafc;border-left:4px solid #94a3b8;border-radius:6px;padding:10px 14px;margin:6px 0 14px;color:#374151}
.unavailable{border:2px dashed #cbd5e1;border-radius:10px;padding:18px 20px;background:#f8fafc;color:#334155}
.unavailable b{color:#0f172a}
dl.kv{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:5px 18px;margin:0}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;overflow-wrap:anywhere}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;background:#f3f4f6;border-radius:4px;padding:1px 5px;overflow-wrap:anywhere}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:7px;vertical-align:-1px}
.muted{color:var(--muted)}
svg.chart{display:block;width:100%;height:auto;margin:4px 0 18px}
.hv rect:hover{fill-opacity:.06}
.charthint{color:var(--muted);font-size:12.5px;margin:-4px 0 10px}
footer{color:var(--muted);font-size:12px;margin-top:28px;text-align:center}
@media print{body{background:#fff}.card,.kpi{box-shadow:none;break-inside:avoid}}
"#;

/// Renders the whole report as one self-contained HTML page.
pub fn render(report: &Report) -> String {
    let mut o = String::with_capacity(256 * 1024);
    let run = &report.run;
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Load test report · {} · {}</title><style>{CSS}</style></head><body><main>",
        escape(&run.profile),
        escape(&report.started_at)
    );
    header(&mut o, report);
    banners(&mut o, report);
    kpis(&mut o, report);

    o.push_str("<div class=\"grid2\"><div class=\"col\">");
    run_card(&mut o, report);
    generator_card(&mut o, report);
    thresholds_card(&mut o, report);
    o.push_str("</div><div class=\"col\">");
    summary_card(&mut o, report);
    o.push_str("</div></div>");

    reconciliation_card(&mut o, report);
    super::queue::card(&mut o, report);
    charts_card(&mut o, report);
    steps_card(&mut o, report);
    crashes_card(&mut o, report);

    let _ = writeln!(
        o,
        "<footer>{} · report schema {} · self-contained page: no scripts, no network</footer></main></body></html>",
        escape(&report.tool),
        report.schema_version
    );
    o
}

fn header(o: &mut String, report: &Report) {
    let run = &report.run;
    let model = match run.model.as_str() {
        "closed" => "closed model (virtual users)",
        "open" => "open model (arrival rate)",
        other => other,
    };
    let _ = write!(
        o,
        "<header><h1>Load test report</h1><p class=\"sub\"><b>{}</b> profile · {} · {} · started {} · {} elapsed</p></header>",
        escape(&run.profile),
        escape(model),
        escape(&run.shape),
        escape(&report.started_at),
        escape(&duration(run.elapsed_s))
    );
}

fn banners(o: &mut String, report: &Report) {
    let failed: Vec<&super::ThresholdResult> =
        report.thresholds.iter().filter(|t| !t.passed).collect();
    if !failed.is_empty() {
        let list: Vec<String> = failed
            .iter()
            .map(|t| {
                format!(
                    "<code>{}</code> (value {})",
                    escape(&t.expression),
                    threshold_value(t.value)
                )
            })
            .collect();
        let _ = write!(
            o,
            "<div class=\"banner bad\"><b>{} of {} thresholds failed</b>{}</div>",
            failed.len(),
            report.thresholds.len(),
            list.join(" · ")
        );
    } else if !report.thresholds.is_empty() {
        let _ = write!(
            o,
            "<div class=\"banner ok\"><b>All {} thresholds passed</b></div>",
            report.thresholds.len()
        );
    }
    if report.generator.saturated {
        let _ = write!(
            o,
            "<div class=\"banner warn\"><b>Generator saturated</b>The load generator fell behind its schedule \
             (send lag p99 {}, max {}): less load was offered than intended, and these results understate it.</div>",
            opt_ms(report.generator.lag_p99_ms),
            opt_ms(report.generator.lag_max_ms)
        );
    }
    let r = &report.reconciliation;
    if r.available
        && (r.lost.unwrap_or(0) > 0 || r.ghost.unwrap_or(0) > 0 || r.duplicates.unwrap_or(0) > 0)
    {
        let _ = write!(
            o,
            "<div class=\"banner bad\"><b>Orders are not what the client was told</b>{} lost (acknowledged, not persisted) · \
             {} ghost (failed at the client, yet persisted) · {} duplicated</div>",
            opt_int(r.lost),
            opt_int(r.ghost),
            opt_int(r.duplicates)
        );
    }
    if report.server.crashes > 0 {
        let oom = report
            .server
            .crash_events
            .iter()
            .filter(|e| e.oom_killed)
            .count();
        let _ = write!(
            o,
            "<div class=\"banner bad\"><b>The server crashed {} time{}</b>{} by the OOM killer · {} restart{}</div>",
            int(report.server.crashes),
            if report.server.crashes == 1 { "" } else { "s" },
            int(oom as u64),
            int(report.server.restarts),
            if report.server.restarts == 1 { "" } else { "s" }
        );
    }
}

fn kpis(o: &mut String, report: &Report) {
    let q = &report.requests;
    let r = &report.reconciliation;
    let failed = q.failed();
    let tile = |o: &mut String, class: &str, label: &str, value: String, sub: String| {
        let _ = write!(
            o,
            "<div class=\"kpi {class}\"><div class=\"l\">{}</div><div class=\"v\">{}</div><div class=\"s\">{}</div></div>",
            escape(label),
            escape(&value),
            escape(&sub)
        );
    };
    o.push_str("<section class=\"kpis\">");
    tile(
        o,
        "",
        "Sent",
        int(q.total),
        format!("{} tests/s", rate(report.throughput.requests_per_s)),
    );
    tile(
        o,
        if q.acknowledged > 0 { "good" } else { "" },
        "Acknowledged",
        int(q.acknowledged),
        format!(
            "{} · goodput {}/s",
            pct(q.acknowledged, q.total),
            rate(report.throughput.acknowledged_per_s)
        ),
    );
    tile(
        o,
        if failed > 0 { "bad" } else { "good" },
        "Failed",
        int(failed),
        pct(failed, q.total),
    );
    tile(
        o,
        "",
        "p99 test time",
        opt_ms(report.latency_ms.p99),
        format!("max {}", opt_ms(report.latency_ms.max)),
    );
    if r.available {
        let lost = r.lost.unwrap_or(0);
        let ghost = r.ghost.unwrap_or(0);
        tile(
            o,
            if lost > 0 { "bad" } else { "good" },
            "Lost",
            opt_int(r.lost),
            "acknowledged, not in the file".into(),
        );
        tile(
            o,
            if ghost > 0 { "bad" } else { "good" },
            "Ghost",
            opt_int(r.ghost),
            "failed, yet in the file".into(),
        );
    } else {
        tile(
            o,
            "warn",
            "Reconciliation",
            "n/a".into(),
            "orders file not read".into(),
        );
    }
    let s = &report.server;
    tile(
        o,
        if s.crashes > 0 {
            "bad"
        } else if s.spawned {
            "good"
        } else {
            ""
        },
        "Crashes",
        if s.spawned || s.crashes > 0 {
            int(s.crashes)
        } else {
            DASH.into()
        },
        if s.spawned {
            plural(s.restarts, "restart")
        } else {
            "server not spawned".into()
        },
    );
    tile(
        o,
        "",
        "Peak memory",
        opt_bytes(s.peak_memory_bytes),
        s.memory_limit_bytes
            .map(|l| format!("limit {}", fmt_bytes(l as f64)))
            .unwrap_or_else(|| "no limit".into()),
    );
    o.push_str("</section>");
}

fn kv(o: &mut String, key: &str, value_html: &str) {
    let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", escape(key), value_html);
}

/// A command line for display: each argument escaped, quoted when it needs it.
fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_card(o: &mut String, report: &Report) {
    let run = &report.run;
    let s = &report.server;
    o.push_str("<section class=\"card\"><h2>Run</h2><dl class=\"kv\">");
    kv(o, "Profile", &format!("<b>{}</b>", escape(&run.profile)));
    kv(o, "Model", &escape(&run.model));
    kv(o, "Load shape", &escape(&run.shape));
    kv(
        o,
        "Target URL",
        &format!("<code>{}</code>", escape(&run.url)),
    );
    kv(o, "Client timeout", &escape(&fmt_ms(run.timeout_ms as f64)));
    kv(
        o,
        "Connections",
        if run.new_connection_per_request {
            "a new connection per request"
        } else {
            "reused (keep-alive)"
        },
    );
    let mut caps = Vec::new();
    if let Some(i) = run.iterations_cap {
        caps.push(format!("{} iterations", int(i)));
    }
    if let Some(d) = fin(run.duration_cap_s) {
        caps.push(duration(d));
    }
    kv(
        o,
        "Caps",
        &escape(&if caps.is_empty() {
            "none".to_string()
        } else {
            caps.join(" · ")
        }),
    );
    kv(o, "Started", &escape(&report.started_at));
    kv(o, "Elapsed", &escape(&duration(run.elapsed_s)));
    match &run.server_command {
        Some(cmd) => kv(
            o,
            "Server command",
            &format!("<code>{}</code>", escape(&command_line(cmd))),
        ),
        None => kv(
            o,
            "Server",
            "<span class=\"muted\">already running (not started by the lab)</span>",
        ),
    }
    if s.spawned {
        let mut conf = escape(&s.confinement);
        let mut limits = Vec::new();
        if let Some(c) = fin(s.cpu_limit) {
            limits.push(format!("{} CPU", trim(c, 2)));
        }
        if let Some(m) = s.memory_limit_bytes {
            limits.push(fmt_bytes(m as f64));
        }
        if !limits.is_empty() {
            let _ = write!(conf, " · {}", escape(&limits.join(", ")));
        }
        kv(o, "Confinement", &conf);
    }
    if let Some(f) = &run.orders_file {
        kv(o, "Orders file", &format!("<code>{}</code>", escape(f)));
    }
    o.push_str("</dl></section>");
}

fn row(o: &mut String, class: &str, label: &str, value: &str, extra: &str) {
    let _ = write!(
        o,
        "<tr class=\"{class}\"><th>{}</th><td class=\"n\">{}</td><td class=\"n muted\">{}</td></tr>",
        escape(label),
        escape(value),
        escape(extra)
    );
}

fn summary_card(o: &mut String, report: &Report) {
    let q = &report.requests;
    let l = &report.latency_ms;
    let s = &report.server;
    o.push_str("<section class=\"card\"><h2>Counters</h2><table class=\"counters\"><tbody>");
    row(o, "", "Total tests", &int(q.total), "");
    row(
        o,
        "",
        "Passed tests (acknowledged)",
        &int(q.acknowledged),
        &pct(q.acknowledged, q.total),
    );
    row(
        o,
        if q.failed() > 0 { "bad" } else { "" },
        "Failed tests",
        &int(q.failed()),
        &pct(q.failed(), q.total),
    );
    let by_status: Vec<String> = q
        .by_status
        .iter()
        .map(|(k, v)| format!("{k} × {}", int(*v)))
        .collect();
    row(
        o,
        "sub",
        "HTTP error status",
        &int(q.failed_status),
        &by_status.join(", "),
    );
    row(
        o,
        "sub",
        &format!("timed out (> {})", fmt_ms(report.run.timeout_ms as f64)),
        &int(q.timed_out),
        &pct(q.timed_out, q.total),
    );
    row(
        o,
        "sub",
        "connection refused",
        &int(q.connect_errors),
        &pct(q.connect_errors, q.total),
    );
    row(
        o,
        "sub",
        "connection reset / other",
        &int(q.transport_errors),
        &pct(q.transport_errors, q.total),
    );
    row(
        o,
        "sep",
        "Avg test time",
        &opt_ms(l.avg),
        &format!("min {}", opt_ms(l.min)),
    );
    row(
        o,
        "",
        "Test time p50 / p90",
        &format!("{} / {}", opt_ms(l.p50), opt_ms(l.p90)),
        "",
    );
    row(
        o,
        "",
        "Test time p99 / max",
        &format!("{} / {}", opt_ms(l.p99), opt_ms(l.max)),
        "",
    );
    row(
        o,
        "",
        "Acknowledged p50 / p99",
        &format!(
            "{} / {}",
            opt_ms(l.acknowledged_p50),
            opt_ms(l.acknowledged_p99)
        ),
        "",
    );
    row(
        o,
        "sep",
        "Tests/s",
        &rate(report.throughput.requests_per_s),
        "completed, any outcome",
    );
    row(
        o,
        "",
        "Goodput",
        &format!("{}/s", rate(report.throughput.acknowledged_per_s)),
        "acknowledged",
    );
    if s.spawned {
        let mem_extra = match (s.peak_memory_bytes, s.memory_limit_bytes) {
            (Some(p), Some(l)) if l > 0 => {
                format!("of {} limit ({})", fmt_bytes(l as f64), pct(p, l))
            }
            (_, None) => "no limit".into(),
            _ => String::new(),
        };
        row(
            o,
            "sep",
            "Server peak memory",
            &opt_bytes(s.peak_memory_bytes),
            &mem_extra,
        );
        let cpu_extra = fin(s.cpu_limit)
            .map(|c| format!("limit {} CPU", trim(c, 2)))
            .unwrap_or_else(|| "no limit".into());
        row(
            o,
            "",
            "Server peak CPU",
            &fin(s.peak_cpu_percent)
                .map(|c| format!("{} %", trim(c, 0)))
                .unwrap_or_else(|| DASH.into()),
            &cpu_extra,
        );
        row(
            o,
            "",
            "Server CPU time",
            &fin(s.cpu_seconds)
                .map(|c| format!("{} s", trim(c, 1)))
                .unwrap_or_else(|| DASH.into()),
            &format!("peak threads {}", opt_int(s.peak_threads)),
        );
        row(
            o,
            if s.crashes > 0 { "bad" } else { "" },
            "Server crashes",
            &int(s.crashes),
            &plural(s.restarts, "restart"),
        );
    } else {
        let _ = write!(
            o,
            "<tr class=\"sep\"><th>Server</th><td colspan=\"2\" class=\"muted\">not started by the lab: memory, CPU and crashes were not observed</td></tr>"
        );
    }
    o.push_str("</tbody></table></section>");
}

fn reconciliation_card(o: &mut String, report: &Report) {
    let r = &report.reconciliation;
    o.push_str("<section class=\"card\"><h2>Reconciliation: what happened to every order</h2>");
    if !r.available {
        let _ = write!(
            o,
            "<div class=\"unavailable\"><b>Reconciliation unavailable.</b> {}<br><span class=\"muted\">Without the orders file \
             nobody can tell lost or ghost orders from the client's view alone: run with <code>--spawn-server</code> or give a \
             readable <code>--orders-file</code>.</span></div></section>",
            escape(
                r.unavailable_reason
                    .as_deref()
                    .unwrap_or("the orders file could not be read")
            )
        );
        return;
    }
    o.push_str(&reconciliation_bar(report).to_svg(false));
    let sent = report.requests.total;
    o.push_str(
        "<table><thead><tr><th>Class</th><th class=\"n\">Orders</th><th class=\"n\">of sent</th><th>Meaning</th></tr></thead><tbody>",
    );
    for (i, (name, color, v, meaning)) in reconciliation_classes(report).into_iter().enumerate() {
        let bad = i != 0 && i != 3 && v.unwrap_or(0) > 0;
        let _ = write!(
            o,
            "<tr class=\"{}{}\"><th><span class=\"sw\" style=\"background:{color}\"></span>{}</th><td class=\"n\">{}</td><td class=\"n muted\">{}</td><td>{}</td></tr>",
            if i == PARTITION { "sep" } else { "" },
            if bad { " bad" } else { "" },
            escape(name),
            opt_int(v),
            v.map(|v| pct(v, sent)).unwrap_or_default(),
            escape(meaning)
        );
    }
    o.push_str("</tbody></table><p class=\"muted\" style=\"margin:10px 0 0\">The first four classes partition the item codes sent; duplicates, unexpected orders and malformed lines are counted besides them.");
    if let Some(f) = &r.orders_file {
        let _ = write!(o, " Orders file: <code>{}</code>.", escape(f));
    }
    if let Some(s) = fin(r.settle_s) {
        let _ = write!(
            o,
            " Read after letting the server settle for {}.",
            escape(&duration(s))
        );
    }
    if let Some(q) = r.still_queued {
        let _ = write!(
            o,
            " Messaging: <b>{}</b> acknowledged order(s) not written are counted as <b>still queued</b>, not lost —              at most as many as messages were left ready in the queue when the drain deadline passed              (acknowledged = persisted + lost + still queued).",
            int(q)
        );
    }
    o.push_str("</p></section>");
}

fn charts_card(o: &mut String, report: &Report) {
    let x = time_axis(report);
    o.push_str("<section class=\"card\"><h2>Over time</h2>");
    let n = report.timeline.seconds.len();
    let _ = write!(
        o,
        "<p class=\"charthint\">One x axis for all charts: seconds since the load started. Hover a chart for the values at that time{}.</p>",
        if n > svg::MAX_POINTS {
            "; long series are downsampled for drawing (lines with LTTB, which keeps peaks; stacked rates as averages)"
        } else {
            ""
        }
    );
    o.push_str(&throughput_chart(report, &x).to_svg(false));
    o.push_str(&latency_chart(report, &x).to_svg(false));
    if !report.latency_ms.note.is_empty() {
        let _ = write!(
            o,
            "<p class=\"note\">{}</p>",
            escape(&report.latency_ms.note)
        );
    }
    if report.timeline.server.is_empty() {
        let _ = write!(
            o,
            "<div class=\"unavailable\"><b>No server charts.</b> {}.</div>",
            escape(&no_server_note(report))
        );
    } else {
        o.push_str(&memory_chart(report, &x).to_svg(false));
        o.push_str(&cpu_chart(report, &x).to_svg(false));
    }
    if let Some(queue) = super::queue::chart(report, &x) {
        o.push_str(&queue.to_svg(false));
    }
    o.push_str("</section>");
}

fn steps_card(o: &mut String, report: &Report) {
    if report.steps.is_empty() {
        return;
    }
    o.push_str("<section class=\"card\"><h2>Steps</h2>");
    match report.knee_step.and_then(|k| report.steps.get(k)) {
        Some(k) => {
            let _ = write!(
                o,
                "<p class=\"muted\" style=\"margin-top:-4px\">The knee — the first step where p99 broke or throughput stopped growing — is step {} at {} users.</p>",
                k.index + 1,
                int(k.users)
            );
        }
        None => o.push_str("<p class=\"muted\" style=\"margin-top:-4px\">No knee: p99 held and throughput kept growing at every step.</p>"),
    }
    o.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Step</th><th class=\"n\">Users</th><th class=\"n\">From – to</th>\
         <th class=\"n\">Sent</th><th class=\"n\">Acknowledged</th><th class=\"n\">Failed</th><th class=\"n\">Timed out</th>\
         <th class=\"n\">Tests/s</th><th class=\"n\">Goodput/s</th><th class=\"n\">p50</th><th class=\"n\">p99</th><th></th></tr></thead><tbody>",
    );
    const MAX_ROWS: usize = 1000;
    for (i, s) in report.steps.iter().enumerate().take(MAX_ROWS) {
        let knee = s.knee || report.knee_step == Some(i);
        let _ = write!(
            o,
            "<tr class=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{} – {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            if knee { "knee" } else { "" },
            s.index + 1,
            int(s.users),
            escape(&at(s.start_s)),
            escape(&at(s.end_s)),
            int(s.sent),
            int(s.acknowledged),
            int(s.failed),
            int(s.timed_out),
            rate(s.requests_per_s),
            rate(s.acknowledged_per_s),
            opt_ms(s.p50_ms),
            opt_ms(s.p99_ms),
            if knee {
                "<span class=\"badge knee\">knee</span>"
            } else {
                ""
            }
        );
    }
    o.push_str("</tbody></table></div>");
    rows_left_out(o, report.steps.len(), MAX_ROWS, "more steps");
    o.push_str("</section>");
}

/// "… and N more (see report.json)." under a table cut at `shown` of `total` rows.
fn rows_left_out(o: &mut String, total: usize, shown: usize, what: &str) {
    if total > shown {
        let _ = write!(
            o,
            "<p class=\"muted\">… and {} {what} (see report.json).</p>",
            int((total - shown) as u64)
        );
    }
}

fn generator_card(o: &mut String, report: &Report) {
    let g = &report.generator;
    o.push_str("<section class=\"card\"><h2>Generator health</h2>");
    let _ = write!(
        o,
        "<p>{}</p>",
        if g.saturated {
            "<span class=\"badge fail\">saturated</span> the generator fell behind its schedule"
        } else {
            "<span class=\"badge pass\">kept its schedule</span>"
        }
    );
    o.push_str("<table><tbody>");
    row(
        o,
        "",
        "Send lag p50",
        &opt_ms(g.lag_p50_ms),
        "actual − intended send",
    );
    row(o, "", "Send lag p99", &opt_ms(g.lag_p99_ms), "");
    row(o, "", "Send lag max", &opt_ms(g.lag_max_ms), "");
    o.push_str("</tbody></table></section>");
}

fn threshold_value(v: Option<f64>) -> String {
    fin(v).map(|v| trim(v, 2)).unwrap_or_else(|| DASH.into())
}

fn thresholds_card(o: &mut String, report: &Report) {
    o.push_str("<section class=\"card\"><h2>Thresholds</h2>");
    if report.thresholds.is_empty() {
        o.push_str(
            "<p class=\"muted\">No thresholds were set (<code>--fail-on</code>).</p></section>",
        );
        return;
    }
    o.push_str("<table><thead><tr><th>Threshold</th><th class=\"n\">Value</th><th>Result</th></tr></thead><tbody>");
    for t in &report.thresholds {
        let _ = write!(
            o,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&t.expression),
            threshold_value(t.value),
            if t.passed {
                "<span class=\"badge pass\">pass</span>"
            } else {
                "<span class=\"badge fail\">fail</span>"
            }
        );
    }
    o.push_str("</tbody></table></section>");
}

fn crashes_card(o: &mut String, report: &Report) {
    let s = &report.server;
    if !s.spawned && s.crash_events.is_empty() {
        return;
    }
    o.push_str("<section class=\"card\"><h2>Crash events</h2>");
    if s.crash_events.is_empty() {
        o.push_str("<p class=\"muted\">The server did not crash.</p></section>");
        return;
    }
    o.push_str("<table><thead><tr><th class=\"n\">#</th><th class=\"n\">At</th><th>Cause</th><th>OOM kill</th></tr></thead><tbody>");
    const MAX_ROWS: usize = 200;
    for (i, e) in s.crash_events.iter().enumerate().take(MAX_ROWS) {
        let _ = write!(
            o,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            escape(&at(e.t_s)),
            escape(&e.cause),
            if e.oom_killed {
                "<span class=\"badge fail\">yes</span>"
            } else {
                "<span class=\"badge muted\">no</span>"
            }
        );
    }
    o.push_str("</tbody></table>");
    rows_left_out(o, s.crash_events.len(), MAX_ROWS, "more");
    o.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{
        CrashEvent, GeneratorHealth, LatencySummary, Reconciliation, RequestCounts, RunInfo,
        SCHEMA_VERSION, ServerReport, Throughput, Timeline,
    };

    fn empty_report() -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            tool: "loadtest 0.1.0".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            run: RunInfo {
                profile: "rate".into(),
                model: "open".into(),
                shape: "10/s for 5s".into(),
                url: "http://127.0.0.1:1/api".into(),
                timeout_ms: 30_000,
                new_connection_per_request: false,
                iterations_cap: None,
                duration_cap_s: Some(5.0),
                elapsed_s: 0.0,
                transport: "http".into(),
                server_command: None,
                orders_file: None,
            },
            requests: RequestCounts::default(),
            latency_ms: LatencySummary::default(),
            throughput: Throughput::default(),
            generator: GeneratorHealth::default(),
            steps: Vec::new(),
            knee_step: None,
            reconciliation: Reconciliation {
                available: false,
                unavailable_reason: Some("remote server: no orders file".into()),
                ..Default::default()
            },
            server: ServerReport {
                confinement: "none".into(),
                ..Default::default()
            },
            timeline: Timeline::default(),
            thresholds: Vec::new(),
            retries: Default::default(),
            messaging: None,
            broker: None,
        }
    }

    #[test]
    fn report_text_is_escaped_everywhere() {
        let mut r = empty_report();
        r.run.server_command = Some(vec![
            "purchasing-api".into(),
            "<script>alert(1)</script>".into(),
        ]);
        r.run.url = "http://x/?a=1&b=<i>".into();
        r.server.spawned = true;
        r.server.crashes = 1;
        r.server.crash_events = vec![CrashEvent {
            t_s: 1.0,
            cause: "<b>boom</b>".into(),
            oom_killed: false,
        }];
        r.reconciliation.unavailable_reason = Some("<img src=x>".into());
        let html = render(&r);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>boom"));
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a=1&amp;b=&lt;i&gt;"));
        for chart in Chart::ALL {
            assert!(!render_chart_svg(&r, chart).contains("<b>boom"));
        }
    }

    #[test]
    fn empty_report_renders() {
        let r = empty_report();
        let html = render(&r);
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("Reconciliation unavailable"));
        assert!(html.contains("remote server: no orders file"));
        assert!(html.contains("not started by the lab"));
        assert!(!html.contains("NaN"));
        for chart in Chart::ALL {
            let svg = render_chart_svg(&r, chart);
            assert!(
                svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
                "{chart:?}"
            );
            assert!(svg.ends_with("</svg>"));
            assert!(!svg.contains("NaN"));
        }
    }

    #[test]
    fn nan_and_missing_values_are_skipped() {
        let mut r = empty_report();
        r.run.elapsed_s = f64::NAN;
        r.latency_ms.p99 = Some(f64::NAN);
        r.latency_ms.avg = Some(f64::INFINITY);
        r.throughput.requests_per_s = f64::NAN;
        r.server.spawned = true;
        r.server.cpu_limit = Some(f64::NAN);
        r.timeline.seconds = (0..10)
            .map(|t| SecondRow {
                t_s: t,
                users: None,
                offered_rate: if t == 3 { Some(f64::NAN) } else { Some(10.0) },
                acknowledged: 10,
                p50_ms: if t % 2 == 0 { None } else { Some(f64::NAN) },
                p90_ms: Some(if t == 5 { f64::INFINITY } else { 12.0 }),
                p99_ms: None,
                ..Default::default()
            })
            .collect();
        r.timeline.server = (0..40)
            .map(|i| ServerSample {
                t_s: if i == 7 { f64::NAN } else { i as f64 * 0.25 },
                memory_bytes: (i % 3 != 0).then_some(100 << 20),
                rss_bytes: None,
                cpu_percent: Some(if i % 5 == 0 { f64::NAN } else { 50.0 }),
                threads: Some(4),
                admission_limit: None,
            })
            .collect();
        r.server.crash_events = vec![CrashEvent {
            t_s: f64::NAN,
            cause: "exited with status 1".into(),
            oom_killed: false,
        }];
        let html = render(&r);
        if let Some(i) = html.find("NaN") {
            let ctx: String = html[..i]
                .chars()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("NaN printed after: {ctx}");
        }
        assert!(!html.contains("inf"), "infinity printed");
        for chart in Chart::ALL {
            let svg = render_chart_svg(&r, chart);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{chart:?}");
        }
    }

    #[test]
    fn step_runs_mark_the_knee_and_crashes() {
        let mut r = empty_report();
        r.run.profile = "blog".into();
        r.run.model = "closed".into();
        r.steps = (0..4)
            .map(|i| crate::report::StepRow {
                index: i,
                users: 20 * (i as u64 + 1),
                start_s: i as f64 * 5.0,
                end_s: (i + 1) as f64 * 5.0,
                sent: 100,
                acknowledged: 90,
                failed: 10,
                timed_out: 2,
                requests_per_s: 20.0,
                acknowledged_per_s: 18.0,
                p50_ms: Some(10.0),
                p99_ms: Some(100.0),
                knee: i == 2,
            })
            .collect();
        r.knee_step = Some(2);
        r.server.spawned = true;
        r.server.crashes = 1;
        r.server.crash_events = vec![CrashEvent {
            t_s: 7.0,
            cause: "OOM-killed".into(),
            oom_killed: true,
        }];
        r.timeline.seconds = (0..20)
            .map(|t| SecondRow {
                t_s: t,
                users: Some(20 * (t / 5 + 1)),
                acknowledged: 5,
                ..Default::default()
            })
            .collect();
        let html = render(&r);
        assert!(html.contains("<tr class=\"knee\">"));
        assert!(html.contains("knee: 60 users"));
        assert!(html.contains("crash 1 · OOM"));
        assert_eq!(html.matches("<tr class=\"knee\">").count(), 1);
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(
            command_line(&["a".into(), "b c".into(), "it's".into()]),
            "a 'b c' 'it'\\''s'"
        );
        assert_eq!(
            dedupe_steps(vec![(0.0, 1.0), (1.0, 1.0), (2.0, 2.0), (3.0, 2.0)]),
            vec![(0.0, 1.0), (2.0, 2.0), (3.0, 2.0)]
        );
    }
}
