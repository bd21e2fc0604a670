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

use serde::{Deserialize, Serialize};

use crate::report::{Report, SCHEMA_VERSION, transports};

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

    /// Each run as (configuration name, report), for the rendering.
    pub fn named(&self) -> Vec<(&str, &Report)> {
        self.runs
            .iter()
            .map(|r| (r.name.as_str(), &r.report))
            .collect()
    }
}

/// The table: one row per figure, one column per configuration.
pub fn rows(c: &StylesComparison) -> Vec<Vec<String>> {
    transports::rows(&c.named())
}

/// The table for the terminal.
pub fn render_table(c: &StylesComparison) -> String {
    transports::render_table(&c.named())
}

/// `comparison.html` of `compare --transports`.
pub fn render_html(c: &StylesComparison) -> String {
    transports::render_html(&c.named())
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
        // Each configuration's own per-second charts, side by side.
        assert!(html.contains("Per configuration, per second"));
        assert!(html.contains("<h3>rpc</h3>") && html.contains("<h3>messaging-reliable</h3>"));
        let latency_charts = html.matches("aria-label=\"Latency per second").count();
        assert_eq!(latency_charts, 2, "one per run");
        let json = serde_json::to_string(&c).unwrap();
        let back: StylesComparison = serde_json::from_str(&json).unwrap();
        assert_eq!(back.runs.len(), 2);
    }
}
