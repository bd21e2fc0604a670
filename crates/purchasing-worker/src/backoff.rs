//! The pause before each reconnect: exponential, capped, jittered.
//!
//! Why each part: **exponential** from [`FIRST`], so a broker restarting (≈ 6 s here) is
//! found again quickly while a broker down for long is not hammered; **capped** at
//! [`CAP`], so the worker is back within seconds of the broker; **jittered** ("equal
//! jitter": half the step fixed, half random), so a fleet of workers that lost the
//! same broker at the same instant do not reconnect in lockstep, each wave a thundering
//! herd of connection handshakes.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The first pause.
pub const FIRST: Duration = Duration::from_millis(100);
/// The longest pause.
pub const CAP: Duration = Duration::from_secs(5);

/// The schedule of pauses of one outage; [`Backoff::reset`] after a successful
/// connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The step of the next pause before jitter: doubles from [`FIRST`] up to [`CAP`].
    step: Duration,
    /// Seeded per process, so workers started together draw different jitter.
    random: RandomState,
    /// Counts draws, so each one hashes to a new number.
    draws: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            step: FIRST,
            random: RandomState::new(),
            draws: 0,
        }
    }
}

impl Backoff {
    /// The next pause: between half the step and the whole step.
    pub fn next_pause(&mut self) -> Duration {
        self.draws += 1;
        let fraction = self.random.hash_one(self.draws) as f64 / u64::MAX as f64;
        let pause = self.step.mul_f64(0.5 + 0.5 * fraction);
        self.step = (self.step * 2).min(CAP);
        pause
    }

    /// Back to the first step, after a connection that worked.
    pub fn reset(&mut self) {
        self.step = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_100_ms_to_5_s_with_half_of_each_step_random() {
        let mut backoff = Backoff::default();
        let steps = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
        for step in steps {
            let step = Duration::from_millis(step);
            let pause = backoff.next_pause();
            assert!(pause >= step / 2 && pause <= step, "{pause:?} for {step:?}");
        }
        backoff.reset();
        assert!(backoff.next_pause() <= FIRST);
    }

    #[test]
    fn two_schedules_draw_different_pauses() {
        let (mut a, mut b) = (Backoff::default(), Backoff::default());
        for _ in 0..6 {
            a.next_pause();
            b.next_pause();
        }
        let pauses = |x: &mut Backoff| (0..8).map(|_| x.next_pause()).collect::<Vec<_>>();
        assert_ne!(pauses(&mut a), pauses(&mut b));
    }
}
