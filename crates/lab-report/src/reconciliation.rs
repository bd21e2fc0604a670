//! The reconciliation's classes — what happened to every order — shared by its bar and
//! its table.

use super::Report;
use super::bar_chart::{BarSegment, StackedBar};
use super::format::{int, pct};
use super::request_charts::C_ACK;

pub const C_LOST: &str = "#c0392b";
pub const C_GHOST: &str = "#f28e2b";
pub const C_ABSENT: &str = "#a8a29e";
pub const C_DUP: &str = "#9467bd";
pub const C_UNEXPECTED: &str = "#8c6d5a";
pub const C_MALFORMED: &str = "#374151";

/// The reconciliation classes: name, colour, count, meaning. The first four partition the
/// item codes sent; the others are counted besides them.
pub fn reconciliation_classes(
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

/// The first this many classes partition the orders sent; the others are counted besides.
pub const PARTITION: usize = 4;

pub fn reconciliation_bar(report: &Report) -> StackedBar {
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
