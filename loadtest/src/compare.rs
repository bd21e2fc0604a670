//! Side by side: the same load against the faithful baseline and against the protected
//! configuration (`purchasing-api --protect` with client retries), and a sweep of offered
//! rates over both. Each writes a JSON file for machines, an HTML page with charts and a
//! table for people; the pages are drawn by [`crate::report::comparison`] and
//! [`crate::report::sweep`].

use serde::{Deserialize, Serialize};

pub use crate::report::comparison::{BASELINE, PROTECTED, comparison_rows};
pub use crate::report::sweep::{
    Sweep, SweepPoint, render_sweep_html, render_sweep_table, sweep_chart,
};
use crate::report::time_chart::TimeChart;
use crate::report::{Report, SCHEMA_VERSION, comparison};

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

/// The table for the terminal.
pub fn render_table(c: &Comparison) -> String {
    comparison::render_table(&c.baseline, &c.protected)
}

/// Charts over time, both configurations on each.
pub fn comparison_charts(c: &Comparison) -> Vec<TimeChart> {
    comparison::comparison_charts(&c.baseline, &c.protected)
}

/// `comparison.html`.
pub fn render_html(c: &Comparison) -> String {
    comparison::render_html(&c.baseline, &c.protected)
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
