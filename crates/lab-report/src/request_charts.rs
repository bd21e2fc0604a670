//! The charts of the requests over time: users (or the offered rate) with completions per
//! second stacked by outcome, and latency percentiles per second.

use super::axes::{Axis, TimeAxis, Unit};
use super::downsampling::{MAX_POINTS, segments};
use super::format::{fin, fmt_ms};
use super::markers::markers;
use super::svg::C_LIMIT;
use super::time_chart::{AreaLayer, LineSeries, Rule, StackedArea, TimeChart};
use super::tooltips::seconds_hover;
use super::{Report, SecondRow, StepRow};

pub const C_ACK: &str = "#4e9a57";
pub const C_STATUS: &str = "#f28e2b";
pub const C_TIMEOUT: &str = "#e15759";
pub const C_CONNECT: &str = "#9467bd";
pub const C_TRANSPORT: &str = "#8c6d5a";
pub const C_USERS: &str = "#1f2937";
pub const C_OFFERED: &str = "#2f6db5";
pub const C_P50: &str = "#2f6db5";
pub const C_P90: &str = "#f28e2b";
pub const C_P99: &str = "#d62728";

/// Keeps the first point of each run of equal values, and the last point: enough for a
/// staircase line, and tiny for a step profile.
pub fn dedupe_steps(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let n = points.len();
    for (i, p) in points.into_iter().enumerate() {
        if out.last().is_none_or(|l| l.1 != p.1) || i + 1 == n {
            out.push(p);
        }
    }
    out
}

/// A per-second staircase ends at the end of its last second, not at its start.
pub fn with_last_second(mut points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if let Some(&(x, y)) = points.last() {
        points.push((x + 1.0, y));
    }
    points
}

/// The virtual users as a staircase. A step profile's schedule (its steps, each from its
/// start to its end, the last one ending when the load did) when the run has one: the
/// per-second gauge is read in the middle of each second, so its last reading — taken
/// after the load stopped and the users were leaving — would draw the users dropping
/// from the start of that second, before they did. Otherwise the gauge readings.
pub fn users_line(report: &Report) -> Vec<(f64, f64)> {
    let steps: Vec<&StepRow> = report
        .steps
        .iter()
        .filter(|s| s.start_s.is_finite() && s.end_s.is_finite())
        .collect();
    if let Some(last) = steps.last() {
        let mut points: Vec<(f64, f64)> =
            steps.iter().map(|s| (s.start_s, s.users as f64)).collect();
        points.push((last.end_s.max(last.start_s), last.users as f64));
        return dedupe_steps(points);
    }
    let readings: Vec<(f64, f64)> = report
        .timeline
        .seconds
        .iter()
        .filter_map(|r| r.users.map(|u| (r.t_s as f64, u as f64)))
        .collect();
    with_last_second(dedupe_steps(readings))
}

/// Reads one count, or one latency percentile, from a per-second row.
type Count = fn(&SecondRow) -> u64;

type Percentile = fn(&SecondRow) -> Option<f64>;

/// Completed requests per second stacked by outcome, with the offered rate (open model)
/// or the virtual users (closed model, on the right axis) drawn over them.
pub fn throughput_chart(report: &Report, x: &TimeAxis) -> TimeChart {
    let rows = &report.timeline.seconds;
    // Each row is the second in which its requests ended: drawn from t to t + 1.
    let starts: Vec<f64> = rows.iter().map(|r| r.t_s as f64).collect();
    let mut left_max = rows
        .iter()
        .map(|r| (r.acknowledged + r.failed()) as f64)
        .fold(0.0, f64::max);
    let mut lines = Vec::new();
    if let Some((offered, offered_max)) = offered_line(rows) {
        left_max = left_max.max(offered_max);
        lines.push(offered);
    }
    let right = users_series(report).map(|(users, axis)| {
        lines.push(users);
        axis
    });
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
        area: Some(StackedArea {
            starts,
            width: 1.0,
            layers: outcome_layers(rows),
        }),
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

/// One stacked layer per outcome: the acknowledged always, each kind of failure when
/// it happened at all.
fn outcome_layers(rows: &[SecondRow]) -> Vec<AreaLayer> {
    let kinds: [(&str, &'static str, Count); 5] = [
        ("acknowledged", C_ACK, |r| r.acknowledged),
        ("failed: HTTP status", C_STATUS, |r| r.failed_status),
        ("failed: timed out", C_TIMEOUT, |r| r.timed_out),
        ("failed: refused", C_CONNECT, |r| r.connect_errors),
        ("failed: reset/other", C_TRANSPORT, |r| r.transport_errors),
    ];
    kinds
        .iter()
        .enumerate()
        .filter(|(i, (_, _, f))| *i == 0 || rows.iter().any(|r| f(r) > 0))
        .map(|(_, (name, color, f))| AreaLayer {
            name: name.to_string(),
            color,
            values: rows.iter().map(|r| f(r) as f64).collect(),
        })
        .collect()
}

/// The offered arrival rate as a dashed staircase, and its highest value; `None` for a
/// run that recorded none (the closed model).
fn offered_line(rows: &[SecondRow]) -> Option<(LineSeries, f64)> {
    let offered: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| fin(r.offered_rate).map(|v| (r.t_s as f64, v)))
        .collect();
    if offered.is_empty() {
        return None;
    }
    let max = offered.iter().map(|p| p.1).fold(0.0, f64::max);
    let points = with_last_second(dedupe_steps(offered))
        .into_iter()
        .map(|(x, y)| (x, Some(y)));
    let line = LineSeries {
        step: true,
        ..LineSeries::new(
            "offered rate",
            C_OFFERED,
            Some("6 4"),
            segments(points, None, MAX_POINTS),
        )
    };
    Some((line, max))
}

/// The virtual users as a staircase on a right axis of their own; `None` for a run
/// without users (the open model).
fn users_series(report: &Report) -> Option<(LineSeries, Axis)> {
    let users = users_line(report);
    if users.is_empty() {
        return None;
    }
    let max_users = users.iter().map(|p| p.1).fold(0.0, f64::max);
    let points = users.into_iter().map(|(x, y)| (x, Some(y)));
    let line = LineSeries {
        right_axis: true,
        step: true,
        ..LineSeries::new(
            "virtual users",
            C_USERS,
            None,
            segments(points, None, MAX_POINTS),
        )
    };
    Some((
        line,
        Axis::linear("virtual users", max_users * 1.05, Unit::Count),
    ))
}

/// p50, p90 and p99 per second, on a log scale when they span more than 30×, with the
/// client's timeout drawn when the latencies come near it.
pub fn latency_chart(report: &Report, x: &TimeAxis) -> TimeChart {
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
    let lines = percentile_lines(rows);
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

/// One line per percentile, at the middle of each second.
fn percentile_lines(rows: &[SecondRow]) -> Vec<LineSeries> {
    let series: [(&str, &'static str, f64, Percentile); 3] = [
        ("p50", C_P50, 1.6, |r| r.p50_ms),
        ("p90", C_P90, 1.6, |r| r.p90_ms),
        ("p99", C_P99, 2.0, |r| r.p99_ms),
    ];
    series
        .iter()
        .map(|(name, color, width, f)| {
            let points = rows.iter().map(|r| (r.t_s as f64 + 0.5, f(r)));
            LineSeries {
                width: *width,
                ..LineSeries::new(name, color, None, segments(points, Some(1.5), MAX_POINTS))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staircase_keeps_each_change_and_the_end() {
        assert_eq!(
            dedupe_steps(vec![(0.0, 1.0), (1.0, 1.0), (2.0, 2.0), (3.0, 2.0)]),
            vec![(0.0, 1.0), (2.0, 2.0), (3.0, 2.0)]
        );
    }
}
