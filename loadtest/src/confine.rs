//! Confinement: a cgroup standing in for the original's VM (1 vCPU, 2 GB).
//!
//! [`Cgroup::create`] makes a fresh cgroup with a CPU quota and a memory limit, under the
//! cgroup this process already sits in (so limits set around us still apply to it), and
//! [`Cgroup::confine_command`] makes a child process join it *before* `exec`, so there is no
//! moment where the child runs unconfined and everything it starts inherits the limits.
//! Dropping the [`Cgroup`] removes it again.
//!
//! A CPU limit also pins the child to ⌈cpus⌉ cores (the last ones this process may use),
//! when there are more: a VM with one vCPU runs one thread at a time, and a quota alone
//! lets the cgroup run on every core at once, use its quota in half a period and then
//! freeze — all its threads, the one answering 503s included — for the rest. Measured in
//! the protected configuration at 14–70 arrivals/s on 2 cores: the quota-only cgroup was
//! throttled in 43 % of its periods (2.1 s frozen in 18 s); pinned to one core, the same
//! quota froze it for 0.4 s, and refusals' p99 fell from 6–18 ms to 3–8 ms.
//!
//! Both hierarchies are supported: the unified cgroup v2 hierarchy when it has the `cpu` and
//! `memory` controllers available to us, else the v1 `cpu` and `memory` controllers (each on
//! its own mount). Where neither can be used — not root, a read-only cgroup file system, a
//! controller missing — creation fails with a [`ConfineError`] saying what is needed. There is
//! no silent fallback to an unconfined run.
//!
//! [`run_confined`] is `loadtest confine --cpus N --memory SIZE -- COMMAND...`.

use std::ffi::{CString, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cgroup_info::Cgroups;

/// What to confine a process to. `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// CPU quota in CPUs (1.0 = one full CPU; 0.5 = half of one; 2.0 = two).
    pub cpus: Option<f64>,
    /// Memory limit in bytes (no swap on top of it where the kernel lets us say so).
    pub memory_bytes: Option<u64>,
}

/// The smallest memory limit accepted: below it not even a small program starts (the
/// purchasing API alone is about 10 MiB resident before its first order), and a child
/// killed as it starts reads as a crash of the system under test rather than a typo.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

impl Limits {
    pub fn is_unconfined(&self) -> bool {
        self.cpus.is_none() && self.memory_bytes.is_none()
    }

    /// Checks the values make sense: a CPU quota of at least 0.1 CPU (the kernel's
    /// minimum quota is 1 ms per [`CPU_PERIOD_US`] period) and a memory limit of at least
    /// [`MIN_MEMORY_BYTES`].
    pub fn validate(&self) -> Result<(), ConfineError> {
        if let Some(cpus) = self.cpus
            && !(0.1..=100_000.0).contains(&cpus)
        {
            return Err(ConfineError::InvalidLimits(format!(
                "--cpus {cpus} is not a usable CPU quota; give a number of CPUs such as 1, 0.5 or 2 (at least 0.1)"
            )));
        }
        if let Some(bytes) = self.memory_bytes
            && bytes < MIN_MEMORY_BYTES
        {
            return Err(ConfineError::InvalidLimits(format!(
                "a memory limit of {} cannot run a program (the kernel would kill it as it \
                 starts); give at least {}, such as 2G or 512M",
                format_bytes(bytes),
                format_bytes(MIN_MEMORY_BYTES)
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Limits {
    /// e.g. "1 CPU, 2.0 GiB", "0.5 CPU, no memory limit", "unconfined".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unconfined() {
            return f.write_str("unconfined");
        }
        match self.cpus {
            Some(cpus) => write!(f, "{cpus} CPU")?,
            None => f.write_str("no CPU limit")?,
        }
        match self.memory_bytes {
            Some(bytes) => write!(f, ", {}", format_bytes(bytes)),
            None => f.write_str(", no memory limit"),
        }
    }
}

/// Parses a memory size such as `2G`, `512M`, `1.5G`, `64MiB`, `4k` or `1048576` into
/// bytes.
///
/// Units are **binary** and case-insensitive: `K`/`KB`/`KiB` = 1024 bytes, `M`/`MB`/`MiB` =
/// 1024², `G`/`GB`/`GiB` = 1024³, `T`/`TB`/`TiB` = 1024⁴; `B` or no unit means bytes
/// (whole bytes only). So `2G` is 2 GiB = 2,147,483,648 bytes, as with `docker --memory`.
/// Zero, negative numbers and anything else are refused with a message saying what is
/// accepted.
pub fn parse_memory_size(text: &str) -> Result<u64, String> {
    const ACCEPTED: &str =
        "use a size such as 2G, 512M, 1.5G, 64MiB or 1048576 (binary units: 1K = 1024 bytes)";
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim_start();
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "invalid memory size {text:?}: unknown unit; {ACCEPTED}"
            ));
        }
    };
    let valid_number = !number.is_empty()
        && number.chars().filter(|&c| c == '.').count() <= 1
        && number.chars().any(|c| c.is_ascii_digit());
    if !valid_number {
        return Err(format!("invalid memory size {text:?}: {ACCEPTED}"));
    }
    let bytes = if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid memory size {text:?}: {ACCEPTED}"))?;
        let bytes = value * (1u64 << shift) as f64;
        if bytes.fract() != 0.0 && shift == 0 {
            return Err(format!(
                "invalid memory size {text:?}: a number of bytes must be whole; {ACCEPTED}"
            ));
        }
        if !(bytes.is_finite() && bytes < u64::MAX as f64) {
            return Err(format!("invalid memory size {text:?}: too large"));
        }
        bytes.round() as u64
    } else {
        let value: u64 = number
            .parse()
            .map_err(|_| format!("invalid memory size {text:?}: too large"))?;
        value
            .checked_mul(1u64 << shift)
            .ok_or_else(|| format!("invalid memory size {text:?}: too large"))?
    };
    if bytes == 0 {
        return Err(format!(
            "invalid memory size {text:?}: a memory limit must be more than 0; {ACCEPTED}"
        ));
    }
    Ok(bytes)
}

/// Formats a byte count with binary units and one decimal: "2.0 GiB", "64.0 MiB",
/// "512 B".
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What is needed when confinement is not possible here.
pub const CONFINE_REQUIREMENTS: &str = "run as root on a machine with the cgroup v1 cpu+memory controllers or cgroup v2 with cpu and memory enabled";

/// Why a cgroup could not be created or used. The message says what failed, where, and
/// what is needed.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The limits themselves are unusable (zero memory, a negative CPU count…).
    #[error("cannot confine: {0}")]
    InvalidLimits(String),
    /// A cgroup file system operation failed (permission, read-only, …).
    /// (The OS error is part of the message, so it is not also chained as a source.)
    #[error("cannot confine: {what} failed: {error}; {CONFINE_REQUIREMENTS}")]
    Io { what: String, error: io::Error },
    /// No usable cgroup hierarchy (controller not mounted or not available to us).
    #[error("cannot confine: {0}; {CONFINE_REQUIREMENTS}")]
    Unsupported(String),
}

impl ConfineError {
    /// True when the environment does not allow confinement (not root, read-only cgroup
    /// file system, controllers missing) as opposed to bad limits. Tests skip on this.
    pub fn is_not_permitted(&self) -> bool {
        match self {
            ConfineError::InvalidLimits(_) => false,
            ConfineError::Unsupported(_) => true,
            ConfineError::Io { error, .. } => matches!(
                error.raw_os_error(),
                Some(
                    libc::EACCES
                        | libc::EPERM
                        | libc::EROFS
                        | libc::ENOENT
                        | libc::ENOTSUP
                        | libc::EBUSY
                )
            ),
        }
    }
}

fn io_error(what: impl Into<String>, error: io::Error) -> ConfineError {
    ConfineError::Io {
        what: what.into(),
        error,
    }
}

/// Which cgroup hierarchy a [`Cgroup`] lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        }
    }
}

/// The CFS period we use: 10 ms (the kernel's default is 100 ms).
///
/// Bandwidth control lets a cgroup run until it has used its quota, then freezes *all* its
/// threads for the rest of the period. With 100 ms periods a busy 1-CPU "VM" therefore
/// stalls in slices of tens of milliseconds — including the thread answering 503s and
/// health checks — which a real VM's vCPU, scheduled continuously by the hypervisor, does
/// not do. Measured in the protected configuration at 14–70 arrivals/s: refusals answered
/// in p99 21–36 ms with 100 ms periods. A 10 ms period keeps the same CPU share with
/// stalls ten times shorter, closer to the VM being emulated. The kernel's minimum quota
/// is 1 ms, so the smallest limit is 0.1 CPU.
const CPU_PERIOD_US: u64 = 10_000;
/// v1 reports "no memory limit" as a page-aligned `i64::MAX`; anything this big is none.
const V1_NO_LIMIT_THRESHOLD: u64 = 1 << 60;

/// A cgroup (v2) or a pair of cgroups (v1 `cpu` and `memory`) created for one confined
/// run. Removed on drop (after killing anything still inside).
#[derive(Debug)]
pub struct Cgroup {
    version: CgroupVersion,
    limits: Limits,
    /// Directory holding the memory files (v2: the one cgroup; v1: the memory cgroup).
    memory_dir: Option<PathBuf>,
    /// Directory holding the cpu files (v2: the one cgroup; v1: the cpu cgroup).
    cpu_dir: Option<PathBuf>,
    /// Every directory we created, to remove on drop.
    created: Vec<PathBuf>,
    /// `cgroup.procs` of every created cgroup, ready for the pre-exec hook.
    procs_files: Vec<CString>,
    /// The cores the child is pinned to, if any (see the module documentation).
    cores: Option<Cores>,
}

/// A set of cores: as a list, and as the `cpu_set_t` the pre-exec hook hands to
/// `sched_setaffinity`.
struct Cores {
    list: Vec<usize>,
    set: libc::cpu_set_t,
}

impl fmt::Debug for Cores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cores({self})")
    }
}

impl fmt::Display for Cores {
    /// "core 1", "cores 2,3".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.list.iter().map(usize::to_string).collect();
        let noun = if list.len() == 1 { "core" } else { "cores" };
        write!(f, "{noun} {}", list.join(","))
    }
}

impl Cores {
    /// The last ⌈cpus⌉ of the cores this process may run on; `None` when that would be
    /// all of them (pinning adds nothing then) or the affinity cannot be read.
    fn for_cpus(cpus: f64) -> Option<Cores> {
        let allowed = Cores::allowed()?;
        pick_cores(&allowed, cpus).map(Cores::of)
    }

    /// The cores this process could run on when it first asked — before the lab moved
    /// itself off a child's cores, so a second confined run (a comparison) picks the same
    /// cores as the first.
    fn allowed() -> Option<Vec<usize>> {
        static FIRST: std::sync::OnceLock<Option<Vec<usize>>> = std::sync::OnceLock::new();
        FIRST.get_or_init(Self::allowed_now).clone()
    }

    /// The cores the calling thread may run on now.
    fn allowed_now() -> Option<Vec<usize>> {
        // SAFETY: cpu_set_t is plain data for which all-zero is the empty set;
        // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return None;
            }
            Some(
                (0..libc::CPU_SETSIZE as usize)
                    .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                    .collect(),
            )
        }
    }

    /// These cores (each below `CPU_SETSIZE`, as `sched_getaffinity` reports them).
    fn of(cores: &[usize]) -> Cores {
        // SAFETY: all-zero is the empty set; CPU_SET only sets bits of indices below
        // CPU_SETSIZE.
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in cores {
                libc::CPU_SET(cpu, &mut set);
            }
            set
        };
        Cores {
            list: cores.to_vec(),
            set,
        }
    }
}

/// The last ⌈cpus⌉ of `allowed`, or `None` when that is all of them.
fn pick_cores(allowed: &[usize], cpus: f64) -> Option<&[usize]> {
    let wanted = (cpus.ceil() as usize).max(1);
    (wanted < allowed.len()).then(|| &allowed[allowed.len() - wanted..])
}

/// The ⌈cpus⌉ cores of `allowed` for the `slot`-th of several confined children (a
/// scaled-out run's nodes): slot 0 takes the last cores (as [`pick_cores`]), slot 1 the
/// ones before them, and so on, wrapping round when the machine has too few — then nodes
/// share cores, which [`Cgroup::describe`] shows. `None` when one child needs them all.
fn pick_cores_in_slot(allowed: &[usize], cpus: f64, slot: usize) -> Option<Vec<usize>> {
    let wanted = (cpus.ceil() as usize).max(1);
    let n = allowed.len();
    if wanted >= n {
        return None;
    }
    let mut cores: Vec<usize> = (0..wanted)
        .map(|i| allowed[n - 1 - (slot * wanted + i) % n])
        .collect();
    cores.sort_unstable();
    cores.dedup();
    Some(cores)
}

/// Cores that confined children of this process are pinned to now (one entry per child
/// and core), so the lab keeps off all of them, not only the last child's.
static PINNED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

fn pinned_cores() -> std::sync::MutexGuard<'static, Vec<usize>> {
    PINNED.lock().unwrap_or_else(|p| p.into_inner())
}

static NEXT_CGROUP: AtomicU64 = AtomicU64::new(0);

fn unique_name() -> String {
    format!(
        "loadtest-{}-{}",
        std::process::id(),
        NEXT_CGROUP.fetch_add(1, Ordering::Relaxed)
    )
}

impl Cgroup {
    /// Creates a cgroup with `limits` under this process's own cgroup(s): cgroup v2 when
    /// the unified hierarchy offers the needed controllers to us, else cgroup v1.
    ///
    /// A controller is *needed* when its limit is set; the other one is also used when
    /// available, for accounting (memory usage, OOM kills), and skipped otherwise.
    pub fn create(limits: &Limits) -> Result<Cgroup, ConfineError> {
        Self::create_in_slot(limits, 0)
    }

    /// [`Cgroup::create`] for the `slot`-th of several children confined side by side
    /// (the nodes of a scaled-out run): each is pinned to cores of its own while the
    /// machine has enough (see [`pick_cores_in_slot`]).
    pub fn create_in_slot(limits: &Limits, slot: usize) -> Result<Cgroup, ConfineError> {
        let mut cgroup = Self::create_any(limits)?;
        cgroup.cores = limits
            .cpus
            .and_then(|cpus| pick_cores_in_slot(&Cores::allowed()?, cpus, slot))
            .map(|cores| Cores::of(&cores));
        if let Some(cores) = &cgroup.cores {
            pinned_cores().extend(cores.list.iter().copied());
        }
        Ok(cgroup)
    }

    fn create_any(limits: &Limits) -> Result<Cgroup, ConfineError> {
        limits.validate()?;
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| io_error("reading /proc/self/mountinfo", e))?;
        let membership = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| io_error("reading /proc/self/cgroup", e))?;
        let cgroups = Cgroups::locate(&mountinfo, &membership);
        let need_cpu = limits.cpus.is_some();
        let need_memory = limits.memory_bytes.is_some();

        if let Some(v2) = cgroups.v2.as_ref().map(|c| &c.dir) {
            let available = read_words(&v2.join("cgroup.controllers"));
            let has = |c: &str| available.iter().any(|a| a == c);
            // v2 when it offers what the limits need (and something at all); else v1,
            // whose error then says what is missing in both.
            let v2_usable = (!need_cpu || has("cpu")) && (!need_memory || has("memory"));
            if v2_usable && (has("cpu") || has("memory")) {
                return Self::create_v2(v2, &available, limits);
            }
        }
        Self::create_v1(&cgroups, limits)
    }

    fn create_v2(
        own: &Path,
        available: &[String],
        limits: &Limits,
    ) -> Result<Cgroup, ConfineError> {
        let mut wanted: Vec<&str> = Vec::new();
        for controller in ["cpu", "memory"] {
            if available.iter().any(|a| a == controller) {
                wanted.push(controller);
            }
        }
        if limits.cpus.is_some() && !wanted.contains(&"cpu") {
            return Err(ConfineError::Unsupported(format!(
                "the cgroup v2 controller \"cpu\" is not available in {}",
                own.display()
            )));
        }
        if limits.memory_bytes.is_some() && !wanted.contains(&"memory") {
            return Err(ConfineError::Unsupported(format!(
                "the cgroup v2 controller \"memory\" is not available in {}",
                own.display()
            )));
        }
        // Children of our own cgroup get the controllers once they are enabled in its
        // cgroup.subtree_control. A non-root cgroup that holds processes cannot enable
        // them (the "no internal processes" rule: EBUSY); then the new cgroup becomes a
        // sibling of ours, under our parent, which offers the controllers to us already.
        let parent = match enable_subtree_controllers(own, &wanted) {
            Ok(()) => own.to_path_buf(),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => match own.parent() {
                Some(parent) if subtree_has(parent, &wanted) => parent.to_path_buf(),
                _ => {
                    return Err(io_error(
                        format!(
                            "enabling {} for child cgroups in {} (cgroup v2 refuses that in a cgroup that holds processes: start loadtest in a cgroup of its own whose parent delegates cpu and memory, e.g. with `systemd-run --scope -p Delegate=yes`)",
                            wanted.join(" and "),
                            own.join("cgroup.subtree_control").display()
                        ),
                        e,
                    ));
                }
            },
            Err(e) => {
                return Err(io_error(
                    format!(
                        "enabling {} in {}",
                        wanted.join(" and "),
                        own.join("cgroup.subtree_control").display()
                    ),
                    e,
                ));
            }
        };
        let dir = parent.join(unique_name());
        fs::create_dir(&dir)
            .map_err(|e| io_error(format!("creating a cgroup at {}", dir.display()), e))?;
        let mut cgroup = Cgroup {
            version: CgroupVersion::V2,
            limits: *limits,
            memory_dir: wanted.contains(&"memory").then(|| dir.clone()),
            cpu_dir: wanted.contains(&"cpu").then(|| dir.clone()),
            created: vec![dir.clone()],
            procs_files: Vec::new(),
            cores: limits.cpus.and_then(Cores::for_cpus),
        };
        // From here on, an error drops `cgroup`, which removes the directory.
        if let Some(cpus) = limits.cpus {
            let quota = cpu_quota_us(cpus);
            write_file(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        if let Some(bytes) = limits.memory_bytes {
            write_file(&dir.join("memory.max"), &bytes.to_string())?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                write_file(&swap, "0")?;
            }
        }
        cgroup.procs_files = vec![procs_file(&dir)?];
        Ok(cgroup)
    }

    fn create_v1(cgroups: &Cgroups, limits: &Limits) -> Result<Cgroup, ConfineError> {
        let cpu_parent = cgroups.v1_cpu.as_ref().map(|c| c.dir.clone());
        let memory_parent = cgroups.v1_memory.as_ref().map(|c| c.dir.clone());
        for (needed, parent, controller) in [
            (limits.cpus.is_some(), &cpu_parent, "cpu"),
            (limits.memory_bytes.is_some(), &memory_parent, "memory"),
        ] {
            if needed && parent.is_none() {
                return Err(ConfineError::Unsupported(format!(
                    "no cgroup v1 \"{controller}\" controller is mounted{}",
                    match &cgroups.v2 {
                        Some(v2) => format!(
                            " and the cgroup v2 hierarchy does not offer it either (see {})",
                            v2.dir.join("cgroup.controllers").display()
                        ),
                        None => String::new(),
                    }
                )));
            }
        }
        let name = unique_name();
        let mut cgroup = Cgroup {
            version: CgroupVersion::V1,
            limits: *limits,
            memory_dir: None,
            cpu_dir: None,
            created: Vec::new(),
            procs_files: Vec::new(),
            cores: limits.cpus.and_then(Cores::for_cpus),
        };
        // Memory first: it is the limit that matters most, and its errors are the
        // clearest. A controller that is only for accounting may fail quietly.
        for (controller, parent) in [("memory", &memory_parent), ("cpu", &cpu_parent)] {
            let Some(parent) = parent else { continue };
            let needed = match controller {
                "memory" => limits.memory_bytes.is_some(),
                _ => limits.cpus.is_some(),
            };
            let dir = parent.join(&name);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                // Only for accounting: do without it.
                Err(_) if !needed => continue,
                Err(e) => {
                    return Err(io_error(
                        format!("creating a cgroup under {}", parent.display()),
                        e,
                    ));
                }
            }
            cgroup.created.push(dir.clone());
            cgroup.procs_files.push(procs_file(&dir)?);
            if controller == "memory" {
                cgroup.memory_dir = Some(dir);
            } else {
                cgroup.cpu_dir = Some(dir);
            }
        }
        if let (Some(dir), Some(cpus)) = (&cgroup.cpu_dir, limits.cpus) {
            write_file(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            write_file(
                &dir.join("cpu.cfs_quota_us"),
                &cpu_quota_us(cpus).to_string(),
            )?;
        }
        if let (Some(dir), Some(bytes)) = (&cgroup.memory_dir, limits.memory_bytes) {
            // memory.memsw.limit_in_bytes (memory + swap) must stay >= the memory limit:
            // set the memory limit first (a new cgroup starts unlimited), then memsw to
            // the same value so swapping cannot dodge the limit.
            write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write_file(&memsw, &bytes.to_string())?;
            }
        }
        Ok(cgroup)
    }

    /// Makes the child that `cmd` spawns join this cgroup before it executes the program:
    /// it never runs unconfined, and whatever it starts inherits the cgroup. If joining
    /// fails, the spawn fails with that error.
    pub fn confine_command(&self, cmd: &mut Command) {
        let files = self.procs_files.clone();
        let cores = self.cores.as_ref().map(|cores| cores.set);
        // SAFETY: the hook runs in the forked child before exec and only makes
        // async-signal-safe calls (open, write, close, sched_setaffinity) on memory
        // prepared beforehand; it allocates nothing (an io::Error from an OS error code
        // does not allocate).
        unsafe {
            cmd.pre_exec(move || {
                for file in &files {
                    join_cgroup(file)?;
                }
                if let Some(set) = &cores {
                    let size = std::mem::size_of::<libc::cpu_set_t>();
                    if libc::sched_setaffinity(0, size, set) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }

    /// Moves every thread of this process (the lab: its load generator, its samplers) off
    /// the cores the confined child is pinned to, so the generator never takes the
    /// emulated VM's CPU — measured: an unpinned generator took up to 35 % of the server's
    /// core under a flood. Threads started later inherit it. Returns the cores this
    /// process keeps, `None` when the child is not pinned or no other core is left (then
    /// nothing changes).
    ///
    /// With several confined children (a scaled-out run) it keeps off every child's cores;
    /// when they cover the machine, the lab spreads over all cores again (shared with the
    /// children; the returned text says so) rather than crowding one child's core.
    pub fn keep_this_process_off_the_childs_cores(&self) -> Option<String> {
        self.cores.as_ref()?;
        let allowed = Cores::allowed()?;
        let taken = pinned_cores().clone();
        let free = allowed
            .iter()
            .copied()
            .filter(|cpu| !taken.contains(cpu))
            .collect::<Vec<_>>();
        let (ours, shared) = if free.is_empty() {
            (Cores::of(&allowed), " (shared with the confined children)")
        } else {
            (Cores::of(&free), "")
        };
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            // SAFETY: sched_setaffinity reads size_of::<cpu_set_t>() bytes from a valid
            // set; a thread that has exited meanwhile only makes it fail.
            unsafe {
                libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &ours.set);
            }
        }
        Some(format!("{ours}{shared}"))
    }

    /// e.g. "cgroup v1, pinned to core 1": what the confinement consists of.
    pub fn describe(&self) -> String {
        match &self.cores {
            Some(cores) => format!("{}, pinned to {cores}", self.version()),
            None => self.version().to_string(),
        }
    }

    pub fn version(&self) -> &'static str {
        self.version.as_str()
    }

    pub fn cgroup_version(&self) -> CgroupVersion {
        self.version
    }

    /// The limits this cgroup was created with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The cgroup directories (one for v2; the memory and cpu ones for v1).
    pub fn paths(&self) -> &[PathBuf] {
        &self.created
    }

    /// Memory charged to the cgroup now (v1 `memory.usage_in_bytes`, v2
    /// `memory.current`): the processes' memory plus the page cache they caused.
    pub fn memory_usage_bytes(&self) -> Option<u64> {
        let dir = self.memory_dir.as_ref()?;
        match self.version {
            CgroupVersion::V1 => read_u64(&dir.join("memory.usage_in_bytes")),
            CgroupVersion::V2 => read_u64(&dir.join("memory.current")),
        }
    }

    /// The highest memory usage the kernel recorded for the cgroup (v1
    /// `memory.max_usage_in_bytes`, v2 `memory.peak` where the kernel has it). Unlike
    /// sampling, it does not miss a spike between two samples.
    pub fn memory_peak_bytes(&self) -> Option<u64> {
        let dir = self.memory_dir.as_ref()?;
        match self.version {
            CgroupVersion::V1 => read_u64(&dir.join("memory.max_usage_in_bytes")),
            CgroupVersion::V2 => read_u64(&dir.join("memory.peak")),
        }
    }

    /// The memory limit in force, read back from the kernel (`None`: no limit).
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        let dir = self.memory_dir.as_ref()?;
        match self.version {
            CgroupVersion::V1 => read_u64(&dir.join("memory.limit_in_bytes"))
                .filter(|&limit| limit < V1_NO_LIMIT_THRESHOLD),
            CgroupVersion::V2 => read_u64(&dir.join("memory.max")),
        }
    }

    /// The CPU quota in force, in CPUs, read back from the kernel (`None`: no limit).
    pub fn cpu_limit(&self) -> Option<f64> {
        let dir = self.cpu_dir.as_ref()?;
        let (quota, period) = match self.version {
            CgroupVersion::V1 => {
                let quota = fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
                let quota: i64 = quota.trim().parse().ok()?;
                let period = read_u64(&dir.join("cpu.cfs_period_us"))?;
                (u64::try_from(quota).ok()?, period)
            }
            CgroupVersion::V2 => {
                let text = fs::read_to_string(dir.join("cpu.max")).ok()?;
                let mut words = text.split_whitespace();
                let quota = words.next()?.parse().ok()?;
                let period = words.next()?.parse().ok()?;
                (quota, period)
            }
        };
        (period > 0).then(|| quota as f64 / period as f64)
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup (v1: the
    /// `oom_kill` line of `memory.oom_control`; v2: `oom_kill` in `memory.events`).
    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.memory_dir.as_ref()?;
        let file = match self.version {
            CgroupVersion::V1 => dir.join("memory.oom_control"),
            CgroupVersion::V2 => dir.join("memory.events"),
        };
        keyed_value(&fs::read_to_string(file).ok()?, "oom_kill")
    }

    /// Total time the cgroup's processes were throttled by the CPU quota, in seconds
    /// (v1 `throttled_time` ns, v2 `throttled_usec` of `cpu.stat`).
    pub fn cpu_throttled_seconds(&self) -> Option<f64> {
        let dir = self.cpu_dir.as_ref()?;
        let stat = fs::read_to_string(dir.join("cpu.stat")).ok()?;
        match self.version {
            CgroupVersion::V1 => keyed_value(&stat, "throttled_time").map(|ns| ns as f64 / 1e9),
            CgroupVersion::V2 => keyed_value(&stat, "throttled_usec").map(|us| us as f64 / 1e6),
        }
    }

    /// PIDs of the processes in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = Vec::new();
        for dir in &self.created {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in text.split_whitespace().filter_map(|p| p.parse().ok()) {
                    if !pids.contains(&pid) {
                        pids.push(pid);
                    }
                }
            }
        }
        pids
    }
}

impl Drop for Cgroup {
    /// Removes the cgroup directories; anything still inside is killed first. Best
    /// effort, silent, bounded to about two seconds, never panics.
    fn drop(&mut self) {
        if let Some(cores) = &self.cores {
            let mut pinned = pinned_cores();
            for core in &cores.list {
                if let Some(at) = pinned.iter().position(|c| c == core) {
                    pinned.swap_remove(at);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for dir in self.created.iter().rev() {
            let mut killed = false;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(_) if Instant::now() >= deadline => break,
                    Err(_) => {
                        if !killed {
                            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                                for pid in text.split_whitespace().filter_map(|p| p.parse().ok()) {
                                    if pid > 0 {
                                        // SAFETY: plain syscall.
                                        unsafe { libc::kill(pid, libc::SIGKILL) };
                                    }
                                }
                            }
                            killed = true;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
    }
}

/// The pre-exec half of [`Cgroup::confine_command`]: writes "0" (the writing process)
/// into a `cgroup.procs` file. Async-signal-safe.
fn join_cgroup(file: &CString) -> io::Result<()> {
    // SAFETY: `file` is a valid NUL-terminated path; open/write/close are
    // async-signal-safe and the buffer is a static byte string.
    unsafe {
        let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        if written != 1 {
            let error = if written < 0 {
                io::Error::last_os_error()
            } else {
                io::Error::from_raw_os_error(libc::EIO)
            };
            libc::close(fd);
            return Err(error);
        }
        libc::close(fd);
    }
    Ok(())
}

fn cpu_quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

fn procs_file(dir: &Path) -> Result<CString, ConfineError> {
    let path = dir.join("cgroup.procs");
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        ConfineError::Unsupported(format!(
            "the cgroup path {} contains a NUL byte",
            path.display()
        ))
    })
}

fn write_file(path: &Path, value: &str) -> Result<(), ConfineError> {
    fs::write(path, value)
        .map_err(|e| io_error(format!("writing {value} to {}", path.display()), e))
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .map(|text| text.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The value of `key` in a "key value" per line file (memory.events, cpu.stat…).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == key).then(|| words.next()?.parse().ok())?
    })
}

fn subtree_has(dir: &Path, controllers: &[&str]) -> bool {
    let enabled = read_words(&dir.join("cgroup.subtree_control"));
    controllers.iter().all(|c| enabled.iter().any(|e| e == c))
}

fn enable_subtree_controllers(dir: &Path, controllers: &[&str]) -> io::Result<()> {
    if subtree_has(dir, controllers) {
        return Ok(());
    }
    let request: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    fs::write(dir.join("cgroup.subtree_control"), request.join(" "))
}

/// Signals received while [`run_confined`] waits, to pass on to the command
/// (0 = none pending).
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _: *mut libc::c_void,
) {
    // A signal the kernel raised for the terminal (Ctrl-C: si_code SI_KERNEL) went to
    // the whole foreground process group, the command included: do not send it twice.
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    if !from_terminal {
        PENDING_SIGNAL.store(signal, Ordering::SeqCst);
    }
}

const FORWARDED_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Installs the forwarding handlers; restores the previous ones on drop.
struct SignalForwarding {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalForwarding {
    fn install() -> SignalForwarding {
        let mut previous = Vec::new();
        for signal in FORWARDED_SIGNALS {
            // SAFETY: sigaction with a handler that only stores into an atomic.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    remember_signal;
                action.sa_sigaction = handler as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) == 0 {
                    previous.push((signal, old));
                }
            }
        }
        SignalForwarding { previous }
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restoring an action obtained from sigaction.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
    }
}

/// `loadtest confine --cpus N --memory SIZE -- COMMAND...`: runs COMMAND (with inherited
/// stdin/stdout/stderr) in a fresh cgroup with `limits`, passes SIGINT/SIGTERM/SIGHUP/
/// SIGQUIT sent to us on to it, waits, says on stderr when the OOM killer killed it (or a
/// process it started), removes the cgroup, and returns the command's exit code (128 +
/// signal number when a signal killed it, as shells do). Like a VM shutting down, the
/// cgroup's removal kills anything the command left running in it.
pub fn run_confined(limits: &Limits, argv: &[OsString]) -> anyhow::Result<ExitCode> {
    let Some((program, args)) = argv.split_first() else {
        anyhow::bail!(
            "nothing to run: give the command after --, e.g. loadtest confine --cpus 1 --memory 2G -- purchasing-api"
        );
    };
    if limits.is_unconfined() {
        anyhow::bail!(
            "no limit given: pass --cpus and/or --memory (e.g. --cpus 1 --memory 2G), or run the command directly"
        );
    }
    let name = program.to_string_lossy().into_owned();
    let cgroup = Cgroup::create(limits)?;
    let oom_before = cgroup.oom_kills().unwrap_or(0);

    let mut command = Command::new(program);
    command.args(args);
    cgroup.confine_command(&mut command);

    PENDING_SIGNAL.store(0, Ordering::SeqCst);
    let forwarding = SignalForwarding::install();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            drop(forwarding);
            anyhow::bail!(
                "cannot run {name} confined ({}): {e}; check the command exists and is executable",
                cgroup.version()
            );
        }
    };
    let pid = child.id() as libc::pid_t;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let signal = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
        if signal != 0 {
            // SAFETY: plain syscall; the child is not reaped yet, so the pid is its.
            unsafe { libc::kill(pid, signal) };
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(forwarding);
    let status = status.map_err(|e| anyhow::anyhow!("cannot wait for {name}: {e}"))?;

    let oom_now = wait_for_oom_count(&cgroup, oom_before, status.signal() == Some(libc::SIGKILL));
    if oom_now > oom_before {
        let limit = limits
            .memory_bytes
            .map(format_bytes)
            .unwrap_or_else(|| "none".to_string());
        if status.signal() == Some(libc::SIGKILL) {
            eprintln!("loadtest confine: {name} was OOM-killed (memory limit {limit})");
        } else {
            eprintln!(
                "loadtest confine: a process started by {name} was OOM-killed (memory limit {limit})"
            );
        }
    }
    drop(cgroup);
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(ExitCode::from(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}

/// The cgroup's OOM-kill count after a process in it ended. The kernel counts the kill
/// just after sending SIGKILL, which is nearly always before the victim's exit is seen;
/// when the death was by SIGKILL, wait up to 200 ms for the count to catch up.
pub(crate) fn wait_for_oom_count(cgroup: &Cgroup, before: u64, sigkilled: bool) -> u64 {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        let now = cgroup.oom_kills().unwrap_or(before);
        if now > before || !sigkilled || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        let cases: &[(&str, u64)] = &[
            ("2G", 2 << 30),
            ("2g", 2 << 30),
            ("2GiB", 2 << 30),
            ("2GB", 2 << 30),
            ("512M", 512 << 20),
            ("1.5G", 3 << 29),
            ("64MiB", 64 << 20),
            ("4k", 4096),
            ("1048576", 1_048_576),
            ("100B", 100),
            (" 3 M ", 3 << 20),
            ("1T", 1 << 40),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_memory_size(text), Ok(*bytes), "{text}");
        }
        for junk in [
            "",
            "0",
            "0M",
            "-1G",
            "G",
            "abc",
            "1.2.3G",
            "2X",
            "1.5",
            "1e9",
            "99999999999999999999",
            "20000000000T",
        ] {
            let error = parse_memory_size(junk).expect_err(junk);
            assert!(error.contains("invalid memory size"), "{junk}: {error}");
        }
    }

    #[test]
    fn bytes_are_formatted_in_binary_units() {
        assert_eq!(format_bytes(2 << 30), "2.0 GiB");
        assert_eq!(format_bytes(64 << 20), "64.0 MiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(12), "12 B");
    }

    #[test]
    fn limits_are_validated() {
        assert!(
            Limits {
                cpus: Some(0.0),
                memory_bytes: None
            }
            .validate()
            .is_err()
        );
        assert!(
            Limits {
                cpus: Some(f64::NAN),
                memory_bytes: None
            }
            .validate()
            .is_err()
        );
        assert!(
            Limits {
                cpus: None,
                memory_bytes: Some(0)
            }
            .validate()
            .is_err()
        );
        for tiny in [1, 4096, MIN_MEMORY_BYTES - 1] {
            let error = Limits {
                cpus: Some(0.5),
                memory_bytes: Some(tiny),
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(error.contains("at least 16.0 MiB"), "{error}");
        }
        assert!(
            Limits {
                cpus: Some(0.5),
                memory_bytes: Some(MIN_MEMORY_BYTES)
            }
            .validate()
            .is_ok()
        );
        assert_eq!(cpu_quota_us(1.0), 10_000);
        assert_eq!(cpu_quota_us(0.5), 5_000);
        assert_eq!(cpu_quota_us(2.5), 25_000);
        assert_eq!(
            Limits {
                cpus: Some(1.0),
                memory_bytes: Some(2 << 30)
            }
            .to_string(),
            "1 CPU, 2.0 GiB"
        );
    }

    #[test]
    fn cores_are_the_last_ones_and_only_when_fewer_than_all() {
        let two = [0, 1];
        assert_eq!(pick_cores(&two, 1.0), Some(&[1][..]));
        assert_eq!(
            pick_cores(&two, 0.5),
            Some(&[1][..]),
            "a fraction takes a core"
        );
        assert_eq!(pick_cores(&two, 2.0), None, "all of them: nothing to pin");
        assert_eq!(pick_cores(&two, 3.0), None);
        let sparse = [0, 2, 5, 7];
        assert_eq!(pick_cores(&sparse, 1.5), Some(&[5, 7][..]));
        assert_eq!(pick_cores(&[], 1.0), None);
    }

    #[test]
    fn side_by_side_children_get_cores_of_their_own_then_share() {
        let four = [0, 1, 2, 3];
        assert_eq!(pick_cores_in_slot(&four, 1.0, 0), Some(vec![3]));
        assert_eq!(pick_cores_in_slot(&four, 1.0, 1), Some(vec![2]));
        assert_eq!(pick_cores_in_slot(&four, 2.0, 1), Some(vec![0, 1]));
        let two = [0, 1];
        assert_eq!(pick_cores_in_slot(&two, 1.0, 0), Some(vec![1]));
        assert_eq!(pick_cores_in_slot(&two, 1.0, 1), Some(vec![0]));
        assert_eq!(
            pick_cores_in_slot(&two, 1.0, 2),
            Some(vec![1]),
            "wraps: shares"
        );
        assert_eq!(pick_cores_in_slot(&two, 2.0, 0), None);
        assert_eq!(Cores::of(&[1]).to_string(), "core 1");
        assert_eq!(Cores::of(&[5, 7]).to_string(), "cores 5,7");
        // SAFETY: reading bits of an initialised set.
        assert!(unsafe { libc::CPU_ISSET(7, &Cores::of(&[5, 7]).set) });
    }

    #[test]
    fn keyed_values() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(text, "oom_kill"), Some(3));
        assert_eq!(keyed_value(text, "missing"), None);
    }
}
