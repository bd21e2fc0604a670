//! The charts' scales and ticks: y axes (linear with round steps, or logarithmic in
//! whole decades for latencies) and the shared time axis (seconds since the load started,
//! ticks at round times, labels in s, min:s or h:min by the run's length).

use super::format::{GIB, KIB, MIB, compact, fmt_ms, trim};

/// What an axis measures, which decides its ticks and their labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Plain counts or rates (requests/s, users): integer steps.
    Count,
    Ms,
    Bytes,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear { min: f64, max: f64 },
    Log { min: f64, max: f64 },
}

impl Scale {
    /// Position of `v` between the bottom (0) and the top (1), clamped.
    pub fn frac(&self, v: f64) -> f64 {
        let f = match *self {
            Scale::Linear { min, max } => (v - min) / (max - min),
            Scale::Log { min, max } => {
                (v.max(min).log10() - min.log10()) / (max.log10() - min.log10())
            }
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// A y axis: its scale, ticks (labelled, with grid lines) and minor grid lines.
#[derive(Debug, Clone)]
pub struct Axis {
    pub title: String,
    pub scale: Scale,
    pub ticks: Vec<(f64, String)>,
    pub minor: Vec<f64>,
}

fn nice_step(raw: f64, integer: bool) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let exp = raw.log10().floor();
    let base = 10f64.powf(exp);
    let f = raw / base;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    let step = nice * base;
    if integer { step.max(1.0).round() } else { step }
}

impl Axis {
    /// A linear axis from 0 to a round number at or above `max`, about five ticks.
    pub fn linear(title: &str, max: f64, unit: Unit) -> Axis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let (factor, suffix) = match unit {
            Unit::Bytes if max >= GIB => (GIB, " GiB"),
            Unit::Bytes if max >= MIB => (MIB, " MiB"),
            Unit::Bytes if max >= KIB => (KIB, " KiB"),
            Unit::Bytes => (1.0, " B"),
            Unit::Ms if max >= 2000.0 => (1000.0, " s"),
            Unit::Ms => (1.0, " ms"),
            Unit::Percent => (1.0, " %"),
            Unit::Count => (1.0, ""),
        };
        let scaled = max / factor;
        let step = nice_step(scaled / 5.0, unit == Unit::Count);
        let top_steps = (scaled / step - 1e-9).ceil().max(1.0) as usize;
        let ticks = (0..=top_steps)
            .map(|i| {
                let v = i as f64 * step;
                let label = match unit {
                    Unit::Count => compact(v),
                    _ => format!("{}{suffix}", trim(v, 2)),
                };
                (v * factor, label)
            })
            .collect();
        Axis {
            title: title.to_string(),
            scale: Scale::Linear {
                min: 0.0,
                max: top_steps as f64 * step * factor,
            },
            ticks,
            minor: Vec::new(),
        }
    }

    /// A logarithmic milliseconds axis spanning whole decades around `[min, max]`
    /// (at least one decade; values below 0.1 ms are drawn at 0.1 ms).
    pub fn log_ms(title: &str, min: f64, max: f64) -> Axis {
        let min = if min.is_finite() && min > 0.1 {
            min
        } else {
            0.1
        };
        let max = if max.is_finite() && max > min {
            max
        } else {
            min * 10.0
        };
        let lo = min.log10().floor() as i32;
        let hi = (max.log10().ceil() as i32).max(lo + 1);
        let mut ticks = Vec::new();
        let mut minor = Vec::new();
        for e in lo..=hi {
            let v = 10f64.powi(e);
            ticks.push((v, fmt_ms(v)));
            if e < hi {
                minor.push(2.0 * v);
                minor.push(5.0 * v);
            }
        }
        Axis {
            title: title.to_string(),
            scale: Scale::Log {
                min: 10f64.powi(lo),
                max: 10f64.powi(hi),
            },
            ticks,
            minor,
        }
    }
}

/// The shared x axis: seconds since the load started, with ticks at round times.
#[derive(Debug, Clone)]
pub struct TimeAxis {
    pub max: f64,
    pub title: String,
    pub ticks: Vec<(f64, String)>,
}

impl TimeAxis {
    pub fn new(max: f64) -> TimeAxis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        const STEPS: [f64; 22] = [
            0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0,
            1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0, 172800.0,
        ];
        let step = STEPS
            .iter()
            .copied()
            .find(|s| max / s <= 12.0)
            .unwrap_or_else(|| nice_step(max / 10.0, true));
        let (title, label): (&str, fn(f64) -> String) = if max <= 300.0 {
            ("seconds since load start", |t| trim(t, 1))
        } else if max <= 3.0 * 3600.0 {
            ("time since load start (min:s)", |t| {
                let t = t as u64;
                format!("{}:{:02}", t / 60, t % 60)
            })
        } else {
            ("time since load start (h:min)", |t| {
                let t = t as u64;
                format!("{}:{:02}", t / 3600, (t % 3600) / 60)
            })
        };
        let n = (max / step + 1e-9).floor() as usize;
        let ticks = (0..=n)
            .map(|i| i as f64 * step)
            .map(|t| (t, label(t)))
            .collect();
        TimeAxis {
            max,
            title: title.to_string(),
            ticks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round_and_cover_the_data() {
        let a = Axis::linear("x", 2.0 * GIB, Unit::Bytes);
        assert_eq!(a.ticks.last().unwrap().1, "2 GiB");
        let a = Axis::linear("x", 237.0, Unit::Count);
        assert!(a.ticks.last().unwrap().0 >= 237.0);
        assert!(a.ticks.len() <= 7);
        let a = Axis::log_ms("ms", 2.0, 30_000.0);
        assert_eq!(a.ticks.first().unwrap().1, "1 ms");
        assert_eq!(a.ticks.last().unwrap().1, "100 s");
        let t = TimeAxis::new(36_000.0);
        assert!(t.ticks.len() <= 13);
        assert_eq!(t.ticks[1].1, "1:00");
        assert_eq!(TimeAxis::new(60.0).ticks.len(), 13);
    }
}
