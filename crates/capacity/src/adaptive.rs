//! The adaptive admission limit: how many orders a node lets in at once, moved at run time
//! by what the node measures, instead of fixed by one timing at start-up.
//!
//! # What it measures: the queue in front of the CPU
//!
//! An order's CPU work is its fill (allocating and writing 150 MB); its 500 ms sleep costs
//! none. The store lets only ⌈CPUs⌉ orders fill at once (the fill gate), so when more
//! orders want the CPU than it has, they wait *at the gate*, and that wait is the node's
//! queueing delay, measured directly — no baseline to estimate, no "unloaded latency" to
//! re-sample: an unloaded node's gate wait is zero by construction.
//!
//! * Gate wait ≈ 0 while orders are turned away: the CPU has room → admit more.
//! * Gate wait of a fill or two: an order is always waiting, so the CPU is always
//!   filling — saturated — while each order's latency grows by only that wait (≈ 0.16 s
//!   on ≈ 0.6 s, 1.3× unloaded, inside a 2× budget). This is the operating point: the
//!   **target is two fill times**, measured as a moving average, so it follows a slower
//!   machine or a noisy neighbour. (One fill was tried first: the limit then dips below
//!   the point where the CPU is just busy whenever a wait jitters above the target, and
//!   the simulated node below reached 83 % of its CPU bound; with two, 100 %.)
//! * Longer waits: more orders than the CPU can serve; they only add latency (and hold
//!   memory) → admit fewer.
//!
//! # The rule (AIMD on a delay target)
//!
//! Taken from Breakwater (Cho et al., OSDI 2020: credits grow while the measured queueing
//! delay is under a target and shrink multiplicatively in proportion to the overshoot) and
//! TCP Vegas / Netflix's concurrency-limits (grow only while the limit is what holds
//! requests back; back off on rising delay rather than on loss), scaled to orders that
//! take half a second:
//!
//! * after each fill, if the wait was at most half the target and the limit turned
//!   requests away (or made them queue) since the last observation: limit + 1; if it was
//!   under the target: limit + 1/limit (about +1 per round of orders);
//! * if the wait exceeded the target: limit × max(½, 1 − ½ · (wait − target) / wait), at
//!   most once per `decrease_spacing` (about one order's time): the orders that queued
//!   before a decrease report the same congestion, and counting it again would cut the
//!   limit to the floor;
//! * never below 1, never above `cap` — the memory bound (`n_mem` of [`crate::size`]),
//!   which is a hard limit: the kernel OOM-kills the process past it, whatever the CPU
//!   says.
//!
//! Growing only under demand keeps an idle node's limit where it was (no creeping to the
//! cap while nothing tests it), and a limit cut during a burst or a CPU hog grows back
//! within a few orders once waits are short again.
//!
//! A pure state machine over explicit instants: the tests drive it with simulated traces.

use std::time::{Duration, Instant};

/// Gain of the moving averages of the fill time and of the gate wait (as TCP's smoothed
/// RTT, RFC 6298: 1/8).
const GAIN: f64 = 0.125;

/// The smallest target wait: for a tiny workload (microsecond fills) a target of one fill
/// would read scheduler noise as congestion.
pub const MIN_TARGET: Duration = Duration::from_millis(2);

/// How many fill times of gate wait the limit aims at: enough that an order is always
/// waiting for the CPU (so it never idles between fills) even as fill times jitter, while
/// adding only two fills to an order's latency (see the module docs).
pub const TARGET_FILLS: f64 = 2.0;

/// The smallest multiplicative decrease: one observation halves the limit at most.
const MAX_DECREASE: f64 = 0.5;

/// What the limit did on an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Grew,
    Shrank,
    Held,
}

/// The controller's state. See the module docs for the rule.
#[derive(Debug, Clone)]
pub struct AdaptiveLimit {
    /// Fractional, so additive increases of 1/limit accumulate.
    limit: f64,
    /// The memory bound: never exceeded.
    cap: usize,
    /// Moving average of how long a fill takes: the target wait.
    fill_s: f64,
    /// Moving average of the gate wait, for metrics.
    wait_s: f64,
    /// The least time between two decreases.
    decrease_spacing: Duration,
    last_decrease: Option<Instant>,
}

impl AdaptiveLimit {
    /// Starts at `initial` (clamped to 1..=`cap`), with `fill_estimate` as the first
    /// estimate of a fill's time (the start-up calibration) and at most one decrease per
    /// `decrease_spacing` (about one order's time).
    pub fn new(
        initial: usize,
        cap: usize,
        fill_estimate: Duration,
        decrease_spacing: Duration,
    ) -> Self {
        let cap = cap.max(1);
        Self {
            limit: initial.clamp(1, cap) as f64,
            cap,
            fill_s: fill_estimate.as_secs_f64(),
            wait_s: 0.0,
            decrease_spacing,
            last_decrease: None,
        }
    }

    /// The limit now: how many orders may be in progress.
    pub fn limit(&self) -> usize {
        (self.limit.floor() as usize).clamp(1, self.cap)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The gate wait the limit aims at: [`TARGET_FILLS`] moving-average fill times, at
    /// least [`MIN_TARGET`].
    pub fn target(&self) -> Duration {
        Duration::from_secs_f64(self.fill_s * TARGET_FILLS).max(MIN_TARGET)
    }

    /// Moving average of the gate wait.
    pub fn smoothed_wait(&self) -> Duration {
        Duration::from_secs_f64(self.wait_s)
    }

    /// Moving average of a fill's time.
    pub fn smoothed_fill(&self) -> Duration {
        Duration::from_secs_f64(self.fill_s)
    }

    /// One order's fill ended at `now`: it waited `waited` for its turn and filled for
    /// `filled`. `demand`: whether the limit turned a request away or made one queue since
    /// the previous observation.
    pub fn observe(
        &mut self,
        waited: Duration,
        filled: Duration,
        demand: bool,
        now: Instant,
    ) -> Change {
        let wait = waited.as_secs_f64();
        self.fill_s += GAIN * (filled.as_secs_f64() - self.fill_s);
        self.wait_s += GAIN * (wait - self.wait_s);
        let target = self.target().as_secs_f64();
        let before = self.limit();
        if wait > target {
            let spaced = self
                .last_decrease
                .is_none_or(|at| now.saturating_duration_since(at) >= self.decrease_spacing);
            if spaced {
                let factor = (1.0 - 0.5 * (wait - target) / wait).max(MAX_DECREASE);
                self.limit = (self.limit * factor).max(1.0);
                self.last_decrease = Some(now);
            }
        } else if demand {
            let step = if wait <= target / 2.0 {
                1.0
            } else {
                1.0 / self.limit
            };
            self.limit = (self.limit + step).min(self.cap as f64);
        }
        match self.limit().cmp(&before) {
            std::cmp::Ordering::Greater => Change::Grew,
            std::cmp::Ordering::Less => Change::Shrank,
            std::cmp::Ordering::Equal => Change::Held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILL: Duration = Duration::from_millis(80);
    const SLEEP: Duration = Duration::from_millis(500);

    /// A node with one CPU: fills run one at a time, each taking `fill`, then sleep.
    /// Orders arrive faster than it can serve (an overload), so the limit is always what
    /// holds requests back. Returns the limit after each fill, and the completions per
    /// second over the last half of the run.
    fn simulate(
        limit: &mut AdaptiveLimit,
        fill: impl Fn(f64) -> Duration,
        seconds: f64,
    ) -> (Vec<(f64, usize)>, f64) {
        let start = Instant::now();
        let mut t = 0.0_f64; // simulated seconds
        let mut cpu_free_at = 0.0_f64;
        // Orders in progress: when each reaches the gate; a free slot admits a new order
        // at once (overload: someone is always waiting).
        let mut at_gate: Vec<f64> = vec![0.0; limit.limit()];
        let mut sleeping: Vec<f64> = Vec::new(); // when each finishes
        let mut history = Vec::new();
        let mut done_late = 0;
        while t < seconds {
            // The next event: the CPU takes the earliest waiting order, or a sleeper ends.
            at_gate.sort_by(f64::total_cmp);
            let next_fill = at_gate.first().map(|&arrived| arrived.max(cpu_free_at));
            let next_wake = sleeping.iter().copied().fold(f64::INFINITY, f64::min);
            match next_fill {
                Some(begin) if begin <= next_wake => {
                    let arrived = at_gate.remove(0);
                    let took = fill(begin).as_secs_f64();
                    cpu_free_at = begin + took;
                    t = cpu_free_at;
                    sleeping.push(t + SLEEP.as_secs_f64());
                    let now = start + Duration::from_secs_f64(t);
                    limit.observe(
                        Duration::from_secs_f64(begin - arrived),
                        Duration::from_secs_f64(took),
                        true,
                        now,
                    );
                    history.push((t, limit.limit()));
                }
                _ => {
                    t = next_wake;
                    sleeping.retain(|&w| w != next_wake);
                    if t > seconds / 2.0 {
                        done_late += 1;
                    }
                }
            }
            // Admit up to the limit (the controller may have shrunk it: no new ones then).
            while at_gate.len() + sleeping.len() < limit.limit() {
                at_gate.push(t);
            }
        }
        (history, done_late as f64 / (seconds / 2.0))
    }

    fn fresh(initial: usize, cap: usize) -> AdaptiveLimit {
        AdaptiveLimit::new(initial, cap, FILL, SLEEP + FILL)
    }

    #[test]
    fn from_a_low_start_it_converges_near_the_cpu_bound_and_stays_there() {
        // One CPU, 80 ms fills, 500 ms sleeps: the CPU is just busy at (500 + 80) / 80 ≈
        // 7.25 orders; a little queue on top keeps it busy. Memory allows 11.
        let mut limit = fresh(2, 11);
        let (history, goodput) = simulate(&mut limit, |_| FILL, 60.0);
        let settled: Vec<usize> = history
            .iter()
            .filter(|(t, _)| *t > 30.0)
            .map(|&(_, n)| n)
            .collect();
        let (low, high) = (
            *settled.iter().min().unwrap(),
            *settled.iter().max().unwrap(),
        );
        assert!((7..=11).contains(&low) && high <= 11, "{low}..{high}");
        // The CPU bound is 1 / 80 ms = 12.5 orders/s.
        assert!(goodput >= 0.95 * 12.5, "goodput {goodput}/s");
    }

    #[test]
    fn never_above_the_memory_cap_even_with_an_idle_cpu() {
        // Memory allows only 4: the CPU would take 7.
        let mut limit = fresh(4, 4);
        let (history, _) = simulate(&mut limit, |_| FILL, 20.0);
        assert!(history.iter().all(|&(_, n)| n <= 4), "{history:?}");
        assert_eq!(history.last().unwrap().1, 4);
        // And a start above the cap is clamped.
        assert_eq!(fresh(50, 4).limit(), 4);
    }

    #[test]
    fn a_slower_cpu_lowers_the_limit_and_recovers_when_it_ends() {
        // From 20 s to 40 s a neighbour halves the CPU: fills take twice as long.
        let mut limit = fresh(8, 11);
        let slow = |t: f64| {
            if (20.0..40.0).contains(&t) {
                FILL * 2
            } else {
                FILL
            }
        };
        let (history, _) = simulate(&mut limit, slow, 60.0);
        // The limit's average over a window of simulated time.
        let mean = |from: f64, to: f64| {
            let window: Vec<f64> = history
                .iter()
                .filter(|(t, _)| (from..to).contains(t))
                .map(|&(_, n)| n as f64)
                .collect();
            window.iter().sum::<f64>() / window.len() as f64
        };
        let before = mean(10.0, 20.0);
        let during = mean(30.0, 40.0);
        let after = mean(50.0, 60.0);
        assert!(during < before - 1.0, "before {before}, during {during}");
        assert!(
            after > during + 1.0 && after >= before - 1.0,
            "before {before}, during {during}, after {after}"
        );
    }

    #[test]
    fn a_burst_of_long_waits_backs_off_once_per_spacing_and_recovers() {
        let mut limit = fresh(8, 11);
        let t0 = Instant::now();
        // Ten orders report a 1 s wait within 100 ms (one congestion episode): one
        // decrease, not ten.
        for i in 0..10 {
            limit.observe(
                Duration::from_secs(1),
                FILL,
                true,
                t0 + Duration::from_millis(10 * i),
            );
        }
        let backed_off = limit.limit();
        assert!((4..8).contains(&backed_off), "{backed_off}");
        // Then short waits under demand: back up within a handful of orders.
        for i in 0..6 {
            limit.observe(
                Duration::ZERO,
                FILL,
                true,
                t0 + Duration::from_secs(1) + FILL * i,
            );
        }
        assert!(limit.limit() >= 8, "{}", limit.limit());
    }

    #[test]
    fn without_demand_it_does_not_grow() {
        let mut limit = fresh(3, 11);
        let t0 = Instant::now();
        for i in 0..100 {
            let change = limit.observe(Duration::ZERO, FILL, false, t0 + FILL * i);
            assert_eq!(change, Change::Held);
        }
        assert_eq!(limit.limit(), 3);
    }

    #[test]
    fn the_target_follows_the_fill_time_with_a_floor() {
        let mut limit = fresh(3, 11);
        assert_eq!(limit.target(), FILL * 2);
        let t0 = Instant::now();
        for i in 0..60 {
            limit.observe(Duration::ZERO, FILL * 2, false, t0 + FILL * i);
        }
        let target = limit.target();
        assert!(target > FILL * 38 / 10 && target <= FILL * 4, "{target:?}");
        let tiny = AdaptiveLimit::new(3, 11, Duration::from_micros(3), Duration::ZERO);
        assert_eq!(tiny.target(), MIN_TARGET);
    }
}
