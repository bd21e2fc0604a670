//! `loadtest compare --transports`: the two styles of the article series side by side on
//! the same profile — RPC as the original (`rpc`), RPC with its defences
//! (`rpc-protected`: `purchasing-api --protect` and client retries), and messaging in both
//! delivery modes (`messaging-faithful`, `messaging-reliable`).
//!
//! Only figures that mean the same for both styles are compared. "Accepted" is what the
//! client was told (a 201, a returned publish, a broker confirm); it is not "written", so
//! the table also has the time until the last order was written and the end-to-end
//! latency — for HTTP the request latency of acknowledged orders (the order is written
//! before the 201), for messaging from the publish to the line in the orders file. The
//! run configurations themselves are defined once, in `cli::SweepConfig` and
//! `cli::configuration`, for `compare`, `compare --transports` and `sweep` alike.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::compare::{page, table_html};
use crate::report::format::escape;
use crate::report::summary::bytes;
use crate::report::svg::{Axis, LineSeries, MAX_POINTS, TimeAxis, TimeChart, Unit, segments};
use crate::report::{Report, SCHEMA_VERSION};

/// One color per configuration, in [`crate::cli::SweepConfig::STYLES`] order.
const COLORS: [&str; 4] = ["#dc2626", "#16a34a", "#2f6db5", "#7c3aed"];

/// `comparison.json` of `compare --transports`: every configuration's full report, in
/// the order they ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StylesComparison {
    pub schema_version: u32,
    pub runs: Vec<NamedRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedRun {
    /// `rpc`, `rpc-protected`, `messaging-faithful`, `messaging-reliable`.
    pub name: String,
    pub report: Report,
}

impl StylesComparison {
    pub fn new(runs: Vec<NamedRun>) -> Self {
        StylesComparison {
            schema_version: SCHEMA_VERSION,
            runs,
        }
    }
}

fn f(v: Option<f64>, decimals: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

fn u(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), |v| v.to_string())
}

/// One configuration's column: (figure, value), the same figures for both styles.
pub fn column(r: &Report) -> Vec<(&'static str, String)> {
    let m = r.messaging.as_ref();
    let (e2e_p50, e2e_p99) = match m {
        Some(m) => (m.end_to_end_ms.p50, m.end_to_end_ms.p99),
        None => (r.latency_ms.acknowledged_p50, r.latency_ms.acknowledged_p99),
    };
    // HTTP: an acknowledged order was written before its answer, so the last answer
    // bounds the last write; messaging: the tail saw it.
    let last_written = match m {
        Some(m) => m.last_written_s,
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
        ("last order written at, s", f(last_written, 1)),
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
        ("end-to-end p50, ms", f(e2e_p50, 0)),
        ("end-to-end p99, ms", f(e2e_p99, 0)),
        ("crashes", r.server.crashes.to_string()),
        ("LOST", u(r.reconciliation.lost)),
        ("duplicates", u(r.reconciliation.duplicates)),
        ("GHOST", u(r.reconciliation.ghost)),
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
pub fn rows(c: &StylesComparison) -> Vec<Vec<String>> {
    let columns: Vec<Vec<(&'static str, String)>> =
        c.runs.iter().map(|r| column(&r.report)).collect();
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
pub fn render_table(c: &StylesComparison) -> String {
    let mut out = String::new();
    if let Some(first) = c.runs.first() {
        let _ = writeln!(
            out,
            "\n== RPC vs messaging: {} · {}",
            first.report.run.profile, first.report.run.shape
        );
    }
    let _ = write!(out, "{:<26}", "");
    for r in &c.runs {
        let _ = write!(out, " {:>22}", r.name);
    }
    let _ = writeln!(out);
    for row in rows(c) {
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
pub fn written_chart(c: &StylesComparison) -> TimeChart {
    let mut max_t: f64 = 1.0;
    let mut max_y: f64 = 1.0;
    let lines: Vec<LineSeries> = c
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let r = &run.report;
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
                name: run.name.clone(),
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
pub fn render_html(c: &StylesComparison) -> String {
    let mut body = String::new();
    let (profile, shape, confinement) = c.runs.first().map_or_else(Default::default, |r| {
        (
            r.report.run.profile.clone(),
            r.report.run.shape.clone(),
            r.report.server.confinement.clone(),
        )
    });
    let _ = write!(
        body,
        "<h1>RPC vs messaging</h1><p class=\"muted\">{} profile · {} · system under test confined to {}</p>",
        escape(&profile),
        escape(&shape),
        escape(&confinement)
    );
    let mut header = vec![""];
    header.extend(c.runs.iter().map(|r| r.name.as_str()));
    let _ = write!(
        body,
        "<section class=\"card\"><h2>Side by side</h2>{}<p class=\"muted\">Accepted is what the client was told \
         (201; a returned publish in faithful mode; a broker confirm in reliable mode), not what was written. \
         End-to-end: for HTTP the latency of acknowledged requests (the order is written before the answer); \
         for messaging from the publish to the order's line in the orders file. Still queued: acknowledged, \
         not written, while messages were left in the queue at the drain deadline. Full reports: {}.</p></section>",
        table_html(&header, &rows(c)),
        c.runs
            .iter()
            .map(|r| format!("<code>{}/report.html</code>", escape(&r.name)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    body.push_str("<section class=\"card\"><h2>Accepted is not written</h2>");
    body.push_str(&written_chart(c).to_svg(false));
    body.push_str(
        "<p class=\"muted\">HTTP: acknowledged answers so far (the order is written before the answer); \
         messaging: order lines the lab saw appear in the orders file, through the drain after the load.</p></section>",
    );
    page("loadtest · RPC vs messaging", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests_support::sample_report;
    use crate::report::{MessagingReport, Percentiles};

    #[test]
    fn both_styles_fill_the_same_rows() {
        let http = sample_report();
        let mut amqp = sample_report();
        amqp.run.transport = "amqp".into();
        amqp.reconciliation.still_queued = Some(4);
        amqp.messaging = Some(MessagingReport {
            delivery: "reliable".into(),
            end_to_end_ms: Percentiles {
                count: 60,
                p50: Some(1500.0),
                p99: Some(9000.0),
                max: None,
            },
            last_written_s: Some(42.0),
            drain_s: None,
            drain_timeout_s: 120.0,
            ..Default::default()
        });
        let c = StylesComparison::new(vec![
            NamedRun {
                name: "rpc".into(),
                report: http,
            },
            NamedRun {
                name: "messaging-reliable".into(),
                report: amqp,
            },
        ]);
        let rows = rows(&c);
        let row = |name: &str| rows.iter().find(|r| r[0] == name).unwrap().clone();
        assert_eq!(
            row("end-to-end p50, ms"),
            vec!["end-to-end p50, ms", "600", "1500"]
        );
        assert_eq!(row("still queued"), vec!["still queued", "–", "4"]);
        assert_eq!(row("drain after the load, s")[2], "> 120");
        assert_eq!(row("last order written at, s")[1], "10.0");
        let table = render_table(&c);
        assert!(table.contains("messaging-reliable"), "{table}");
        let html = render_html(&c);
        assert!(html.contains("RPC vs messaging") && html.contains("<table>"));
        assert!(html.contains("Orders written so far"));
        let json = serde_json::to_string(&c).unwrap();
        let back: StylesComparison = serde_json::from_str(&json).unwrap();
        assert_eq!(back.runs.len(), 2);
    }
}
