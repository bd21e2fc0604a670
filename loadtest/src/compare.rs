//! Side by side: the same load against the faithful baseline and against the protected
//! configuration (`purchasing-api --protect` with client retries), and a sweep of offered
//! rates over both. Each writes a JSON file for machines, an HTML page with charts and a
//! table for people.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::report::format::escape;
use crate::report::html::CSS;
use crate::report::summary::bytes;
use crate::report::svg::{
    Axis, LineSeries, MAX_POINTS, Marker, Rule, TimeAxis, TimeChart, Unit, segments,
};
use crate::report::{Report, SCHEMA_VERSION, SecondRow};

pub const BASELINE: &str = "baseline";
pub const PROTECTED: &str = "protected";

const BASELINE_COLOR: &str = "#dc2626";
const PROTECTED_COLOR: &str = "#16a34a";
const OFFERED_COLOR: &str = "#6b7280";

/// `comparison.json`: both runs' full reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub baseline: Report,
    pub protected: Report,
}

impl Comparison {
    pub fn new(baseline: Report, protected: Report) -> Self {
        Comparison {
            schema_version: SCHEMA_VERSION,
            baseline,
            protected,
        }
    }
}

fn f(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

fn u(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

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
        ("test time p50, ms", f(r.latency_ms.p50, 0)),
        ("test time p99, ms", f(r.latency_ms.p99, 0)),
        ("acknowledged p99, ms", f(r.latency_ms.acknowledged_p99, 0)),
        ("admitted attempt p99, ms", f(r.latency_ms.admitted_p99, 0)),
        ("503 answered in p99, ms", f(r.latency_ms.shed_p99, 1)),
        ("server crashes", r.server.crashes.to_string()),
        ("server peak memory", memory),
        ("LOST (acknowledged, not in file)", u(r.reconciliation.lost)),
        ("GHOST (failed, yet in file)", u(r.reconciliation.ghost)),
        ("duplicates", u(r.reconciliation.duplicates)),
        ("failed & absent", u(r.reconciliation.failed_absent)),
        (
            "attempts per request (max)",
            format!(
                "{} ({})",
                f(r.retries.attempts_per_request, 2),
                r.retries.attempts_max
            ),
        ),
        ("recovery after the spike, s", f(r.throughput.recovery_s, 0)),
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
pub fn render_table(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== side by side: {} · {}",
        c.baseline.run.profile, c.baseline.run.shape
    );
    let _ = writeln!(out, "{:<40} {:>24} {:>24}", "", BASELINE, PROTECTED);
    for (name, b, p) in comparison_rows(&c.baseline, &c.protected) {
        let _ = writeln!(out, "{name:<40} {b:>24} {p:>24}");
    }
    out
}

fn time_max(c: &Comparison) -> f64 {
    let last = |r: &Report| {
        let secs = r.timeline.seconds.len() as f64;
        let server = r.timeline.server.last().map_or(0.0, |s| s.t_s);
        secs.max(server)
    };
    last(&c.baseline).max(last(&c.protected)).max(1.0)
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
/// value on them, for the axis.
fn side_lines(
    sides: &[(&str, &Report, &'static str)],
    label: &str,
    max_gap: Option<f64>,
    points: impl Fn(&Report) -> Vec<(f64, Option<f64>)>,
) -> (Vec<LineSeries>, Vec<f64>) {
    let mut values = Vec::new();
    let lines = sides
        .iter()
        .map(|&(name, report, color)| {
            let pts = points(report);
            values.extend(pts.iter().filter_map(|p| p.1));
            series(
                &format!("{name}: {label}"),
                color,
                None,
                segments(pts, max_gap, MAX_POINTS),
            )
        })
        .collect();
    (lines, values)
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

fn series(
    name: &str,
    color: &'static str,
    dash: Option<&'static str>,
    points: Vec<Vec<(f64, f64)>>,
) -> LineSeries {
    LineSeries {
        name: name.to_string(),
        color,
        width: 2.0,
        dash,
        right_axis: false,
        fill: false,
        step: false,
        segments: points,
    }
}

fn chart(title: &str, x: &TimeAxis, left: Axis, lines: Vec<LineSeries>) -> TimeChart {
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

/// Charts over time, both configurations on each.
pub fn comparison_charts(c: &Comparison) -> Vec<TimeChart> {
    let x = TimeAxis::new(time_max(c));
    let sides = [
        (BASELINE, &c.baseline, BASELINE_COLOR),
        (PROTECTED, &c.protected, PROTECTED_COLOR),
    ];
    let crash_legend = vec![("baseline crash".to_string(), BASELINE_COLOR, false)];
    let mut markers = crash_markers(&c.baseline, BASELINE_COLOR);
    markers.extend(crash_markers(&c.protected, PROTECTED_COLOR));

    // Goodput, and what was offered.
    let mut lines = Vec::new();
    let offered = per_second(&c.protected, |s| {
        s.offered_rate.or(s.users.map(|u| u as f64))
    });
    let mut max = offered.iter().filter_map(|p| p.1).fold(1.0f64, f64::max);
    let offered_name = if c.protected.run.model == "open" {
        "offered rate (arrivals/s)"
    } else {
        "virtual users"
    };
    lines.push(series(
        offered_name,
        OFFERED_COLOR,
        Some("6 4"),
        segments(offered, None, MAX_POINTS),
    ));
    let (goodput_lines, values) = side_lines(&sides, "acknowledged/s", None, |r| {
        per_second(r, |s| Some(s.acknowledged as f64))
    });
    lines.extend(goodput_lines);
    max = values.into_iter().fold(max, f64::max);
    let goodput = chart(
        "Goodput over time",
        &x,
        Axis::linear("per second", max, Unit::Count),
        lines,
    );

    // Failures per second.
    let (lines, values) = side_lines(&sides, "failed/s (any kind)", None, |r| {
        per_second(r, |s| Some(s.failed() as f64))
    });
    let max = values.into_iter().fold(1.0f64, f64::max);
    let failed = chart(
        "Failed requests per second",
        &x,
        Axis::linear("per second", max, Unit::Count),
        lines,
    );

    // p99 latency.
    let (lines, values) = side_lines(&sides, "p99", Some(1.5), |r| per_second(r, |s| s.p99_ms));
    let (lo, hi) = values
        .into_iter()
        .fold((f64::MAX, 1.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo = if lo == f64::MAX { 1.0 } else { lo };
    let latency = chart(
        "Latency p99 per second (log scale)",
        &x,
        Axis::log_ms("latency", lo, hi),
        lines,
    );

    // Memory against the limit.
    let (lines, values) = side_lines(&sides, "memory", Some(2.0), |r| {
        r.timeline
            .server
            .iter()
            .map(|s| (s.t_s, s.memory_bytes.map(|m| m as f64)))
            .collect()
    });
    let mut max = values.into_iter().fold(1.0f64, f64::max);
    let limit = c
        .baseline
        .server
        .memory_limit_bytes
        .or(c.protected.server.memory_limit_bytes);
    if let Some(l) = limit {
        max = max.max(l as f64 * 1.1);
    }
    let mut memory = chart(
        "Server memory",
        &x,
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
    let mut charts = vec![goodput, failed, latency, memory];
    for chart in &mut charts {
        chart.markers = markers.clone();
        chart.marker_legend = crash_legend.clone();
    }
    charts
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body><main>{body}\
         <footer>loadtest {} · self-contained page: no scripts, no network</footer></main></body></html>\n",
        escape(title),
        env!("CARGO_PKG_VERSION")
    )
}

pub(crate) fn table_html(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut o = String::from("<table><thead><tr>");
    for h in header {
        let _ = write!(o, "<th>{}</th>", escape(h));
    }
    o.push_str("</tr></thead><tbody>");
    for row in rows {
        o.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let align = if i == 0 {
                ""
            } else {
                " style=\"text-align:right\""
            };
            let _ = write!(o, "<td{align}>{}</td>", escape(cell));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table>");
    o
}

/// `comparison.html`.
pub fn render_html(c: &Comparison) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Baseline vs protected</h1><p class=\"muted\">{} profile · {} · target confined to {}</p>",
        escape(&c.baseline.run.profile),
        escape(&c.baseline.run.shape),
        escape(&c.baseline.server.confinement)
    );
    let rows: Vec<Vec<String>> = comparison_rows(&c.baseline, &c.protected)
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
        c.protected.retries.max_attempts
    );
    body.push_str("<section class=\"card\"><h2>Over time</h2>");
    for chart in comparison_charts(c) {
        body.push_str(&chart.to_svg(false));
    }
    body.push_str("</section>");
    page("loadtest · baseline vs protected", &body)
}

/// One point of a sweep: one configuration at one offered rate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepPoint {
    pub config: String,
    pub offered_rate: f64,
    pub sent: u64,
    pub acknowledged: u64,
    pub goodput: f64,
    pub shed: u64,
    pub timed_out: u64,
    pub connect_errors: u64,
    pub acknowledged_p99_ms: Option<f64>,
    pub admitted_p99_ms: Option<f64>,
    pub shed_p99_ms: Option<f64>,
    pub crashes: u64,
    pub peak_memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub lost: Option<u64>,
    pub ghost: Option<u64>,
    pub duplicates: Option<u64>,
    pub attempts_per_request: Option<f64>,
}

impl SweepPoint {
    pub fn from_report(config: &str, offered_rate: f64, r: &Report) -> Self {
        SweepPoint {
            config: config.to_string(),
            offered_rate,
            sent: r.requests.total,
            acknowledged: r.requests.acknowledged,
            goodput: r.throughput.acknowledged_per_s,
            shed: r.requests.by_status.get("503").copied().unwrap_or(0),
            timed_out: r.requests.timed_out,
            connect_errors: r.requests.connect_errors,
            acknowledged_p99_ms: r.latency_ms.acknowledged_p99,
            admitted_p99_ms: r.latency_ms.admitted_p99,
            shed_p99_ms: r.latency_ms.shed_p99,
            crashes: r.server.crashes,
            peak_memory_bytes: r.server.peak_memory_bytes,
            memory_limit_bytes: r.server.memory_limit_bytes,
            lost: r.reconciliation.lost,
            ghost: r.reconciliation.ghost,
            duplicates: r.reconciliation.duplicates,
            attempts_per_request: r.retries.attempts_per_request,
        }
    }
}

/// `sweep.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sweep {
    pub schema_version: u32,
    pub duration_s: f64,
    pub points: Vec<SweepPoint>,
}

impl Sweep {
    /// The highest goodput any configuration reached: the measured capacity.
    pub fn capacity(&self) -> Option<f64> {
        self.points.iter().map(|p| p.goodput).reduce(f64::max)
    }
}

fn sweep_header() -> [&'static str; 11] {
    [
        "config",
        "offered/s",
        "goodput/s",
        "acknowledged",
        "503",
        "timed out",
        "refused",
        "admitted p99 ms",
        "503 p99 ms",
        "crashes",
        "lost/ghost/dup",
    ]
}

fn sweep_row(p: &SweepPoint) -> Vec<String> {
    vec![
        p.config.clone(),
        format!("{:.1}", p.offered_rate),
        format!("{:.1}", p.goodput),
        p.acknowledged.to_string(),
        p.shed.to_string(),
        p.timed_out.to_string(),
        p.connect_errors.to_string(),
        f(p.admitted_p99_ms, 0),
        f(p.shed_p99_ms, 1),
        p.crashes.to_string(),
        format!("{}/{}/{}", u(p.lost), u(p.ghost), u(p.duplicates)),
    ]
}

pub fn render_sweep_table(s: &Sweep) -> String {
    let mut out = String::new();
    let header = sweep_header();
    let _ = writeln!(out, "\n== rate sweep, {:.0} s per point", s.duration_s);
    let line = |cells: &[String]| {
        cells
            .iter()
            .map(|c| format!("{c:>13}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = writeln!(
        out,
        "{}",
        line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>())
    );
    for p in &s.points {
        let _ = writeln!(out, "{}", line(&sweep_row(p)));
    }
    if let Some(c) = s.capacity() {
        let _ = writeln!(
            out,
            "measured capacity (highest goodput): {c:.1} acknowledged/s"
        );
    }
    out
}

/// Goodput against offered load, one line per configuration (the x axis is the offered
/// rate, not time).
pub fn sweep_chart(s: &Sweep) -> TimeChart {
    let max_x = s.points.iter().map(|p| p.offered_rate).fold(1.0, f64::max) * 1.05;
    let mut x = TimeAxis::new(max_x);
    x.title = "offered load (arrivals/s)".into();
    let max_y = s
        .points
        .iter()
        .map(|p| p.goodput.max(p.offered_rate))
        .fold(1.0, f64::max);
    let mut lines = Vec::new();
    let ideal = vec![vec![(0.0, 0.0), (max_x, max_x)]];
    lines.push(series(
        "offered = goodput (ideal)",
        OFFERED_COLOR,
        Some("6 4"),
        ideal,
    ));
    for (config, color) in [(BASELINE, BASELINE_COLOR), (PROTECTED, PROTECTED_COLOR)] {
        let mut pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.config == config)
            .map(|p| (p.offered_rate, p.goodput))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !pts.is_empty() {
            lines.push(series(
                &format!("{config}: goodput"),
                color,
                None,
                vec![pts],
            ));
        }
    }
    let mut chart = chart(
        "Goodput against offered load",
        &x,
        Axis::linear("acknowledged/s", max_y, Unit::Count),
        lines,
    );
    if let Some(c) = s.capacity() {
        chart.rules.push(Rule {
            value: c,
            right_axis: false,
            label: format!("capacity {c:.1}/s"),
            color: "#1d4ed8",
        });
    }
    chart
}

pub fn render_sweep_html(s: &Sweep) -> String {
    let rows: Vec<Vec<String>> = s.points.iter().map(sweep_row).collect();
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Rate sweep: baseline vs protected</h1><p class=\"muted\">open model, {:.0} s per point; \
         each point's full report is in its own directory</p>",
        s.duration_s
    );
    let _ = write!(
        body,
        "<section class=\"card\">{}</section>",
        sweep_chart(s).to_svg(false)
    );
    let _ = write!(
        body,
        "<section class=\"card\"><h2>Points</h2>{}</section>",
        table_html(&sweep_header(), &rows)
    );
    page("loadtest · rate sweep", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests_support::sample_report;

    #[test]
    fn the_table_puts_both_configurations_side_by_side() {
        let mut protected = sample_report();
        protected.requests.by_status.insert("503".into(), 30);
        protected.requests.failed_status += 30;
        protected.server.crashes = 0;
        let c = Comparison::new(sample_report(), protected);
        let rows = comparison_rows(&c.baseline, &c.protected);
        let crashes = rows.iter().find(|r| r.0 == "server crashes").unwrap();
        assert_eq!((crashes.1.as_str(), crashes.2.as_str()), ("1", "0"));
        let shed = rows
            .iter()
            .find(|r| r.0.starts_with("rejected cleanly"))
            .unwrap();
        assert_eq!(shed.2, "30");
        let text = render_table(&c);
        assert!(text.contains("baseline") && text.contains("protected") && text.contains("LOST"));
        let html = render_html(&c);
        assert!(html.contains("<svg") && html.contains("Goodput over time"));
        assert!(!html.contains("<script") && !html.contains("NaN"));
    }

    #[test]
    fn sweep_capacity_and_chart() {
        let r = sample_report();
        let mut points = Vec::new();
        for (rate, good) in [(2.0, 2.0), (5.0, 4.8), (10.0, 7.5)] {
            let mut p = SweepPoint::from_report(PROTECTED, rate, &r);
            p.goodput = good;
            points.push(p);
        }
        let s = Sweep {
            schema_version: SCHEMA_VERSION,
            duration_s: 20.0,
            points,
        };
        assert_eq!(s.capacity(), Some(7.5));
        let html = render_sweep_html(&s);
        assert!(html.contains("capacity 7.5/s") && html.contains("Goodput against offered load"));
        assert!(render_sweep_table(&s).contains("measured capacity (highest goodput): 7.5"));
    }
}
