//! `--fail-on` thresholds, in the manner of k6: each is a *failure condition* such as
//! `lost>0` or `p99>2000`; if any holds after the run, `loadtest` exits with
//! [`EXIT_THRESHOLD_FAILED`], so the lab can gate CI. Unknown metric names are rejected
//! when the command line is parsed, not after a long run.

use std::fmt;
use std::str::FromStr;

use crate::report::{Report, ThresholdResult};

/// k6's exit code for a failed threshold.
pub const EXIT_THRESHOLD_FAILED: u8 = 99;

/// Every metric a threshold may name, with its meaning (shown in `--help` and errors).
pub const METRICS: &[(&str, &str)] = &[
    ("total", "requests sent"),
    ("acknowledged", "requests answered 2xx"),
    ("failed", "requests not acknowledged (any reason)"),
    ("failed_status", "requests answered with a non-2xx status"),
    ("timed_out", "requests that timed out"),
    ("connect_errors", "requests that could not connect"),
    ("transport_errors", "requests reset or closed mid-exchange"),
    ("error_rate", "failed / total, 0 to 1"),
    ("avg", "mean test time, ms"),
    ("p50", "median test time, ms"),
    ("p90", "90th percentile test time, ms"),
    ("p99", "99th percentile test time, ms"),
    ("max", "slowest test time, ms"),
    ("rps", "completed requests per second"),
    ("goodput", "acknowledged requests per second"),
    ("lag_p99", "99th percentile scheduler lag, ms"),
    (
        "acknowledged_p99",
        "99th percentile test time of acknowledged requests, ms",
    ),
    (
        "admitted_p99",
        "99th percentile time of the admitted attempt of acknowledged requests, ms",
    ),
    ("shed", "requests answered 503 (shed by admission control)"),
    ("shed_p99", "99th percentile test time of 503 answers, ms"),
    (
        "recovery_s",
        "seconds after a spike until goodput is back to 95 %",
    ),
    (
        "attempts_per_request",
        "HTTP attempts per logical request (retries)",
    ),
    ("attempts_max", "most attempts any logical request took"),
    (
        "acknowledged_persisted",
        "acknowledged and in the orders file",
    ),
    ("lost", "acknowledged but missing from the orders file"),
    ("ghost", "failed at the client but in the orders file"),
    ("failed_absent", "failed and not in the orders file"),
    ("duplicates", "item codes written more than once"),
    ("unexpected", "orders in the file this run never sent"),
    ("malformed", "lines of the orders file that are not orders"),
    ("crashes", "times the server died"),
    ("peak_memory_bytes", "server peak memory, bytes"),
    (
        "still_queued",
        "messaging: acknowledged, not written, still in the queue at the drain deadline",
    ),
    (
        "e2e_p99",
        "messaging: 99th percentile publish-to-written, ms",
    ),
    (
        "drain_s",
        "messaging: seconds from the load's end until all was written",
    ),
    (
        "dead_lettered",
        "messaging: messages in the dead-letter queue",
    ),
    ("redelivered", "messaging: deliveries flagged redelivered"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Op::Gt => left > right,
            Op::Ge => left >= right,
            Op::Lt => left < right,
            Op::Le => left <= right,
            Op::Eq => left == right,
            Op::Ne => left != right,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

/// One `--fail-on` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: &'static str,
    pub op: Op,
    pub value: f64,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op.symbol(), self.value)
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        // Two-character operators first, so `>=` is not read as `>` followed by `=…`.
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
        ];
        let (index, symbol, op) = ops
            .iter()
            .filter_map(|&(s, op)| compact.find(s).map(|i| (i, s, op)))
            .min_by_key(|&(i, s, _)| (i, std::cmp::Reverse(s.len())))
            .ok_or_else(|| {
                format!("threshold {text:?} has no comparison; write it like lost>0 or p99>2000")
            })?;
        let name = &compact[..index];
        let number = &compact[index + symbol.len()..];
        let metric = METRICS
            .iter()
            .map(|(m, _)| *m)
            .find(|m| *m == name)
            .ok_or_else(|| {
                let known: Vec<&str> = METRICS.iter().map(|(m, _)| *m).collect();
                format!(
                    "threshold {text:?} names an unknown metric {name:?}; known: {}",
                    known.join(", ")
                )
            })?;
        let value: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("threshold {text:?}: {number:?} is not a number"))?;
        Ok(Threshold { metric, op, value })
    }
}

/// The value of `metric` in `report`; `None` when the run could not measure it (for
/// example reconciliation counts against a server whose orders file is not readable).
pub fn metric_value(report: &Report, metric: &str) -> Option<f64> {
    let r = &report.requests;
    let l = &report.latency_ms;
    let c = &report.reconciliation;
    let n = |v: u64| Some(v as f64);
    let opt = |v: Option<u64>| v.map(|v| v as f64);
    match metric {
        "total" => n(r.total),
        "acknowledged" => n(r.acknowledged),
        "failed" => n(r.failed()),
        "failed_status" => n(r.failed_status),
        "timed_out" => n(r.timed_out),
        "connect_errors" => n(r.connect_errors),
        "transport_errors" => n(r.transport_errors),
        "error_rate" => (r.total > 0).then(|| r.failed() as f64 / r.total as f64),
        "avg" => l.avg,
        "p50" => l.p50,
        "p90" => l.p90,
        "p99" => l.p99,
        "max" => l.max,
        "rps" => Some(report.throughput.requests_per_s),
        "goodput" => Some(report.throughput.acknowledged_per_s),
        "lag_p99" => report.generator.lag_p99_ms,
        "acknowledged_p99" => l.acknowledged_p99,
        "admitted_p99" => l.admitted_p99,
        "shed" => n(r.by_status.get("503").copied().unwrap_or(0)),
        "shed_p99" => l.shed_p99,
        "recovery_s" => report.throughput.recovery_s,
        "attempts_per_request" => report.retries.attempts_per_request,
        "attempts_max" => Some(f64::from(report.retries.attempts_max)),
        "acknowledged_persisted" => opt(c.acknowledged_persisted),
        "lost" => opt(c.lost),
        "ghost" => opt(c.ghost),
        "failed_absent" => opt(c.failed_absent),
        "duplicates" => opt(c.duplicates),
        "unexpected" => opt(c.unexpected),
        "malformed" => opt(c.malformed_lines),
        "crashes" => n(report.server.crashes),
        "peak_memory_bytes" => opt(report.server.peak_memory_bytes),
        "still_queued" => opt(c.still_queued),
        "e2e_p99" => report.messaging.as_ref()?.end_to_end_ms.p99,
        "drain_s" => report.messaging.as_ref()?.drain_s,
        "dead_lettered" => Some(report.messaging.as_ref()?.dead_lettered as f64),
        "redelivered" => Some(report.messaging.as_ref()?.redelivered as f64),
        _ => None,
    }
}

/// Evaluates every threshold. One whose metric could not be measured fails: a gate that
/// cannot be checked must not pass silently.
pub fn evaluate(report: &Report, thresholds: &[Threshold]) -> Vec<ThresholdResult> {
    thresholds
        .iter()
        .map(|t| {
            let value = metric_value(report, t.metric);
            ThresholdResult {
                expression: t.to_string(),
                value,
                passed: value.is_some_and(|v| !t.op.holds(v, t.value)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions() {
        let t: Threshold = "lost>0".parse().unwrap();
        assert_eq!((t.metric, t.op, t.value), ("lost", Op::Gt, 0.0));
        let t: Threshold = " p99 >= 2000.5 ".parse().unwrap();
        assert_eq!((t.metric, t.op, t.value), ("p99", Op::Ge, 2000.5));
        let t: Threshold = "error_rate!=0".parse().unwrap();
        assert_eq!(t.op, Op::Ne);
        assert_eq!(t.to_string(), "error_rate!=0");
    }

    #[test]
    fn rejects_unknown_names_and_junk() {
        let err = "lots>0".parse::<Threshold>().unwrap_err();
        assert!(
            err.contains("unknown metric") && err.contains("lost"),
            "{err}"
        );
        assert!(
            "lost"
                .parse::<Threshold>()
                .unwrap_err()
                .contains("no comparison")
        );
        assert!(
            "lost>many"
                .parse::<Threshold>()
                .unwrap_err()
                .contains("not a number")
        );
        assert!("lost>inf".parse::<Threshold>().is_err());
    }

    #[test]
    fn every_metric_name_is_understood_by_metric_value() {
        let mut report = crate::report::tests_support::sample_report();
        // The messaging figures too, as a --transport amqp run has them.
        report.reconciliation.still_queued = Some(0);
        report.messaging = Some(crate::report::MessagingReport {
            end_to_end_ms: crate::report::Percentiles {
                p99: Some(10.0),
                ..Default::default()
            },
            drain_s: Some(1.0),
            ..Default::default()
        });
        for (name, _) in METRICS {
            // Every name maps to a field: the sample report has all of them set.
            assert!(metric_value(&report, name).is_some(), "{name}");
        }
        // An HTTP run cannot be judged on messaging figures: not measured, so it fails.
        let http = crate::report::tests_support::sample_report();
        assert_eq!(metric_value(&http, "e2e_p99"), None);
    }

    #[test]
    fn failing_passing_and_unmeasurable() {
        let mut report = crate::report::tests_support::sample_report();
        report.reconciliation.lost = Some(2);
        let thresholds: Vec<Threshold> = ["lost>0", "p99>100000", "crashes>=1"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let results = evaluate(&report, &thresholds);
        assert!(!results[0].passed);
        assert_eq!(results[0].value, Some(2.0));
        assert!(results[1].passed);

        report.reconciliation.lost = None; // e.g. a remote server's file could not be read
        assert!(!evaluate(&report, &thresholds[..1])[0].passed);
    }
}
