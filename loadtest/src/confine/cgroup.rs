//! [`Cgroup`]: creating one under ours on cgroup v2 or v1, setting its CPU quota and
//! memory limit, making a child join it before `exec`, reading its counters, removing it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cgroup_info::Cgroups;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cores::{Cores, pick_cores_in_slot, pinned_cores};
use super::error::{ConfineError, io_error};
use super::files::{
    enable_subtree_controllers, keyed_value, read_u64, read_words, subtree_has, write_file,
};
use super::limits::Limits;

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
pub(super) const CPU_PERIOD_US: u64 = 10_000;
/// v1 reports "no memory limit" as a page-aligned `i64::MAX`; anything this big is none.
pub(super) const V1_NO_LIMIT_THRESHOLD: u64 = 1 << 60;

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

pub(super) static NEXT_CGROUP: AtomicU64 = AtomicU64::new(0);

pub(super) fn unique_name() -> String {
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

    pub(super) fn create_any(limits: &Limits) -> Result<Cgroup, ConfineError> {
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

    pub(super) fn create_v2(
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

    pub(super) fn create_v1(cgroups: &Cgroups, limits: &Limits) -> Result<Cgroup, ConfineError> {
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
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
                        .map_err(io::Error::from)?;
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
            // A thread that has exited meanwhile only makes it fail.
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &ours.set);
        }
        Some(format!("{ours}{shared}"))
    }

    /// The cores the child is pinned to (`None`: not pinned).
    pub fn pinned_cores(&self) -> Option<Vec<usize>> {
        self.cores.as_ref().map(|c| c.list.clone())
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
                                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
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
pub(super) fn join_cgroup(file: &CString) -> io::Result<()> {
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

pub(super) fn cpu_quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

pub(super) fn procs_file(dir: &Path) -> Result<CString, ConfineError> {
    let path = dir.join("cgroup.procs");
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        ConfineError::Unsupported(format!(
            "the cgroup path {} contains a NUL byte",
            path.display()
        ))
    })
}
