//! How many orders a node can hold: what the process runs under — its memory limit, its
//! CPUs, what one order's allocation costs — and the admission limit derived from them.
//! One definition of the rule, used by the HTTP API (`--max-in-flight auto`) and by the
//! queue worker (its prefetch), which may not depend on each other.
//!
//! The limits are the ones that really apply to this process: a cgroup limit set on any
//! ancestor of its cgroup binds it too (this lab nests cgroups, and containers and VMs'
//! service managers do the same), so the smallest limit over the cgroup and its ancestors
//! wins; without one, the machine's. Reading is kept apart from parsing, so every rule is
//! unit-tested from strings (see the tests below and in `cgroup-info`, which reads the
//! cgroups) without a confined process.
//!
//! The formula, with `t_alloc` the CPU time to allocate and fill one order's string and
//! `delay` the order's sleep:
//!
//! ```text
//! N_mem = ⌊(0.8 · memory limit − baseline RSS) / alloc_chars⌋   orders whose memory fits
//! N_cpu = ⌊0.7 · cpus · (delay + t_alloc) / t_alloc⌋            orders the CPUs can serve
//! N     = max(1, min(N_mem, N_cpu, cap))
//! ```
//!
//! When `N_mem` is 0 — not even one order fits in the memory limit — the server refuses
//! to start ([`Sizing::nothing_fits`]): admitting one anyway would only move the crash
//! from start-up to the first order, when the kernel OOM-kills the process.
//!
//! `N_cpu` is 70 % ([`CPU_TARGET_UTILIZATION`]) of the concurrency at which the CPUs are
//! just busy: each order uses the CPU for `t_alloc` out of its `delay + t_alloc`. More orders in flight than that only queue
//! for the CPU while holding their memory, making every order slower (and the deadline
//! harder to meet) without finishing more of them per second.

// No unsafe code here (arithmetic on numbers read by cgroup-info); kept that way by the compiler.
#![forbid(unsafe_code)]

pub mod adaptive;

use std::path::Path;
use std::time::{Duration, Instant};

// The cgroup facts (which cgroups, where, what their limit files say) are defined once in
// `cgroup-info`, shared with the lab's confinement; re-exported here under their old names.
pub use cgroup_info::{
    CgroupDir, Cgroups, Limit, parse_v1_cpu_quota, parse_v1_memory_limit, parse_v2_cpu_max,
    parse_v2_memory_max,
};
use cgroup_info::{smallest, smallest_f64};

/// The share of the memory limit orders may fill. The rest is headroom for what the
/// formula does not count: the allocator's overhead and fragmentation, the page cache the
/// kernel charges to the cgroup for the orders file, the runtime's buffers growing under
/// load, and the kernel's lag in accounting. The OOM killer acts *at* the limit, so
/// aiming at it exactly would be aiming at the crash.
pub const MEMORY_SHARE: f64 = 0.8;

/// Upper bound of an automatic limit. When the work is tiny (`--alloc-chars 1000`) both
/// N_mem and N_cpu are enormous; past a thousand orders in flight, a limit protects
/// nothing and the blocking pool's threads (`--max-blocking-threads`) are the real bound.
pub const MAX_AUTO_IN_FLIGHT: usize = 1024;

/// Largest allocation timed at start-up. Big enough that page faults dominate (as they do
/// for the faithful 150 MB), small enough to cost a few tens of milliseconds and a
/// negligible share of any sensible memory limit. The time is scaled up linearly.
///
/// Above 32 MiB on purpose: glibc serves allocations above its mmap threshold with a
/// fresh mapping (page faults on every byte, like a real 150 MB order), and that
/// threshold grows after each free up to 32 MiB. A 32 MiB sample could therefore be
/// served a second time from already-faulted heap pages, and the fastest of the rounds
/// was then a fill without page faults: measured, the estimate varied 75–106 ms between
/// starts (and N between 3 and 5). 64 MiB is always a fresh mapping.
pub const CALIBRATION_MAX_BYTES: usize = 64 << 20;

/// The calibration keeps the median of a few runs: neither a run slowed by whatever else
/// ran at the same moment nor an unusually fast one decides N (measured: with the fastest
/// of 3, one start in eight sized N one higher than the others).
const CALIBRATION_ROUNDS: usize = 5;

/// Everything the automatic limit depends on. A plain value, so the formula is tested
/// with fixed numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct SizingInputs {
    /// The memory limit the process runs under, in bytes.
    pub memory_limit_bytes: u64,
    /// Resident memory before any order: what the process needs anyway.
    pub baseline_rss_bytes: u64,
    /// Bytes one order allocates and holds.
    pub alloc_chars: usize,
    /// CPUs the process may use (fractional under a CFS quota).
    pub cpus: f64,
    /// One order's sleep.
    pub delay: Duration,
    /// CPU time to allocate and fill one order's string (calibrated).
    pub alloc_time: Duration,
    /// Upper bound of the result.
    pub cap: usize,
}

/// The automatic limit and how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizing {
    pub inputs: SizingInputs,
    /// Orders whose memory fits (`usize::MAX` when one order needs none).
    pub n_mem: usize,
    /// Orders the CPUs can serve (`usize::MAX` when the allocation costs no measurable CPU).
    pub n_cpu: usize,
    /// The limit: `max(1, min(n_mem, n_cpu, cap))`.
    pub max_in_flight: usize,
}

impl Sizing {
    /// When not one order fits in the memory limit: why, in one line that names the
    /// limit, the need and what to do. `None` when at least one fits.
    pub fn nothing_fits(&self) -> Option<String> {
        (self.n_mem == 0).then(|| {
            let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
            let inputs = &self.inputs;
            let usable =
                MEMORY_SHARE * inputs.memory_limit_bytes as f64 - inputs.baseline_rss_bytes as f64;
            format!(
                "not one order fits in memory: the limit is {:.0} MiB, of which {:.0}% minus \
                 the server's own {:.0} MiB leaves {:.0} MiB, and one order holds {:.0} MiB \
                 (--alloc-chars {}); raise the memory limit or lower --alloc-chars",
                mib(inputs.memory_limit_bytes as f64),
                MEMORY_SHARE * 100.0,
                mib(inputs.baseline_rss_bytes as f64),
                mib(usable.max(0.0)),
                mib(inputs.alloc_chars as f64),
                inputs.alloc_chars,
            )
        })
    }
}

/// Applies the formula of the module documentation.
/// The share of the CPUs the admitted orders are sized to keep busy. At 100 % the orders
/// queue for the CPU (each admitted order gets slower as the load rises) and the CPU
/// quota throttles the whole process, including the thread that answers 503s and
/// `/health`; at 70 % of the *calibrated* cost there is headroom for both (the real cost
/// of an order under load — freeing, syncing, HTTP — is higher than the calibration's
/// bare fill, so the actual use ends up near 80–90 %). Measured in the emulated VM (1 CPU,
/// 2 GiB, faithful workload, 40 arrivals/s): N = 7 gave an admitted p99 of 1.6 s,
/// N = 5 1.05 s and N = 4 0.72 s, against 0.6 s unloaded, for 9 % and 21 % less goodput.
pub const CPU_TARGET_UTILIZATION: f64 = 0.7;

pub fn size(inputs: SizingInputs) -> Sizing {
    let usable = MEMORY_SHARE * inputs.memory_limit_bytes as f64 - inputs.baseline_rss_bytes as f64;
    let n_mem = if inputs.alloc_chars == 0 {
        usize::MAX
    } else {
        // `as` saturates: a negative room gives 0, an enormous one usize::MAX.
        (usable.max(0.0) / inputs.alloc_chars as f64).floor() as usize
    };
    let t_alloc = inputs.alloc_time.as_secs_f64();
    let n_cpu = if t_alloc <= 0.0 {
        usize::MAX
    } else {
        let busy = inputs.cpus * (inputs.delay.as_secs_f64() + t_alloc) / t_alloc;
        (CPU_TARGET_UTILIZATION * busy).floor() as usize
    };
    let max_in_flight = n_mem.min(n_cpu).min(inputs.cap).max(1);
    Sizing {
        inputs,
        n_mem,
        n_cpu,
        max_in_flight,
    }
}

/// Times allocating and filling one order's string (or the first
/// [`CALIBRATION_MAX_BYTES`] of it, scaled up linearly), the way the store does it:
/// a fresh fallible allocation with every byte written, then freed.
pub fn calibrate_alloc_time(alloc_chars: usize) -> Duration {
    let sample = alloc_chars.min(CALIBRATION_MAX_BYTES);
    if sample == 0 {
        return Duration::ZERO;
    }
    let mut rounds: Vec<Duration> = (0..CALIBRATION_ROUNDS)
        .filter_map(|_| {
            let started = Instant::now();
            let mut bytes: Vec<u8> = Vec::new();
            bytes.try_reserve_exact(sample).ok()?;
            bytes.resize(sample, b'a');
            std::hint::black_box(&bytes);
            drop(bytes);
            Some(started.elapsed())
        })
        .collect();
    rounds.sort();
    let median = rounds
        .get(rounds.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO);
    median.mul_f64(alloc_chars as f64 / sample as f64)
}

/// The limits of the running process, read from /proc and the cgroup file system.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub memory: Limit<u64>,
    pub cpus: Limit<f64>,
}

impl Environment {
    /// Reads this process's limits. Never fails: what cannot be read is not a limit, and
    /// the machine's own size is the fallback.
    pub fn discover() -> Self {
        let read = |path: &Path| std::fs::read_to_string(path).ok();
        let mountinfo = read(Path::new("/proc/self/mountinfo")).unwrap_or_default();
        let membership = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
        let cgroups = Cgroups::locate(&mountinfo, &membership);

        let physical = read(Path::new("/proc/meminfo"))
            .as_deref()
            .and_then(parse_mem_total)
            .map(|bytes| Limit {
                value: bytes,
                source: "physical memory (MemTotal)".to_string(),
            });
        let memory =
            smallest(cgroups.memory_limit(&read).into_iter().chain(physical)).unwrap_or(Limit {
                value: u64::MAX,
                source: "unknown (no cgroup limit, /proc/meminfo unreadable)".to_string(),
            });

        let parallelism = std::thread::available_parallelism().map_or(1, usize::from);
        let available = Limit {
            value: parallelism as f64,
            source: "available parallelism".to_string(),
        };
        let cpus = smallest_f64(cgroups.cpu_limit(&read).into_iter().chain([available]))
            .expect("available parallelism is always a candidate");
        Self { memory, cpus }
    }
}

/// The process's resident memory now (`VmRSS`), if /proc can tell.
pub fn resident_memory_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(|status| kib_field(status, "VmRSS:"))
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    kib_field(meminfo, "MemTotal:")
}

/// A `Name:   1234 kB` line of /proc/meminfo or /proc/PID/status, in bytes.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    let value = text.lines().find_map(|line| line.strip_prefix(field))?;
    let kib: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn faithful_at(memory_limit_bytes: u64, cpus: f64) -> SizingInputs {
        SizingInputs {
            memory_limit_bytes,
            baseline_rss_bytes: 10_000_000,
            alloc_chars: 150_000_000,
            cpus,
            delay: Duration::from_millis(500),
            alloc_time: Duration::from_millis(80),
            cap: MAX_AUTO_IN_FLIGHT,
        }
    }

    #[test]
    fn the_emulated_vm_is_bound_by_the_cpu() {
        // 2 GiB: (0.8 · 2147483648 − 10 MB) / 150 MB = 11.38 → 11 orders fit.
        // 1 CPU: 1 · (500 + 80) / 80 = 7.25 orders keep it busy; at 70 %: ⌊5.075⌋ = 5.
        let sizing = size(faithful_at(2 * GIB, 1.0));
        assert_eq!(sizing.n_mem, 11);
        assert_eq!(sizing.n_cpu, 5);
        assert_eq!(sizing.max_in_flight, 5);
    }

    #[test]
    fn a_big_machine_with_little_memory_is_bound_by_memory() {
        let sizing = size(faithful_at(GIB, 16.0));
        // (858993459 − 10000000) / 150000000 = 5.66 → 5
        assert_eq!(sizing.n_mem, 5);
        assert_eq!(sizing.n_cpu, 81); // ⌊0.7 · 16 · 7.25⌋
        assert_eq!(sizing.max_in_flight, 5);
        // A fractional CPU quota scales N_cpu: ⌊0.7 · 0.5 · 7.25⌋ = 2.
        assert_eq!(size(faithful_at(64 * GIB, 0.5)).max_in_flight, 2);
    }

    #[test]
    fn never_below_one_and_never_above_the_cap() {
        // Not even one order fits: the sizing says so, and the server refuses to start.
        let sizing = size(faithful_at(140 << 20, 1.0));
        assert_eq!(sizing.n_mem, 0);
        let why = sizing.nothing_fits().unwrap();
        assert!(
            why.contains("limit is 140 MiB") && why.contains("one order holds 143 MiB"),
            "{why}"
        );
        assert!(why.contains("--alloc-chars"), "{why}");
        assert_eq!(size(faithful_at(2 * GIB, 1.0)).nothing_fits(), None);

        // A tiny workload: memory and CPU allow millions, the cap decides.
        let tiny = SizingInputs {
            alloc_chars: 1000,
            alloc_time: Duration::from_nanos(300),
            delay: Duration::from_millis(5),
            cap: 512,
            ..faithful_at(2 * GIB, 1.0)
        };
        let sizing = size(tiny.clone());
        assert!(
            sizing.n_mem > 1_000_000 && sizing.n_cpu > 10_000,
            "{sizing:?}"
        );
        assert_eq!(sizing.max_in_flight, 512);

        // No allocation at all, or one too fast to time: no bound from either.
        let sizing = size(SizingInputs {
            alloc_chars: 0,
            alloc_time: Duration::ZERO,
            ..tiny
        });
        assert_eq!((sizing.n_mem, sizing.n_cpu), (usize::MAX, usize::MAX));
        assert_eq!(sizing.max_in_flight, 512);
    }

    #[test]
    fn calibration_scales_linearly_and_handles_zero() {
        assert_eq!(calibrate_alloc_time(0), Duration::ZERO);
        let small = calibrate_alloc_time(4096);
        assert!(small < Duration::from_millis(50), "{small:?}");
        // 4 × the sample size is timed on the sample and scaled, so it is not measured
        // as more than 32 MiB.
        let big = calibrate_alloc_time(4 * CALIBRATION_MAX_BYTES);
        assert!(big > Duration::ZERO);
    }

    #[test]
    fn meminfo_values() {
        assert_eq!(
            parse_mem_total("MemTotal:       24684092 kB\nMemFree: 1 kB\n"),
            Some(24_684_092 * 1024)
        );
        assert_eq!(parse_mem_total("nothing"), None);
    }

    #[test]
    fn discovery_on_this_machine_finds_something_sane() {
        let env = Environment::discover();
        assert!(env.memory.value > 0, "{env:?}");
        assert!(env.cpus.value > 0.0, "{env:?}");
        assert!(resident_memory_bytes().unwrap() > 0);
    }
}
