//! What the process runs under — its memory limit, its CPUs, what one order's allocation
//! costs — and the admission limit `--max-in-flight auto` derives from them.
//!
//! The limits are the ones that really apply to this process: a cgroup limit set on any
//! ancestor of its cgroup binds it too (this lab nests cgroups, and containers and VMs'
//! service managers do the same), so the smallest limit over the cgroup and its ancestors
//! wins; without one, the machine's. Reading is kept apart from parsing, so every rule is
//! unit-tested from strings (see the tests below) without a confined process.
//!
//! The formula, with `t_alloc` the CPU time to allocate and fill one order's string and
//! `delay` the order's sleep:
//!
//! ```text
//! N_mem = ⌊(0.8 · memory limit − baseline RSS) / alloc_chars⌋   orders whose memory fits
//! N_cpu = ⌈cpus · (delay + t_alloc) / t_alloc⌉                  orders the CPUs can serve
//! N     = max(1, min(N_mem, N_cpu, cap))
//! ```
//!
//! `N_cpu` is the concurrency at which the CPUs are just busy: each order uses the CPU
//! for `t_alloc` out of its `delay + t_alloc`. More orders in flight than that only queue
//! for the CPU while holding their memory, making every order slower (and the deadline
//! harder to meet) without finishing more of them per second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
pub const CALIBRATION_MAX_BYTES: usize = 32 << 20;

/// The calibration keeps the fastest of a few runs: the CPU cost of the work, not the
/// noise of whatever else ran at the same moment.
const CALIBRATION_ROUNDS: usize = 3;

/// cgroup v1 reports "no limit" as the largest page-aligned `i64`
/// (9223372036854771712 with 4 KiB pages, a little less with larger pages); anything
/// from 2^62 bytes (4 EiB) up is treated as no limit.
const V1_NO_LIMIT_FROM: u64 = 1 << 62;

/// Where a limit came from, for the start-up log and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit<T> {
    pub value: T,
    pub source: String,
}

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
    let fastest = (0..CALIBRATION_ROUNDS)
        .filter_map(|_| {
            let started = Instant::now();
            let mut bytes: Vec<u8> = Vec::new();
            bytes.try_reserve_exact(sample).ok()?;
            bytes.resize(sample, b'a');
            std::hint::black_box(&bytes);
            drop(bytes);
            Some(started.elapsed())
        })
        .min()
        .unwrap_or(Duration::ZERO);
    fastest.mul_f64(alloc_chars as f64 / sample as f64)
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

fn smallest(limits: impl Iterator<Item = Limit<u64>>) -> Option<Limit<u64>> {
    limits.min_by_key(|l| l.value)
}

fn smallest_f64(limits: impl Iterator<Item = Limit<f64>>) -> Option<Limit<f64>> {
    limits.min_by(|a, b| a.value.total_cmp(&b.value))
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

/// cgroup v2 `memory.max`: bytes, or `max` for none.
pub fn parse_v2_memory_max(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        n => n.parse().ok(),
    }
}

/// cgroup v1 `memory.limit_in_bytes`: bytes, with a huge value meaning none.
pub fn parse_v1_memory_limit(text: &str) -> Option<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&bytes| bytes < V1_NO_LIMIT_FROM)
}

/// cgroup v2 `cpu.max`: `QUOTA PERIOD` in µs, or `max PERIOD` for none. In CPUs.
pub fn parse_v2_cpu_max(text: &str) -> Option<f64> {
    let mut words = text.split_whitespace();
    let quota = words.next()?;
    let period: f64 = words.next().map_or(Some(100_000.0), |p| p.parse().ok())?;
    if quota == "max" {
        return None;
    }
    cpus_from_quota(quota.parse().ok()?, period)
}

/// cgroup v1 `cpu.cfs_quota_us` (-1 for none) and `cpu.cfs_period_us`. In CPUs.
pub fn parse_v1_cpu_quota(quota_us: &str, period_us: &str) -> Option<f64> {
    let quota: f64 = quota_us.trim().parse().ok()?;
    let period: f64 = period_us.trim().parse().ok()?;
    cpus_from_quota(quota, period)
}

fn cpus_from_quota(quota: f64, period: f64) -> Option<f64> {
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// This process's cgroup directories: in the unified (v2) hierarchy and in the v1
/// `memory` and `cpu` hierarchies, each with the mount point that bounds its ancestry.
#[derive(Debug, Default, PartialEq)]
pub struct Cgroups {
    pub v2: Option<CgroupDir>,
    pub v1_memory: Option<CgroupDir>,
    pub v1_cpu: Option<CgroupDir>,
}

/// A cgroup directory and the mount point of its hierarchy (the highest ancestor this
/// process can see).
#[derive(Debug, Clone, PartialEq)]
pub struct CgroupDir {
    pub mount_point: PathBuf,
    pub dir: PathBuf,
}

impl CgroupDir {
    /// The directory and each ancestor up to the mount point, nearest first.
    pub fn lineage(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.dir.clone()];
        let mut current = self.dir.as_path();
        while current != self.mount_point {
            match current.parent() {
                Some(parent) if parent.starts_with(&self.mount_point) => {
                    dirs.push(parent.to_path_buf());
                    current = parent;
                }
                _ => break,
            }
        }
        dirs
    }
}

impl Cgroups {
    /// Finds this process's cgroups from `/proc/self/mountinfo` and `/proc/self/cgroup`
    /// (`ID:CONTROLLERS:PATH` lines; an empty controller list is the v2 hierarchy).
    pub fn locate(mountinfo: &str, membership: &str) -> Self {
        let mounts = parse_mountinfo(mountinfo);
        let mut cgroups = Cgroups::default();
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                cgroups.v2 = cgroups.v2.or_else(|| {
                    mounts
                        .iter()
                        .filter(|m| m.fstype == "cgroup2")
                        .find_map(|m| m.locate(path))
                });
                continue;
            }
            for controller in controllers.split(',') {
                let slot = match controller {
                    "memory" => &mut cgroups.v1_memory,
                    "cpu" => &mut cgroups.v1_cpu,
                    _ => continue,
                };
                *slot = slot.take().or_else(|| {
                    mounts
                        .iter()
                        .filter(|m| {
                            m.fstype == "cgroup"
                                && m.super_options.split(',').any(|o| o == controller)
                        })
                        .find_map(|m| m.locate(path))
                });
            }
        }
        cgroups
    }

    /// The smallest memory limit over our cgroups and their ancestors, both hierarchies.
    pub fn memory_limit(&self, read: &dyn Fn(&Path) -> Option<String>) -> Option<Limit<u64>> {
        let v2 = self.v2.iter().flat_map(|c| c.lineage()).filter_map(|dir| {
            let value = parse_v2_memory_max(&read(&dir.join("memory.max"))?)?;
            Some(Limit {
                value,
                source: format!("cgroup v2 {}", dir.join("memory.max").display()),
            })
        });
        let v1 = self
            .v1_memory
            .iter()
            .flat_map(|c| c.lineage())
            .filter_map(|dir| {
                let file = dir.join("memory.limit_in_bytes");
                let value = parse_v1_memory_limit(&read(&file)?)?;
                Some(Limit {
                    value,
                    source: format!("cgroup v1 {}", file.display()),
                })
            });
        smallest(v2.chain(v1))
    }

    /// The smallest CPU quota over our cgroups and their ancestors, both hierarchies.
    pub fn cpu_limit(&self, read: &dyn Fn(&Path) -> Option<String>) -> Option<Limit<f64>> {
        let v2 = self.v2.iter().flat_map(|c| c.lineage()).filter_map(|dir| {
            let file = dir.join("cpu.max");
            let value = parse_v2_cpu_max(&read(&file)?)?;
            Some(Limit {
                value,
                source: format!("cgroup v2 {}", file.display()),
            })
        });
        let v1 = self
            .v1_cpu
            .iter()
            .flat_map(|c| c.lineage())
            .filter_map(|dir| {
                let quota = read(&dir.join("cpu.cfs_quota_us"))?;
                let period = read(&dir.join("cpu.cfs_period_us"))?;
                let value = parse_v1_cpu_quota(&quota, &period)?;
                Some(Limit {
                    value,
                    source: format!("cgroup v1 {}", dir.join("cpu.cfs_quota_us").display()),
                })
            });
        smallest_f64(v2.chain(v1))
    }
}

#[derive(Debug)]
struct Mount {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

impl Mount {
    /// Our cgroup `path` (as in /proc/self/cgroup) under this mount, when the mount
    /// shows it: its root is `path` or an ancestor of it (a container may see only its
    /// own subtree).
    fn locate(&self, path: &str) -> Option<CgroupDir> {
        let relative = if self.root == "/" {
            path
        } else if path == self.root {
            ""
        } else {
            path.strip_prefix(&self.root)
                .filter(|rest| rest.starts_with('/'))?
        };
        let relative = relative.trim_start_matches('/');
        let dir = if relative.is_empty() {
            self.mount_point.clone()
        } else {
            self.mount_point.join(relative)
        };
        Some(CgroupDir {
            mount_point: self.mount_point.clone(),
            dir,
        })
    }
}

/// The cgroup mounts of /proc/self/mountinfo, whose lines read
/// `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 5 || right.len() < 3 || !matches!(right[0], "cgroup" | "cgroup2") {
                return None;
            }
            Some(Mount {
                root: unescape_mountinfo(left[3]),
                mount_point: PathBuf::from(unescape_mountinfo(left[4])),
                fstype: right[0].to_string(),
                super_options: right[2].to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
        // Not even one order fits: still admit one (refusing everything is an outage,
        // and the faithful server would have crashed on the first anyway).
        let sizing = size(faithful_at(100_000_000, 1.0));
        assert_eq!(sizing.n_mem, 0);
        assert_eq!(sizing.max_in_flight, 1);

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
    fn cgroup_file_values() {
        assert_eq!(parse_v2_memory_max("max\n"), None);
        assert_eq!(parse_v2_memory_max("2147483648\n"), Some(2 * GIB));
        assert_eq!(parse_v1_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_v1_memory_limit("9223372036854710272\n"), None); // 64 KiB pages
        assert_eq!(parse_v1_memory_limit("2147483648\n"), Some(2 * GIB));
        assert_eq!(parse_v1_memory_limit("garbage"), None);
        assert_eq!(parse_v2_cpu_max("max 100000\n"), None);
        assert_eq!(parse_v2_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_v2_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_v1_cpu_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_v1_cpu_quota("100000\n", "100000\n"), Some(1.0));
        assert_eq!(parse_v1_cpu_quota("150000", "100000"), Some(1.5));
        assert_eq!(
            parse_mem_total("MemTotal:       24684092 kB\nMemFree: 1 kB\n"),
            Some(24_684_092 * 1024)
        );
        assert_eq!(parse_mem_total("nothing"), None);
    }

    // This machine's layout: cgroup v1 controllers plus an empty unified hierarchy, and
    // the process in a nested memory cgroup.
    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/abc/lab-1
2:cpuacct:/
1:cpu:/lab-1
0::/
";

    fn fake_fs(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), c.to_string()))
            .collect();
        move |path: &Path| files.get(path).cloned()
    }

    #[test]
    fn hybrid_layout_takes_the_smallest_limit_over_the_ancestors() {
        let cgroups = Cgroups::locate(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let memory = cgroups.v1_memory.clone().unwrap();
        assert_eq!(
            memory.lineage(),
            [
                "/sys/fs/cgroup/memory/process_api/abc/lab-1",
                "/sys/fs/cgroup/memory/process_api/abc",
                "/sys/fs/cgroup/memory/process_api",
                "/sys/fs/cgroup/memory",
            ]
            .map(PathBuf::from)
        );
        let read = fake_fs(&[
            // The innermost cgroup is unlimited; an ancestor limits it to 2 GiB; a
            // higher one to 8 GiB.
            (
                "/sys/fs/cgroup/memory/process_api/abc/lab-1/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "2147483648\n",
            ),
            (
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "8589934592\n",
            ),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            ("/sys/fs/cgroup/cpu/lab-1/cpu.cfs_quota_us", "100000\n"),
            ("/sys/fs/cgroup/cpu/lab-1/cpu.cfs_period_us", "100000\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        let limit = cgroups.memory_limit(&read).unwrap();
        assert_eq!(limit.value, 2 * GIB);
        assert!(
            limit
                .source
                .contains("process_api/abc/memory.limit_in_bytes")
        );
        assert_eq!(cgroups.cpu_limit(&read).unwrap().value, 1.0);
        // The unified hierarchy has no controllers here: no files, no limit from it.
        assert_eq!(
            cgroups.v2.as_ref().unwrap().dir,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn unified_layout_reads_memory_max_and_cpu_max() {
        let mountinfo = "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let cgroups = Cgroups::locate(mountinfo, "0::/system.slice/lab.service\n");
        let read = fake_fs(&[
            (
                "/sys/fs/cgroup/system.slice/lab.service/memory.max",
                "max\n",
            ),
            (
                "/sys/fs/cgroup/system.slice/lab.service/cpu.max",
                "max 100000\n",
            ),
            ("/sys/fs/cgroup/system.slice/memory.max", "1073741824\n"),
            ("/sys/fs/cgroup/system.slice/cpu.max", "150000 100000\n"),
        ]);
        assert_eq!(cgroups.memory_limit(&read).unwrap().value, GIB);
        assert_eq!(cgroups.cpu_limit(&read).unwrap().value, 1.5);
        assert_eq!(cgroups.v1_memory, None);
    }

    #[test]
    fn no_limit_anywhere_is_none() {
        let cgroups = Cgroups::locate(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let read = fake_fs(&[]);
        assert_eq!(cgroups.memory_limit(&read), None);
        assert_eq!(cgroups.cpu_limit(&read), None);
        assert_eq!(Cgroups::locate("", ""), Cgroups::default());
    }

    #[test]
    fn a_container_sees_only_its_subtree() {
        let mountinfo =
            "40 31 0:32 /docker/xyz /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let cgroups = Cgroups::locate(mountinfo, "4:memory:/docker/xyz/sub\n");
        let memory = cgroups.v1_memory.unwrap();
        assert_eq!(memory.dir, PathBuf::from("/sys/fs/cgroup/memory/sub"));
        assert_eq!(memory.lineage().len(), 2);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_mountinfo(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn discovery_on_this_machine_finds_something_sane() {
        let env = Environment::discover();
        assert!(env.memory.value > 0, "{env:?}");
        assert!(env.cpus.value > 0.0, "{env:?}");
        assert!(resident_memory_bytes().unwrap() > 0);
    }
}
