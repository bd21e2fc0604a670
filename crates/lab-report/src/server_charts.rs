//! The charts of the server over time: its memory against the limit, and its CPU with
//! the admission limit beside it.

use super::axes::{Axis, TimeAxis, Unit};
use super::downsampling::{MAX_POINTS, segments};
use super::format::{fin, fmt_bytes, trim};
use super::markers::markers;
use super::svg::C_LIMIT;
use super::time_chart::{LineSeries, Rule, TimeChart};
use super::tooltips::server_hover;
use super::{Report, ServerSample};

pub const C_MEMORY: &str = "#2f6db5";
pub const C_RSS: &str = "#17a2b8";
pub const C_CPU: &str = "#e07b00";
pub const C_ADMISSION: &str = "#1f2937";

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
pub fn server_samples(report: &Report) -> Vec<&ServerSample> {
    report
        .timeline
        .server
        .iter()
        .filter(|s| s.t_s.is_finite())
        .collect()
}

pub fn no_server_note(report: &Report) -> String {
    if report.server.spawned {
        "no server samples were recorded".to_string()
    } else {
        "no server samples: the server was not started by the lab (--spawn-server), so it was not sampled".to_string()
    }
}

/// The server's memory against its limit: the cgroup's figure (or the RSS when it was
/// not confined), and the process's RSS beside it when both were sampled.
pub fn memory_chart(report: &Report, x: &TimeAxis) -> TimeChart {
    let samples = &server_samples(report);
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
        lines: memory_lines(report, samples),
        rules,
        markers,
        marker_legend,
        hover: server_hover(samples),
        note: samples.is_empty().then(|| no_server_note(report)),
    }
}

/// One of the server's sampled series as a line, broken where sampling paused.
fn sampled(
    samples: &[&ServerSample],
    name: &str,
    color: &'static str,
    value: impl Fn(&ServerSample) -> Option<f64>,
) -> LineSeries {
    let points = samples.iter().map(|s| (s.t_s, value(s)));
    let gap = sample_gap(samples);
    LineSeries::new(name, color, None, segments(points, Some(gap), MAX_POINTS))
}

/// The memory, filled; for a confined server, its process's RSS dashed beside it.
fn memory_lines(report: &Report, samples: &[&ServerSample]) -> Vec<LineSeries> {
    let confined = report.server.confinement.starts_with("cgroup");
    let name = if confined {
        "memory (cgroup)"
    } else {
        "memory (RSS)"
    };
    let mut lines = vec![LineSeries {
        fill: true,
        ..sampled(samples, name, C_MEMORY, |s| {
            s.memory_bytes.map(|b| b as f64)
        })
    }];
    if confined && samples.iter().any(|s| s.rss_bytes.is_some()) {
        lines.push(LineSeries {
            width: 1.4,
            dash: Some("5 3"),
            ..sampled(samples, "process RSS", C_RSS, |s| {
                s.rss_bytes.map(|b| b as f64)
            })
        });
    }
    lines
}

/// The server's CPU against its quota, and the admission limit beside it on the right
/// axis when the server reported one.
pub fn cpu_chart(report: &Report, x: &TimeAxis) -> TimeChart {
    let samples = &server_samples(report);
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
    let (markers, marker_legend) = markers(report, false);
    let mut lines = vec![LineSeries {
        width: 1.6,
        fill: true,
        ..sampled(samples, "CPU", C_CPU, |s| s.cpu_percent)
    }];
    let right = admission_line(samples).map(|(line, axis)| {
        lines.push(line);
        axis
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
        rules: limit.map(cpu_limit_rule).into_iter().collect(),
        markers,
        marker_legend,
        hover: server_hover(samples),
        note: samples.is_empty().then(|| no_server_note(report)),
    }
}

/// The CPU quota (`limit`, in percent of one CPU) as a rule: "limit 1 CPU", "limit 2 CPUs".
fn cpu_limit_rule(limit: f64) -> Rule {
    let cpus = limit / 100.0;
    Rule {
        value: limit,
        right_axis: false,
        label: format!(
            "limit {} CPU{}",
            trim(cpus, 2),
            if cpus == 1.0 { "" } else { "s" }
        ),
        color: C_LIMIT,
    }
}

/// The admission limit beside the CPU it is meant to keep busy (a protected server
/// reports it; with --max-in-flight adaptive it moves), as a staircase on a right axis
/// of its own; `None` when no sample has one.
fn admission_line(samples: &[&ServerSample]) -> Option<(LineSeries, Axis)> {
    let most = samples.iter().filter_map(|s| s.admission_limit).max()?;
    let line = LineSeries {
        width: 1.4,
        right_axis: true,
        step: true,
        ..sampled(
            samples,
            "admission limit (orders, right axis)",
            C_ADMISSION,
            |s| s.admission_limit.map(|n| n as f64),
        )
    };
    let axis = Axis::linear("admission limit", (most as f64 * 1.2).max(2.0), Unit::Count);
    Some((line, axis))
}
