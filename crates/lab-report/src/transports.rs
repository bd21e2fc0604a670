//! The side-by-side page of `loadtest compare --transports`: the two styles of the article
//! series — RPC as the original, RPC with its defences, messaging in both delivery modes —
//! on the same profile. Only figures that mean the same for both styles are compared (see
//! `loadtest::styles` for what they mean); the runs and the document are `loadtest::styles`'s,
//! this module only renders them, each run given as (configuration name, report).

use std::fmt::Write;

use super::Report;
use super::axes::{Axis, TimeAxis, Unit};
use super::downsampling::{MAX_POINTS, segments};
use super::format::{escape, opt_count, opt_fixed};
use super::page::{page, table_html};
use super::request_charts::{latency_chart, throughput_chart};
use super::summary::bytes;
use super::time_chart::{LineSeries, TimeChart};

/// One color per configuration, in the order they ran.
const COLORS: [&str; 4] = ["#dc2626", "#16a34a", "#2f6db5", "#7c3aed"];

/// One configuration's column: (figure, value), the same figures for both styles.
pub fn column(r: &Report) -> Vec<(&'static str, String)> {
    let m = r.messaging.as_ref();
    let (e2e_p50, e2e_p99) = match m {
        Some(m) => (m.end_to_end_ms.p50, m.end_to_end_ms.p99),
        None => (r.latency_ms.acknowledged_p50, r.latency_ms.acknowledged_p99),
    };
    // HTTP: an acknowledged order was written before its answer, so the last answer
    // bounds the last write (a run that acknowledged nothing has no such bound: "–");
    // messaging: the tail saw it.
    let last_written = match m {
        Some(m) => m.last_written_s,
        None if r.requests.acknowledged == 0 => None,
        None => Some(r.run.elapsed_s),
    };
    let memory = match (r.server.peak_memory_bytes, r.server.memory_limit_bytes) {
        (Some(p), Some(l)) => format!("{} of {}", bytes(p), bytes(l)),
        (Some(p), None) => bytes(p),
        _ => "–".into(),
    };
    vec![
        ("transport", r.run.transport.clone()),
        ("sent", r.requests.total.to_string()),
        (
            "accepted (acknowledged)",
            r.requests.acknowledged.to_string(),
        ),
        ("refused or failed", r.requests.failed().to_string()),
        (
            "acknowledged per second",
            format!("{:.2}", r.throughput.acknowledged_per_s),
        ),
        ("last order written at, s", opt_fixed(last_written, 1)),
        (
            "drain after the load, s",
            match m {
                Some(m) => match m.drain_s {
                    Some(s) => format!("{s:.1}"),
                    None => format!("> {:.0}", m.drain_timeout_s),
                },
                None => "–".into(),
            },
        ),
        ("end-to-end p50, ms", opt_fixed(e2e_p50, 0)),
        ("end-to-end p99, ms", opt_fixed(e2e_p99, 0)),
        ("crashes", r.server.crashes.to_string()),
        ("LOST", opt_count(r.reconciliation.lost)),
        ("duplicates", opt_count(r.reconciliation.duplicates)),
        ("GHOST", opt_count(r.reconciliation.ghost)),
        (
            "still queued",
            match r.reconciliation.still_queued {
                Some(n) => n.to_string(),
                None => "–".into(),
            },
        ),
        ("peak memory", memory),
    ]
}

/// The table: one row per figure, one column per configuration.
pub fn rows(runs: &[(&str, &Report)]) -> Vec<Vec<String>> {
    let columns: Vec<Vec<(&'static str, String)>> = runs.iter().map(|(_, r)| column(r)).collect();
    let Some(first) = columns.first() else {
        return Vec::new();
    };
    (0..first.len())
        .map(|i| {
            let mut row = vec![first[i].0.to_string()];
            row.extend(columns.iter().map(|col| col[i].1.clone()));
            row
        })
        .collect()
}

/// The table for the terminal.
pub fn render_table(runs: &[(&str, &Report)]) -> String {
    let mut out = String::new();
    if let Some((_, first)) = runs.first() {
        let _ = writeln!(
            out,
            "\n== RPC vs messaging: {} · {}",
            first.run.profile, first.run.shape
        );
    }
    let _ = write!(out, "{:<26}", "");
    for (name, _) in runs {
        let _ = write!(out, " {name:>22}");
    }
    let _ = writeln!(out);
    for row in rows(runs) {
        let _ = write!(out, "{:<26}", row[0]);
        for cell in &row[1..] {
            let _ = write!(out, " {cell:>22}");
        }
        let _ = writeln!(out);
    }
    out
}

/// Orders written so far, over time, one line per configuration: where "accepted" and
/// "written" part. HTTP: the cumulative acknowledged answers (an order is written before
/// its 201); messaging: the lines the lab's tail of the orders file had seen.
pub fn written_chart(runs: &[(&str, &Report)]) -> TimeChart {
    let mut max_t: f64 = 1.0;
    let mut max_y: f64 = 1.0;
    let lines: Vec<LineSeries> = runs
        .iter()
        .enumerate()
        .map(|(i, &(name, r))| {
            let points: Vec<(f64, Option<f64>)> = if r.timeline.queue.is_empty() {
                let mut total = 0u64;
                r.timeline
                    .seconds
                    .iter()
                    .map(|s| {
                        total += s.acknowledged;
                        (s.t_s as f64 + 1.0, Some(total as f64))
                    })
                    .collect()
            } else {
                r.timeline
                    .queue
                    .iter()
                    .map(|q| (q.t_s, Some(q.written as f64)))
                    .collect()
            };
            for (t, y) in &points {
                max_t = max_t.max(*t);
                max_y = max_y.max(y.unwrap_or(0.0));
            }
            LineSeries {
                name: name.to_string(),
                color: COLORS[i % COLORS.len()],
                width: 2.0,
                dash: None,
                right_axis: false,
                fill: false,
                step: false,
                segments: segments(points, Some(2.0), MAX_POINTS),
            }
        })
        .collect();
    TimeChart {
        title: "Orders written so far".into(),
        height: 300.0,
        x: TimeAxis::new(max_t),
        left: Axis::linear("orders written", max_y * 1.1, Unit::Count),
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

/// `comparison.html` of `compare --transports`.
pub fn render_html(runs: &[(&str, &Report)]) -> String {
    render_html_titled(runs, "RPC vs messaging")
}

/// [`render_html`] under another heading (`compare --scale-out`: "Scale-out").
pub fn render_html_titled(runs: &[(&str, &Report)], title: &str) -> String {
    let mut body = String::new();
    let (profile, shape, confinement) = runs.first().map_or_else(Default::default, |(_, r)| {
        (
            r.run.profile.clone(),
            r.run.shape.clone(),
            r.server.confinement.clone(),
        )
    });
    let _ = write!(
        body,
        "<h1>{}</h1><p class=\"muted\">{} profile · {} · system under test confined to {}</p>",
        escape(title),
        escape(&profile),
        escape(&shape),
        escape(&confinement)
    );
    let mut header = vec![""];
    header.extend(runs.iter().map(|(name, _)| *name));
    let _ = write!(
        body,
        "<section class=\"card\"><h2>Side by side</h2>{}<p class=\"muted\">Accepted is what the client was told \
         (201; a returned publish in faithful mode; a broker confirm in reliable mode), not what was written. \
         End-to-end: for HTTP the latency of acknowledged requests (the order is written before the answer); \
         for messaging from the publish to the order's line in the orders file. Still queued: acknowledged, \
         not written, while messages were left in the queue at the drain deadline. Full reports: {}.</p></section>",
        table_html(&header, &rows(runs)),
        runs.iter()
            .map(|(name, _)| format!("<code>{}/report.html</code>", escape(name)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    body.push_str("<section class=\"card\"><h2>Accepted is not written</h2>");
    body.push_str(&written_chart(runs).to_svg(false));
    body.push_str(
        "<p class=\"muted\">HTTP: acknowledged answers so far (the order is written before the answer); \
         messaging: order lines the lab saw appear in the orders file, through the drain after the load.</p></section>",
    );
    per_configuration_charts(&mut body, runs);
    page(&format!("loadtest · {title}"), &body)
}

/// Each configuration's own per-second charts — completions by outcome with the users or
/// the offered rate, and latency percentiles — side by side, drawn by the single-run
/// report's chart code on one time axis, so the columns compare at a glance.
pub fn per_configuration_charts(body: &mut String, runs: &[(&str, &Report)]) {
    if runs.is_empty() {
        return;
    }
    let x = TimeAxis::new(runs.iter().map(|(_, r)| load_span(r)).fold(1.0, f64::max));
    body.push_str(
        "<section class=\"card\"><h2>Per configuration, per second</h2><p class=\"charthint\">\
         Each run's own charts, as on its report page, on one time axis (the load; the drain \
         after it is in the chart above). Messaging: completed = publishes answered (returned \
         or confirmed), not orders written.</p><div class=\"grid2\">",
    );
    for (name, report) in runs {
        let _ = write!(body, "<div><h3>{}</h3>", escape(name));
        body.push_str(&throughput_chart(report, &x).to_svg(false));
        body.push_str(&latency_chart(report, &x).to_svg(false));
        body.push_str("</div>");
    }
    body.push_str("</div></section>");
}

/// From the load's start to its last answer (the end of the last second with one).
fn load_span(report: &Report) -> f64 {
    let last_second = report
        .timeline
        .seconds
        .last()
        .map_or(0.0, |s| s.t_s as f64 + 1.0);
    let elapsed = if report.run.elapsed_s.is_finite() {
        report.run.elapsed_s
    } else {
        0.0
    };
    last_second.max(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_support::sample_report;

    fn last_written(r: &Report) -> String {
        let col = column(r);
        col.into_iter()
            .find(|(k, _)| *k == "last order written at, s")
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    #[test]
    fn an_http_run_that_acknowledged_nothing_has_no_last_write() {
        let mut r = sample_report();
        assert!(
            r.requests.acknowledged > 0,
            "the fixture acknowledges orders"
        );
        assert_eq!(last_written(&r), format!("{:.1}", r.run.elapsed_s));
        r.requests.acknowledged = 0;
        assert_eq!(last_written(&r), "–");
    }
}
