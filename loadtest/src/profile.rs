//! Load shapes and their schedules: pure functions of time, unit-tested here.
//!
//! * Closed model ([`StepProfile`]): a number of virtual users, each sending its next
//!   request as soon as the previous one ends (plus think time). The vocabulary is Visual
//!   Studio's `LoadTestStepLoadProfile`, which the original used: initial users, step
//!   users, step duration, max users.
//! * Open model ([`RateProfile`]): requests arrive at a rate that does not depend on how
//!   fast the server answers, with an optional spike. Each arrival has an absolute
//!   scheduled time ([`ArrivalSchedule`]), so latency can be measured from when a request
//!   *should* have been sent — a stalled server cannot hide its queue (no coordinated
//!   omission).

use std::time::Duration;

/// A stepped number of virtual users: `initial`, then `+step` every `step_duration`, up
/// to `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepProfile {
    pub initial_users: u64,
    pub step_users: u64,
    pub step_duration: Duration,
    pub max_users: u64,
}

impl StepProfile {
    /// The original's "Stepped" scenario (LoadTest.loadtest): 20 users, +20 every 5 s, up
    /// to 500, no think time.
    pub const BLOG: StepProfile = StepProfile {
        initial_users: 20,
        step_users: 20,
        step_duration: Duration::from_secs(5),
        max_users: 500,
    };

    /// The step that is running `elapsed` after the start (0-based).
    pub fn step_at(&self, elapsed: Duration) -> u64 {
        if self.step_duration.is_zero() {
            return 0;
        }
        (elapsed.as_nanos() / self.step_duration.as_nanos()) as u64
    }

    /// Users during step `step`.
    pub fn users_in_step(&self, step: u64) -> u64 {
        self.initial_users
            .saturating_add(self.step_users.saturating_mul(step))
            .min(self.max_users)
    }

    /// Users that should be active `elapsed` after the start.
    pub fn users_at(&self, elapsed: Duration) -> u64 {
        self.users_in_step(self.step_at(elapsed))
    }

    /// When step `step` begins, measured from the start.
    pub fn step_start(&self, step: u64) -> Duration {
        self.step_duration
            .saturating_mul(step.min(u32::MAX as u64) as u32)
    }

    /// The first step at which `max_users` is reached.
    pub fn steps_to_max(&self) -> u64 {
        if self.initial_users >= self.max_users || self.step_users == 0 {
            0
        } else {
            (self.max_users - self.initial_users).div_ceil(self.step_users)
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} users, +{} every {}, up to {}",
            self.initial_users,
            self.step_users,
            humantime::format_duration(self.step_duration),
            self.max_users
        )
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.initial_users == 0 {
            return Err("--users must be at least 1".into());
        }
        if self.max_users < self.initial_users {
            return Err("--max-users must be at least --users".into());
        }
        if self.step_users > 0 && self.step_duration.is_zero() {
            return Err("--step-seconds must be greater than 0 when --step-users is set".into());
        }
        Ok(())
    }
}

/// A burst of extra load inside an open-model run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    /// Arrivals per second during the spike (replaces the base rate).
    pub rate: f64,
    /// When the spike begins, from the start of the run.
    pub start: Duration,
    pub duration: Duration,
}

/// Requests arriving at `base_rate` per second for `duration`, with an optional spike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateProfile {
    pub base_rate: f64,
    pub spike: Option<Spike>,
    pub duration: Duration,
}

impl RateProfile {
    /// Offered arrivals per second at `t`.
    pub fn rate_at(&self, t: Duration) -> f64 {
        match self.spike {
            Some(s) if t >= s.start && t < s.start + s.duration => s.rate,
            _ => self.base_rate,
        }
    }

    /// The scheduled send times, in order.
    pub fn arrivals(&self) -> ArrivalSchedule {
        ArrivalSchedule {
            profile: *self,
            t: 0.0,
            first: true,
        }
    }

    /// How many arrivals the whole run offers (for progress and sanity checks).
    pub fn expected_arrivals(&self) -> f64 {
        let total = self.duration.as_secs_f64();
        let base = self.base_rate * total;
        match self.spike {
            Some(s) => {
                let start = s.start.as_secs_f64().min(total);
                let end = (s.start + s.duration).as_secs_f64().min(total);
                base + (s.rate - self.base_rate) * (end - start).max(0.0)
            }
            None => base,
        }
    }

    pub fn describe(&self) -> String {
        let mut text = format!(
            "{}/s for {}",
            fmt_rate(self.base_rate),
            humantime::format_duration(self.duration)
        );
        if let Some(s) = self.spike {
            text.push_str(&format!(
                ", spike to {}/s at {} for {}",
                fmt_rate(s.rate),
                humantime::format_duration(s.start),
                humantime::format_duration(s.duration)
            ));
        }
        text
    }

    pub fn validate(&self) -> Result<(), String> {
        let finite = |r: f64| r.is_finite() && r >= 0.0;
        if !finite(self.base_rate) {
            return Err("--rate must be a number ≥ 0".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be greater than 0 for --profile rate".into());
        }
        match self.spike {
            Some(s) if !finite(s.rate) => Err("--spike-rate must be a number ≥ 0".into()),
            _ if self.expected_arrivals() < 1.0 => {
                Err("this rate profile offers no request at all; raise --rate or --duration".into())
            }
            _ => Ok(()),
        }
    }
}

fn fmt_rate(rate: f64) -> String {
    if rate.fract() == 0.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.2}")
    }
}

/// Absolute arrival times of a [`RateProfile`]: arrival *k* is at the time where the
/// integral of the rate reaches *k* (the first at 0). Computed, not accumulated from
/// sleeps, so timer lateness never shifts later arrivals.
#[derive(Debug, Clone)]
pub struct ArrivalSchedule {
    profile: RateProfile,
    /// Seconds since the start of the last arrival handed out.
    t: f64,
    first: bool,
}

impl ArrivalSchedule {
    /// Piecewise-constant segments: the end of the segment containing `t`.
    fn segment_end(&self, t: f64) -> f64 {
        let end = self.profile.duration.as_secs_f64();
        match self.profile.spike {
            Some(s) => {
                let (start, stop) = (s.start.as_secs_f64(), (s.start + s.duration).as_secs_f64());
                if t < start {
                    start.min(end)
                } else if t < stop {
                    stop.min(end)
                } else {
                    end
                }
            }
            None => end,
        }
    }
}

impl Iterator for ArrivalSchedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let end = self.profile.duration.as_secs_f64();
        // One arrival's worth of the rate integral to cover from `t`; the very first
        // arrival needs none: it is at the first instant with a positive rate.
        let mut need = if std::mem::take(&mut self.first) {
            0.0
        } else {
            1.0
        };
        let mut t = self.t;
        loop {
            if t >= end {
                return None;
            }
            let rate = self.profile.rate_at(Duration::from_secs_f64(t));
            let seg_end = self.segment_end(t);
            let available = (seg_end - t) * rate;
            if rate > 0.0 && need <= available {
                t += need / rate;
                break;
            }
            need -= available;
            if seg_end <= t {
                return None; // defensive: no progress possible
            }
            t = seg_end;
        }
        if t >= end {
            return None;
        }
        self.t = t;
        Some(Duration::from_secs_f64(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn blog_profile_steps_like_the_original() {
        let p = StepProfile::BLOG;
        assert_eq!(p.users_at(secs(0.0)), 20);
        assert_eq!(p.users_at(secs(4.999)), 20);
        assert_eq!(p.users_at(secs(5.0)), 40);
        assert_eq!(p.users_at(secs(47.0)), 200);
        assert_eq!(p.steps_to_max(), 24);
        assert_eq!(p.users_in_step(24), 500);
        assert_eq!(p.users_at(secs(600.0)), 500, "capped at max users");
        assert_eq!(p.step_start(3), secs(15.0));
        assert_eq!(p.describe(), "20 users, +20 every 5s, up to 500");
        assert!(p.validate().is_ok());
    }

    #[test]
    fn uneven_last_step_and_flat_profiles() {
        let p = StepProfile {
            initial_users: 10,
            step_users: 7,
            step_duration: secs(1.0),
            max_users: 20,
        };
        assert_eq!(p.users_in_step(1), 17);
        assert_eq!(p.users_in_step(2), 20);
        assert_eq!(p.steps_to_max(), 2);
        let flat = StepProfile { step_users: 0, ..p };
        assert_eq!(flat.users_at(secs(100.0)), 10);
        assert_eq!(flat.steps_to_max(), 0);
    }

    #[test]
    fn invalid_step_profiles_are_rejected() {
        let p = StepProfile::BLOG;
        assert!(
            StepProfile {
                initial_users: 0,
                ..p
            }
            .validate()
            .is_err()
        );
        assert!(StepProfile { max_users: 10, ..p }.validate().is_err());
        assert!(
            StepProfile {
                step_duration: Duration::ZERO,
                ..p
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn constant_rate_arrivals_are_evenly_spaced_on_absolute_times() {
        let p = RateProfile {
            base_rate: 4.0,
            spike: None,
            duration: secs(2.0),
        };
        let times: Vec<f64> = p.arrivals().map(|d| d.as_secs_f64()).collect();
        assert_eq!(times.len(), 8);
        for (i, t) in times.iter().enumerate() {
            assert!((t - i as f64 * 0.25).abs() < 1e-9, "{times:?}");
        }
        assert!((p.expected_arrivals() - 8.0).abs() < 1e-9);
    }

    #[test]
    fn a_spike_changes_the_rate_inside_its_window_only() {
        let p = RateProfile {
            base_rate: 2.0,
            spike: Some(Spike {
                rate: 10.0,
                start: secs(1.0),
                duration: secs(1.0),
            }),
            duration: secs(3.0),
        };
        let times: Vec<f64> = p.arrivals().map(|d| d.as_secs_f64()).collect();
        let in_window = |a: f64, b: f64| times.iter().filter(|&&t| t >= a && t < b).count();
        assert_eq!(in_window(0.0, 1.0), 2);
        assert_eq!(in_window(1.0, 2.0), 10);
        assert_eq!(in_window(2.0, 3.0), 2);
        assert!((p.expected_arrivals() - 14.0).abs() < 1e-9);
        assert_eq!(p.rate_at(secs(1.5)), 10.0);
        assert_eq!(p.rate_at(secs(2.0)), 2.0);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    }

    #[test]
    fn zero_base_rate_with_a_spike_starts_at_the_spike() {
        let p = RateProfile {
            base_rate: 0.0,
            spike: Some(Spike {
                rate: 5.0,
                start: secs(2.0),
                duration: secs(1.0),
            }),
            duration: secs(5.0),
        };
        let times: Vec<f64> = p.arrivals().map(|d| d.as_secs_f64()).collect();
        assert_eq!(times.len(), 5, "{times:?}");
        assert!(times[0] >= 2.0 && times[4] < 3.0, "{times:?}");
    }

    #[test]
    fn fractional_rates_and_validation() {
        let p = RateProfile {
            base_rate: 0.5,
            spike: None,
            duration: secs(10.0),
        };
        assert_eq!(p.arrivals().count(), 5);
        assert!(
            RateProfile {
                base_rate: 0.0,
                ..p
            }
            .validate()
            .is_err()
        );
        assert!(
            RateProfile {
                base_rate: f64::NAN,
                ..p
            }
            .validate()
            .is_err()
        );
        assert!(
            RateProfile {
                duration: Duration::ZERO,
                ..p
            }
            .validate()
            .is_err()
        );
        assert_eq!(p.describe(), "0.50/s for 10s");
    }
}
