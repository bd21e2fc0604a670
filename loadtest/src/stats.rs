//! Aggregation of request records into the report's figures, as records stream in.
//!
//! Memory stays flat: per-second histograms exist only for the last few seconds and are
//! folded into one small row each; the per-step histograms are one per step; the rest is
//! counters. Histograms have fixed bounds and use `saturating_record`, so no latency value
//! can panic them (a value past fixed bounds panics `+=` in hdrhistogram; see [`HISTOGRAM_MAX_US`]).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::profile::StepProfile;
use crate::record::{Outcome, RequestRecord};
use crate::report::{
    GeneratorHealth, LatencySummary, RequestCounts, SecondRow, StepRow, Throughput,
};

/// Lag (actual − intended send) above which the generator counts as saturated: a healthy
/// tokio timer fires about 1 ms late, so a p99 of 10 ms means the generator could not
/// keep its schedule and the offered load was lower than planned.
pub const SATURATED_LAG_P99: Duration = Duration::from_millis(10);

/// A step's p99 "breaks" when it exceeds this multiple of the first step's p99.
pub const KNEE_P99_FACTOR: f64 = 2.0;
/// Throughput "stops growing" when a step with more users adds less than this fraction.
pub const KNEE_MIN_GROWTH: f64 = 0.05;

/// Seconds a per-second histogram stays open for late records before it is folded.
const OPEN_SECONDS: u64 = 3;

pub const CLOSED_MODEL_NOTE: &str = "closed model: each virtual user waits for an answer before \
     sending again, so a slow server also slows the load (coordinated omission); these \
     latencies understate what users arriving at a steady rate would see";
pub const OPEN_MODEL_NOTE: &str = "open model: latency is measured from each request's \
     scheduled send time, so time spent queued behind a stalled server is included";

/// A gauge reading taken once per second by the runner.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gauge {
    pub t_s: u64,
    pub users: Option<u64>,
    pub offered_rate: Option<f64>,
    pub in_flight: u64,
}

/// Largest latency a histogram tracks, µs (one hour); larger values are clamped to it.
///
/// Fixed bounds rather than auto-resize on purpose: hdrhistogram 7.6's auto-resizing
/// histogram keeps a stale `max()` when its first value lies beyond the initial range
/// (measured: record 100 ms then 30 s, and `max()` answers 2 µs). With fixed bounds and
/// `saturating_record`, no value can panic or corrupt the figures. ~190 KB at 3 digits.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_max(HISTOGRAM_MAX_US, 3).expect("valid histogram bounds")
}

/// 2 significant digits (~27 KB) for the many per-second and per-step histograms.
fn small_histogram() -> Histogram<u64> {
    Histogram::new_with_max(HISTOGRAM_MAX_US, 2).expect("valid histogram bounds")
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn ms_at(h: &Histogram<u64>, quantile: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(quantile) as f64 / 1000.0)
}

#[derive(Default)]
struct SecondAcc {
    row: SecondRow,
    latency: Option<Histogram<u64>>,
}

struct StepAcc {
    sent: u64,
    acknowledged: u64,
    failed: u64,
    timed_out: u64,
    completed: u64,
    completed_acknowledged: u64,
    latency: Histogram<u64>,
}

impl Default for StepAcc {
    fn default() -> Self {
        StepAcc {
            sent: 0,
            acknowledged: 0,
            failed: 0,
            timed_out: 0,
            completed: 0,
            completed_acknowledged: 0,
            latency: small_histogram(),
        }
    }
}

/// Folds records into counts, histograms, per-second rows and per-step rows.
pub struct Aggregator {
    step_profile: Option<StepProfile>,
    open_model: bool,
    counts: RequestCounts,
    latency: Histogram<u64>,
    acknowledged_latency: Histogram<u64>,
    lag: Histogram<u64>,
    /// Test time of 503 answers: how quickly the server refuses when it sheds.
    shed_latency: Histogram<u64>,
    /// Last-attempt time of acknowledged requests.
    admitted_latency: Histogram<u64>,
    attempts: AttemptCounts,
    latency_sum_us: u128,
    /// Seconds still accepting records, by second.
    open_seconds: BTreeMap<u64, SecondAcc>,
    /// Folded seconds, indexed by second.
    seconds: Vec<SecondRow>,
    steps: BTreeMap<u64, StepAcc>,
    last_end: Duration,
}

/// Everything the aggregator concluded.
pub struct Aggregates {
    pub counts: RequestCounts,
    pub latency: LatencySummary,
    /// The slowest acknowledged request, ms: the max beside `latency.acknowledged_p50`
    /// and `_p99` (the messaging report's publish latency; report.json's `latency_ms`
    /// keeps its fields).
    pub acknowledged_max_ms: Option<f64>,
    pub throughput: Throughput,
    pub generator: GeneratorHealth,
    pub steps: Vec<StepRow>,
    pub knee_step: Option<usize>,
    pub seconds: Vec<SecondRow>,
    /// From the start of the load to the last answer.
    pub elapsed: Duration,
    pub attempts: AttemptCounts,
}

impl Aggregator {
    /// `step_profile` for the closed model (per-step rows), `None` for the open model.
    pub fn new(step_profile: Option<StepProfile>) -> Self {
        Aggregator {
            step_profile,
            open_model: step_profile.is_none(),
            counts: RequestCounts::default(),
            latency: histogram(),
            acknowledged_latency: histogram(),
            lag: histogram(),
            shed_latency: histogram(),
            admitted_latency: histogram(),
            attempts: AttemptCounts::default(),
            latency_sum_us: 0,
            open_seconds: BTreeMap::new(),
            seconds: Vec::new(),
            steps: BTreeMap::new(),
            last_end: Duration::ZERO,
        }
    }

    pub fn add(&mut self, r: &RequestRecord) {
        let latency_us = us(r.latency);
        self.counts.total += 1;
        match r.outcome {
            Outcome::Acknowledged => self.counts.acknowledged += 1,
            Outcome::FailedStatus(status) => {
                self.counts.failed_status += 1;
                *self.counts.by_status.entry(status.to_string()).or_default() += 1;
            }
            Outcome::TimedOut => self.counts.timed_out += 1,
            Outcome::ConnectError => self.counts.connect_errors += 1,
            Outcome::TransportError => self.counts.transport_errors += 1,
        }
        self.latency.saturating_record(latency_us);
        if r.outcome.is_acknowledged() {
            self.acknowledged_latency.saturating_record(latency_us);
            self.admitted_latency.saturating_record(us(r.last_attempt));
        }
        self.lag.saturating_record(us(r.lag()));
        if r.outcome == Outcome::FailedStatus(503) {
            // The refusal itself, not the client's waits between its attempts.
            self.shed_latency.saturating_record(us(r.last_attempt));
        }
        self.attempts.total += u64::from(r.attempts);
        self.attempts.max = self.attempts.max.max(r.attempts);
        self.attempts.budget_denied += u64::from(r.budget_denied);
        self.attempts.replayed += u64::from(r.replayed);
        self.latency_sum_us += u128::from(latency_us);
        self.last_end = self.last_end.max(r.ended);

        self.add_to_second(r, latency_us);
        if let Some(profile) = self.step_profile {
            let started = self.steps.entry(profile.step_at(r.started)).or_default();
            started.sent += 1;
            started.latency.saturating_record(latency_us);
            match r.outcome {
                Outcome::Acknowledged => started.acknowledged += 1,
                Outcome::TimedOut => {
                    started.timed_out += 1;
                    started.failed += 1;
                }
                _ => started.failed += 1,
            }
            let ended = self.steps.entry(profile.step_at(r.ended)).or_default();
            ended.completed += 1;
            ended.completed_acknowledged += u64::from(r.outcome.is_acknowledged());
        }
    }

    fn add_to_second(&mut self, r: &RequestRecord, latency_us: u64) {
        let second = r.ended.as_secs();
        let acc_row = if let Some(row) = self.seconds.get_mut(second as usize) {
            // A straggler for a second already folded: count it, percentiles stay as they were.
            row
        } else {
            let acc = self.open_seconds.entry(second).or_default();
            acc.latency
                .get_or_insert_with(small_histogram)
                .saturating_record(latency_us);
            &mut acc.row
        };
        match r.outcome {
            Outcome::Acknowledged => acc_row.acknowledged += 1,
            Outcome::FailedStatus(_) => acc_row.failed_status += 1,
            Outcome::TimedOut => acc_row.timed_out += 1,
            Outcome::ConnectError => acc_row.connect_errors += 1,
            Outcome::TransportError => acc_row.transport_errors += 1,
        }
        // Fold the seconds that can no longer receive records in practice.
        while let Some((&oldest, _)) = self.open_seconds.first_key_value() {
            if oldest + OPEN_SECONDS > second {
                break;
            }
            self.fold_oldest();
        }
    }

    fn fold_oldest(&mut self) {
        let Some((second, acc)) = self.open_seconds.pop_first() else {
            return;
        };
        while (self.seconds.len() as u64) < second {
            let t_s = self.seconds.len() as u64;
            self.seconds.push(SecondRow {
                t_s,
                ..Default::default()
            });
        }
        let mut row = acc.row;
        row.t_s = second;
        if let Some(h) = acc.latency {
            row.p50_ms = ms_at(&h, 0.50);
            row.p90_ms = ms_at(&h, 0.90);
            row.p99_ms = ms_at(&h, 0.99);
        }
        self.seconds.push(row);
    }

    /// Concludes, merging the runner's per-second gauges (users, offered rate, in flight).
    pub fn finish(mut self, gauges: &[Gauge]) -> Aggregates {
        while !self.open_seconds.is_empty() {
            self.fold_oldest();
        }
        let last_gauge = gauges.iter().map(|g| g.t_s + 1).max().unwrap_or(0);
        while (self.seconds.len() as u64) < last_gauge {
            let t_s = self.seconds.len() as u64;
            self.seconds.push(SecondRow {
                t_s,
                ..Default::default()
            });
        }
        for g in gauges {
            if let Some(row) = self.seconds.get_mut(g.t_s as usize) {
                row.users = g.users;
                row.offered_rate = g.offered_rate;
                row.in_flight = g.in_flight;
            }
        }

        let elapsed = self.last_end;
        let secs = elapsed.as_secs_f64();
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let n = self.counts.total;
        let latency = LatencySummary {
            count: n,
            avg: (n > 0).then(|| self.latency_sum_us as f64 / n as f64 / 1000.0),
            min: (n > 0).then(|| self.latency.min() as f64 / 1000.0),
            p50: ms_at(&self.latency, 0.50),
            p90: ms_at(&self.latency, 0.90),
            p99: ms_at(&self.latency, 0.99),
            max: (n > 0).then(|| self.latency.max() as f64 / 1000.0),
            acknowledged_p50: ms_at(&self.acknowledged_latency, 0.50),
            acknowledged_p99: ms_at(&self.acknowledged_latency, 0.99),
            note: if self.open_model {
                OPEN_MODEL_NOTE
            } else {
                CLOSED_MODEL_NOTE
            }
            .to_string(),
            shed_p50: ms_at(&self.shed_latency, 0.50),
            shed_p99: ms_at(&self.shed_latency, 0.99),
            admitted_p50: ms_at(&self.admitted_latency, 0.50),
            admitted_p99: ms_at(&self.admitted_latency, 0.99),
        };
        let lag_p99 = ms_at(&self.lag, 0.99);
        let generator = GeneratorHealth {
            lag_p50_ms: ms_at(&self.lag, 0.50),
            lag_p99_ms: lag_p99,
            lag_max_ms: (n > 0).then(|| self.lag.max() as f64 / 1000.0),
            saturated: lag_p99.is_some_and(|p| p > SATURATED_LAG_P99.as_secs_f64() * 1000.0),
            cpu_seconds: None, // measured around the load by the lab, not from records
        };
        let throughput = Throughput {
            requests_per_s: per_s(n),
            acknowledged_per_s: per_s(self.counts.acknowledged),
            ..Default::default()
        };
        let (steps, knee_step) = match self.step_profile {
            Some(profile) => step_rows(&profile, &self.steps, elapsed),
            None => (Vec::new(), None),
        };
        Aggregates {
            counts: self.counts,
            latency,
            acknowledged_max_ms: (!self.acknowledged_latency.is_empty())
                .then(|| self.acknowledged_latency.max() as f64 / 1000.0),
            throughput,
            generator,
            steps,
            knee_step,
            seconds: self.seconds,
            elapsed,
            attempts: self.attempts,
        }
    }
}

/// Attempt counters of a run (see [`crate::report::RetryStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptCounts {
    pub total: u64,
    pub max: u32,
    pub budget_denied: u64,
    pub replayed: u64,
}

/// "Back to normal" after a spike: goodput at 95 % of what it was before.
pub const RECOVERED_FRACTION: f64 = 0.95;

/// Goodput before a spike and the time it took to come back after it, from the
/// per-second rows: pre-spike = mean acknowledged/s over [2 s, spike start) (the first
/// two seconds are warm-up); recovered at the first second t ≥ spike end whose 3-second
/// mean is ≥ [`RECOVERED_FRACTION`] of it. Returns (pre-spike goodput, recovery seconds).
pub fn spike_recovery(
    seconds: &[SecondRow],
    spike_start: f64,
    spike_end: f64,
) -> (Option<f64>, Option<f64>) {
    let good = |t: usize| seconds.get(t).map_or(0.0, |r| r.acknowledged as f64);
    let from = 2usize;
    let to = spike_start.floor() as usize;
    if to <= from {
        return (None, None);
    }
    let pre = (from..to).map(good).sum::<f64>() / (to - from) as f64;
    if pre <= 0.0 {
        return (Some(pre), None);
    }
    let end = spike_end.ceil() as usize;
    let last = seconds.len().saturating_sub(3);
    let recovered = (end..=last)
        .find(|&t| (t..t + 3).map(good).sum::<f64>() / 3.0 >= RECOVERED_FRACTION * pre)
        .map(|t| (t as f64 - spike_end).max(0.0));
    (Some(pre), recovered)
}

fn step_rows(
    profile: &StepProfile,
    steps: &BTreeMap<u64, StepAcc>,
    elapsed: Duration,
) -> (Vec<StepRow>, Option<usize>) {
    // Steps after the last one that started a request only saw the tail drain: no row.
    let Some(last) = steps
        .iter()
        .rev()
        .find(|(_, acc)| acc.sent > 0)
        .map(|(&k, _)| k)
    else {
        return (Vec::new(), None);
    };
    let mut rows = Vec::new();
    for index in 0..=last {
        let empty = StepAcc::default();
        let acc = steps.get(&index).unwrap_or(&empty);
        let start = profile.step_start(index);
        let end = profile.step_start(index + 1).min(elapsed.max(start));
        let window = (end - start).as_secs_f64();
        let rate = |n: u64| if window > 0.0 { n as f64 / window } else { 0.0 };
        rows.push(StepRow {
            index: index as usize,
            users: profile.users_in_step(index),
            start_s: start.as_secs_f64(),
            end_s: end.as_secs_f64(),
            sent: acc.sent,
            acknowledged: acc.acknowledged,
            failed: acc.failed,
            timed_out: acc.timed_out,
            requests_per_s: rate(acc.completed),
            acknowledged_per_s: rate(acc.completed_acknowledged),
            p50_ms: ms_at(&acc.latency, 0.50),
            p99_ms: ms_at(&acc.latency, 0.99),
            knee: false,
        });
    }
    let knee = find_knee(&rows, profile.step_duration.as_secs_f64());
    if let Some(k) = knee {
        rows[k].knee = true;
    }
    (rows, knee)
}

/// The knee: the first step where requests failed, p99 exceeded [`KNEE_P99_FACTOR`] × the
/// first step's, or (for a complete step with more users than the one before) goodput grew
/// by less than [`KNEE_MIN_GROWTH`].
pub fn find_knee(rows: &[StepRow], step_seconds: f64) -> Option<usize> {
    let baseline_p99 = rows.first().and_then(|r| r.p99_ms);
    rows.iter().enumerate().find_map(|(i, row)| {
        let failed = row.failed > 0;
        let p99_broke = i > 0
            && matches!((row.p99_ms, baseline_p99), (Some(p), Some(b)) if p > KNEE_P99_FACTOR * b);
        let complete = row.end_s - row.start_s >= step_seconds * 0.999;
        let stalled = i > 0 && complete && {
            let prev = &rows[i - 1];
            row.users > prev.users
                && row.acknowledged_per_s < prev.acknowledged_per_s * (1.0 + KNEE_MIN_GROWTH)
        };
        (failed || p99_broke || stalled).then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn rec(seq: u64, started: u64, latency: u64, outcome: Outcome) -> RequestRecord {
        RequestRecord {
            seq,
            item_code: uuid::Uuid::new_v4(),
            request_id: String::new(),
            user: None,
            scheduled: ms(started),
            started: ms(started),
            ended: ms(started + latency),
            latency: ms(latency),
            outcome,
            error: None,
            attempts: 1,
            last_attempt: ms(latency),
            budget_denied: false,
            replayed: false,
        }
    }

    #[test]
    fn counts_latency_and_per_second_rows() {
        let mut agg = Aggregator::new(None);
        agg.add(&rec(0, 0, 100, Outcome::Acknowledged));
        agg.add(&rec(1, 200, 300, Outcome::Acknowledged));
        agg.add(&rec(2, 900, 200, Outcome::FailedStatus(500)));
        agg.add(&rec(3, 1500, 30_000, Outcome::TimedOut));
        agg.add(&rec(4, 1600, 1, Outcome::ConnectError));
        let out = agg.finish(&[Gauge {
            t_s: 0,
            users: None,
            offered_rate: Some(3.0),
            in_flight: 2,
        }]);
        assert_eq!(out.counts.total, 5);
        assert_eq!(out.counts.acknowledged, 2);
        assert_eq!(out.counts.failed_status, 1);
        assert_eq!(out.counts.by_status["500"], 1);
        assert_eq!(out.counts.timed_out, 1);
        assert_eq!(out.counts.connect_errors, 1);
        assert_eq!(out.elapsed, ms(31_500));
        let max = out.latency.max.unwrap();
        assert!((max - 30_000.0).abs() / 30_000.0 < 0.001, "{max}");
        // The slowest acknowledged one (300 ms), not the slowest of all: the messaging
        // report's publish max beside the acknowledged p50/p99, which it used to leave null.
        let acknowledged_max = out.acknowledged_max_ms.expect("two were acknowledged");
        assert!((acknowledged_max - 300.0).abs() < 0.5, "{acknowledged_max}");
        assert!(out.latency.note.starts_with("open model"));

        // Rows per second of completion, dense from 0 to the last.
        assert_eq!(out.seconds.len(), 32);
        assert_eq!(out.seconds[0].acknowledged, 2, "ended at 0.1 s and 0.5 s");
        assert_eq!(out.seconds[0].offered_rate, Some(3.0));
        assert_eq!(out.seconds[1].acknowledged, 0);
        assert_eq!(out.seconds[1].failed_status, 1);
        assert_eq!(out.seconds[1].connect_errors, 1);
        assert_eq!(out.seconds[31].timed_out, 1);
        assert!(out.seconds[5].p99_ms.is_none());
    }

    #[test]
    fn no_acknowledged_request_has_no_max() {
        let mut agg = Aggregator::new(None);
        agg.add(&rec(0, 0, 100, Outcome::ConnectError));
        assert_eq!(agg.finish(&[]).acknowledged_max_ms, None);
    }

    #[test]
    fn late_records_still_count_in_folded_seconds() {
        let mut agg = Aggregator::new(None);
        agg.add(&rec(0, 0, 10, Outcome::Acknowledged));
        agg.add(&rec(1, 10_000, 10, Outcome::Acknowledged)); // folds second 0
        agg.add(&rec(2, 100, 10, Outcome::Acknowledged)); // straggler for second 0
        let out = agg.finish(&[]);
        assert_eq!(out.seconds[0].acknowledged, 2);
    }

    #[test]
    fn generator_saturation_is_flagged_from_lag() {
        let mut agg = Aggregator::new(None);
        for i in 0..100 {
            let mut r = rec(i, i * 10, 5, Outcome::Acknowledged);
            r.scheduled = r.started.saturating_sub(ms(50));
            agg.add(&r);
        }
        let out = agg.finish(&[]);
        assert!(out.generator.saturated);
        assert!(out.generator.lag_p99_ms.unwrap() >= 49.0);

        let mut agg = Aggregator::new(None);
        agg.add(&rec(0, 0, 5, Outcome::Acknowledged));
        assert!(!agg.finish(&[]).generator.saturated);
    }

    #[test]
    fn step_rows_and_the_knee_where_failures_start() {
        let profile = StepProfile {
            initial_users: 2,
            step_users: 2,
            step_duration: Duration::from_secs(1),
            max_users: 6,
        };
        let mut agg = Aggregator::new(Some(profile));
        let mut seq = 0;
        // Steps 0 and 1 healthy with growing goodput; step 2 has a 500.
        for (step, n) in [(0u64, 10u64), (1, 20), (2, 20)] {
            for i in 0..n {
                let started = step * 1000 + i * (900 / n);
                agg.add(&rec(seq, started, 50, Outcome::Acknowledged));
                seq += 1;
            }
        }
        agg.add(&rec(seq, 2500, 50, Outcome::FailedStatus(500)));
        let out = agg.finish(&[]);
        assert_eq!(out.steps.len(), 3);
        assert_eq!(out.steps[1].users, 4);
        assert_eq!(out.steps[1].sent, 20);
        assert_eq!(out.steps[2].failed, 1);
        assert_eq!(out.knee_step, Some(2));
        assert!(out.steps[2].knee && !out.steps[1].knee);
        assert!(out.latency.note.starts_with("closed model"));
    }

    fn row(index: usize, users: u64, good: f64, p99: f64) -> StepRow {
        StepRow {
            index,
            users,
            start_s: index as f64,
            end_s: index as f64 + 1.0,
            sent: 10,
            acknowledged: 10,
            failed: 0,
            timed_out: 0,
            requests_per_s: good,
            acknowledged_per_s: good,
            p50_ms: Some(p99 / 2.0),
            p99_ms: Some(p99),
            knee: false,
        }
    }

    #[test]
    fn shed_latency_and_attempts_are_aggregated() {
        let mut agg = Aggregator::new(None);
        let mut shed = rec(0, 0, 3, Outcome::FailedStatus(503));
        shed.attempts = 3;
        shed.budget_denied = true;
        agg.add(&shed);
        let mut ok = rec(1, 0, 600, Outcome::Acknowledged);
        ok.replayed = true;
        agg.add(&ok);
        let out = agg.finish(&[]);
        assert!((out.latency.shed_p99.unwrap() - 3.0).abs() < 0.01);
        let want = AttemptCounts {
            total: 4,
            max: 3,
            budget_denied: 1,
            replayed: 1,
        };
        assert_eq!(out.attempts, want);
    }

    #[test]
    fn recovery_after_a_spike() {
        let row = |t: u64, ok: u64| SecondRow {
            t_s: t,
            acknowledged: ok,
            ..Default::default()
        };
        // 10/s before, collapse during the spike (10..20 s), back at 10/s from 23 s.
        let seconds: Vec<SecondRow> = (0..40)
            .map(|t| row(t, if (10..23).contains(&t) { 1 } else { 10 }))
            .collect();
        let (pre, recovery) = spike_recovery(&seconds, 10.0, 20.0);
        assert_eq!(pre, Some(10.0));
        assert_eq!(recovery, Some(3.0));
        let never: Vec<SecondRow> = (0..40)
            .map(|t| row(t, if t < 10 { 10 } else { 0 }))
            .collect();
        assert_eq!(spike_recovery(&never, 10.0, 20.0).1, None);
    }

    #[test]
    fn knee_when_p99_breaks_or_goodput_stalls() {
        let healthy = [row(0, 10, 10.0, 100.0), row(1, 20, 20.0, 120.0)];
        assert_eq!(find_knee(&healthy, 1.0), None);
        let p99_broke = [
            row(0, 10, 10.0, 100.0),
            row(1, 20, 20.0, 150.0),
            row(2, 30, 30.0, 250.0),
        ];
        assert_eq!(find_knee(&p99_broke, 1.0), Some(2));
        let stalled = [row(0, 10, 10.0, 100.0), row(1, 20, 10.2, 110.0)];
        assert_eq!(find_knee(&stalled, 1.0), Some(1));
    }
}
