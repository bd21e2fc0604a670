//! The side-by-side pages of `loadtest compare`: baseline against protected on the same
//! load (a table of the figures and charts over time with both configurations on each).
//! The runs and the comparison's data are `loadtest::compare`'s; this module only renders.

use std::fmt::Write;

use super::axes::{Axis, TimeAxis, Unit};
use super::downsampling::{MAX_POINTS, segments};
use super::format::{escape, opt_count, opt_fixed};
use super::page::{page, table_html};
use super::request_charts::{dedupe_steps, users_line, with_last_second};
use super::summary::bytes;
use super::time_chart::{LineSeries, Marker, Rule, TimeChart};
use super::{Report, SecondRow};

/// The two configurations' names, as the pages and the sweep's points call them.
pub const BASELINE: &str = "baseline";
pub const PROTECTED: &str = "protected";

pub const BASELINE_COLOR: &str = "#dc2626";
pub const PROTECTED_COLOR: &str = "#16a34a";
pub const OFFERED_COLOR: &str = "#6b7280";

/// One column of the side-by-side table: each figure's name with `r`'s value, in order.
fn column(r: &Report) -> Vec<(&'static str, String)> {
    let shed = r.requests.by_status.get("503").copied().unwrap_or(0);
    let memory = match (r.server.peak_memory_bytes, r.server.memory_limit_bytes) {
        (Some(m), Some(l)) => {
            format!(
                "{} of {} ({:.0} %)",
                bytes(m),
                bytes(l),
                m as f64 * 100.0 / l as f64
            )
        }
        (Some(m), None) => bytes(m),
        _ => "–".into(),
    };
    vec![
        ("requests sent", r.requests.total.to_string()),
        ("acknowledged (201)", r.requests.acknowledged.to_string()),
        (
            "goodput, acknowledged/s",
            format!("{:.1}", r.throughput.acknowledged_per_s),
        ),
        ("rejected cleanly (503 + Retry-After)", shed.to_string()),
        (
            "other HTTP errors",
            r.requests.failed_status.saturating_sub(shed).to_string(),
        ),
        ("timed out", r.requests.timed_out.to_string()),
        ("connection refused", r.requests.connect_errors.to_string()),
        (
            "connection reset / other",
            r.requests.transport_errors.to_string(),
        ),
        ("test time p50, ms", opt_fixed(r.latency_ms.p50, 0)),
        ("test time p99, ms", opt_fixed(r.latency_ms.p99, 0)),
        (
            "acknowledged p99, ms",
            opt_fixed(r.latency_ms.acknowledged_p99, 0),
        ),
        (
            "admitted attempt p99, ms",
            opt_fixed(r.latency_ms.admitted_p99, 0),
        ),
        (
            "503 answered in p99, ms",
            opt_fixed(r.latency_ms.shed_p99, 1),
        ),
        ("server crashes", r.server.crashes.to_string()),
        ("server peak memory", memory),
        (
            "LOST (acknowledged, not in file)",
            opt_count(r.reconciliation.lost),
        ),
        (
            "GHOST (failed, yet in file)",
            opt_count(r.reconciliation.ghost),
        ),
        ("duplicates", opt_count(r.reconciliation.duplicates)),
        ("failed & absent", opt_count(r.reconciliation.failed_absent)),
        (
            "attempts per request (max)",
            format!(
                "{} ({})",
                opt_fixed(r.retries.attempts_per_request, 2),
                r.retries.attempts_max
            ),
        ),
        (
            "recovery after the spike, s",
            opt_fixed(r.throughput.recovery_s, 0),
        ),
    ]
}

/// The rows of the side-by-side table: (figure, baseline, protected).
pub fn comparison_rows(b: &Report, p: &Report) -> Vec<(&'static str, String, String)> {
    column(b)
        .into_iter()
        .zip(column(p))
        .map(|((name, b), (_, p))| (name, b, p))
        .collect()
}

/// The table for the terminal.
pub fn render_table(baseline: &Report, protected: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== side by side: {} · {}",
        baseline.run.profile, baseline.run.shape
    );
    let _ = writeln!(out, "{:<40} {:>24} {:>24}", "", BASELINE, PROTECTED);
    for (name, b, p) in comparison_rows(baseline, protected) {
        let _ = writeln!(out, "{name:<40} {b:>24} {p:>24}");
    }
    out
}

fn time_max(baseline: &Report, protected: &Report) -> f64 {
    let last = |r: &Report| {
        let secs = r.timeline.seconds.len() as f64;
        let server = r.timeline.server.last().map_or(0.0, |s| s.t_s);
        secs.max(server)
    };
    last(baseline).max(last(protected)).max(1.0)
}

fn crash_markers(r: &Report, color: &'static str) -> Vec<Marker> {
    r.server
        .crash_events
        .iter()
        .take(50)
        .map(|e| Marker {
            x: e.t_s,
            label: String::new(),
            tooltip: format!("{} crash at {:.1} s: {}", r.run.profile, e.t_s, e.cause),
            color,
            dashed: false,
        })
        .collect()
}

/// One line per configuration (`points` of its report, named "side: label"), and every
/// value on them, for the axis. `step` draws a staircase: for counts per second, each
/// across its own second (a percentile is a point at the middle of its second).
fn side_lines(
    sides: &[(&str, &Report, &'static str)],
    label: &str,
    max_gap: Option<f64>,
    step: bool,
    points: impl Fn(&Report) -> Vec<(f64, Option<f64>)>,
) -> (Vec<LineSeries>, Vec<f64>) {
    let mut values = Vec::new();
    let lines = sides
        .iter()
        .map(|&(name, report, color)| {
            let pts = points(report);
            values.extend(pts.iter().filter_map(|p| p.1));
            let mut line = LineSeries::new(
                &format!("{name}: {label}"),
                color,
                None,
                segments(pts, max_gap, MAX_POINTS),
            );
            line.step = step;
            line
        })
        .collect();
    (lines, values)
}

/// A report's per-second counts as a staircase: each from the start of its second to the
/// start of the next, the last one to the end of its second.
fn per_second_counts(report: &Report, count: fn(&SecondRow) -> u64) -> Vec<(f64, Option<f64>)> {
    let rows = &report.timeline.seconds;
    let mut points: Vec<(f64, Option<f64>)> = rows
        .iter()
        .map(|s| (s.t_s as f64, Some(count(s) as f64)))
        .collect();
    if let Some(last) = rows.last() {
        points.push((last.t_s as f64 + 1.0, Some(count(last) as f64)));
    }
    points
}

/// A report's per-second values, at the middle of each second.
fn per_second(
    report: &Report,
    value: impl Fn(&SecondRow) -> Option<f64>,
) -> Vec<(f64, Option<f64>)> {
    report
        .timeline
        .seconds
        .iter()
        .map(|s| (s.t_s as f64 + 0.5, value(s)))
        .collect()
}

pub fn chart(title: &str, x: &TimeAxis, left: Axis, lines: Vec<LineSeries>) -> TimeChart {
    TimeChart {
        title: title.to_string(),
        height: 300.0,
        x: x.clone(),
        left,
        right: None,
        area: None,
        lines,
        rules: Vec::new(),
        markers: Vec::new(),
        marker_legend: Vec::new(),
        hover: Vec::new(),
        note: None,
    }
}

/// The two configurations, the baseline first: name, report, color.
type Sides<'a> = [(&'static str, &'a Report, &'static str)];

/// Charts over time, both configurations on each: goodput (with what was offered),
/// failures, p99 latency, memory; every one with both runs' crashes marked.
pub fn comparison_charts(baseline: &Report, protected: &Report) -> Vec<TimeChart> {
    let x = TimeAxis::new(time_max(baseline, protected));
    let sides = [
        (BASELINE, baseline, BASELINE_COLOR),
        (PROTECTED, protected, PROTECTED_COLOR),
    ];
    let crash_legend = vec![("baseline crash".to_string(), BASELINE_COLOR, false)];
    let mut markers = crash_markers(baseline, BASELINE_COLOR);
    markers.extend(crash_markers(protected, PROTECTED_COLOR));
    let mut charts = vec![
        goodput_chart(&sides, &x),
        failed_chart(&sides, &x),
        latency_chart(&sides, &x),
        memory_chart(&sides, &x),
    ];
    for chart in &mut charts {
        chart.markers = markers.clone();
        chart.marker_legend = crash_legend.clone();
    }
    charts
}

/// What the protected run was offered, as a dashed staircase: its arrival rate (open
/// model) or its virtual users (closed); and the line's highest value.
fn offered_line(protected: &Report) -> (LineSeries, f64) {
    let (offered_name, offered) = if protected.run.model == "open" {
        let rates = protected
            .timeline
            .seconds
            .iter()
            .filter_map(|s| s.offered_rate.map(|v| (s.t_s as f64, v)))
            .collect();
        (
            "offered rate (arrivals/s)",
            with_last_second(dedupe_steps(rates)),
        )
    } else {
        ("virtual users", users_line(protected))
    };
    let max = offered.iter().map(|p| p.1).fold(1.0f64, f64::max);
    let mut line = LineSeries::new(
        offered_name,
        OFFERED_COLOR,
        Some("6 4"),
        segments(
            offered.into_iter().map(|(x, y)| (x, Some(y))),
            None,
            MAX_POINTS,
        ),
    );
    line.step = true;
    (line, max)
}

/// Goodput, and what was offered.
fn goodput_chart(sides: &Sides, x: &TimeAxis) -> TimeChart {
    let (offered, offered_max) = offered_line(sides[1].1);
    let mut lines = vec![offered];
    let (goodput_lines, values) = side_lines(sides, "acknowledged/s", None, true, |r| {
        per_second_counts(r, |s| s.acknowledged)
    });
    lines.extend(goodput_lines);
    let max = values.into_iter().fold(offered_max, f64::max);
    chart(
        "Goodput over time",
        x,
        Axis::linear("per second", max, Unit::Count),
        lines,
    )
}

/// Failures per second.
fn failed_chart(sides: &Sides, x: &TimeAxis) -> TimeChart {
    let (lines, values) = side_lines(sides, "failed/s (any kind)", None, true, |r| {
        per_second_counts(r, SecondRow::failed)
    });
    let max = values.into_iter().fold(1.0f64, f64::max);
    chart(
        "Failed requests per second",
        x,
        Axis::linear("per second", max, Unit::Count),
        lines,
    )
}

/// p99 latency per second, on a log scale.
fn latency_chart(sides: &Sides, x: &TimeAxis) -> TimeChart {
    let (lines, values) = side_lines(sides, "p99", Some(1.5), false, |r| {
        per_second(r, |s| s.p99_ms)
    });
    let (lo, hi) = values
        .into_iter()
        .fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = if lo == f64::MAX { 1.0 } else { lo };
    chart(
        "Latency p99 per second (log scale)",
        x,
        Axis::log_ms("latency", lo, hi),
        lines,
    )
}

/// The server's memory against the limit (the baseline's, else the protected run's).
fn memory_chart(sides: &Sides, x: &TimeAxis) -> TimeChart {
    let (lines, values) = side_lines(sides, "memory", Some(2.0), false, |r| {
        r.timeline
            .server
            .iter()
            .map(|s| (s.t_s, s.memory_bytes.map(|m| m as f64)))
            .collect()
    });
    let mut max = values.into_iter().fold(1.0f64, f64::max);
    let (baseline, protected) = (sides[0].1, sides[1].1);
    let limit = baseline
        .server
        .memory_limit_bytes
        .or(protected.server.memory_limit_bytes);
    if let Some(l) = limit {
        max = max.max(l as f64 * 1.1);
    }
    let mut memory = chart(
        "Server memory",
        x,
        Axis::linear("memory", max, Unit::Bytes),
        lines,
    );
    if let Some(l) = limit {
        memory.rules.push(Rule {
            value: l as f64,
            right_axis: false,
            label: format!("limit {}", bytes(l)),
            color: "#b91c1c",
        });
    }
    memory
}

/// `comparison.html` of `loadtest compare`.
pub fn render_html(baseline: &Report, protected: &Report) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Baseline vs protected</h1><p class=\"muted\">{} profile · {} · target confined to {}</p>",
        escape(&baseline.run.profile),
        escape(&baseline.run.shape),
        escape(&baseline.server.confinement)
    );
    let rows: Vec<Vec<String>> = comparison_rows(baseline, protected)
        .into_iter()
        .map(|(n, b, p)| vec![n.to_string(), b, p])
        .collect();
    let _ = write!(
        body,
        "<section class=\"card\"><h2>Side by side</h2>{}<p class=\"muted\">baseline: the faithful server \
         and client; protected: <code>purchasing-api --protect</code> and the client's retry policy \
         (up to {} attempts). Full reports: <code>baseline/report.html</code>, \
         <code>protected/report.html</code>.</p></section>",
        table_html(&["", BASELINE, PROTECTED], &rows),
        protected.retries.max_attempts
    );
    body.push_str("<section class=\"card\"><h2>Over time</h2>");
    for chart in comparison_charts(baseline, protected) {
        body.push_str(&chart.to_svg(false));
    }
    body.push_str("</section>");
    page("loadtest · baseline vs protected", &body)
}
