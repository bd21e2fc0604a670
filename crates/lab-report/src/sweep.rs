//! `loadtest sweep`: its document (`sweep.json`, one point per configuration and offered
//! rate) and its rendering — the table, and goodput against offered load.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::Report;
use super::axes::{Axis, TimeAxis, Unit};
use super::comparison::{
    BASELINE, BASELINE_COLOR, OFFERED_COLOR, PROTECTED, PROTECTED_COLOR, chart,
};
use super::format::{opt_count, opt_fixed};
use super::page::{page, table_html};
use super::time_chart::{LineSeries, Rule, TimeChart};

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
        opt_fixed(p.admitted_p99_ms, 0),
        opt_fixed(p.shed_p99_ms, 1),
        p.crashes.to_string(),
        format!(
            "{}/{}/{}",
            opt_count(p.lost),
            opt_count(p.ghost),
            opt_count(p.duplicates)
        ),
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
    lines.push(LineSeries::new(
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
            lines.push(LineSeries::new(
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
