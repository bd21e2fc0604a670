//! Which cores a confined process is pinned to (⌈cpus⌉ of them, the last ones we may use),
//! and the cores already given to other confined processes of this lab.

use std::fmt;

use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

/// A set of cores: as a list, and as the CPU set the pre-exec hook hands to
/// `sched_setaffinity`.
pub(super) struct Cores {
    pub(super) list: Vec<usize>,
    pub(super) set: CpuSet,
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
    pub(super) fn for_cpus(cpus: f64) -> Option<Cores> {
        let allowed = Cores::allowed()?;
        pick_cores(&allowed, cpus).map(Cores::of)
    }

    /// The cores this process could run on when it first asked — before the lab moved
    /// itself off a child's cores, so a second confined run (a comparison) picks the same
    /// cores as the first.
    pub(super) fn allowed() -> Option<Vec<usize>> {
        static FIRST: std::sync::OnceLock<Option<Vec<usize>>> = std::sync::OnceLock::new();
        FIRST.get_or_init(Self::allowed_now).clone()
    }

    /// The cores the calling thread may run on now.
    pub(super) fn allowed_now() -> Option<Vec<usize>> {
        let set = sched_getaffinity(Pid::from_raw(0)).ok()?;
        Some(
            (0..CpuSet::count())
                .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                .collect(),
        )
    }

    /// These cores (each below `CPU_SETSIZE`, as `sched_getaffinity` reports them).
    pub(super) fn of(cores: &[usize]) -> Cores {
        Cores {
            list: cores.to_vec(),
            set: cpu_set(cores),
        }
    }
}

/// The CPU set of `cores`, for `sched_setaffinity`; an index past `CPU_SETSIZE` (which
/// `sched_getaffinity` never reports) is left out.
pub fn cpu_set(cores: &[usize]) -> CpuSet {
    let mut set = CpuSet::new();
    for &cpu in cores {
        let _ = set.set(cpu);
    }
    set
}

/// The last ⌈cpus⌉ of `allowed`, or `None` when that is all of them.
pub(super) fn pick_cores(allowed: &[usize], cpus: f64) -> Option<&[usize]> {
    let wanted = (cpus.ceil() as usize).max(1);
    (wanted < allowed.len()).then(|| &allowed[allowed.len() - wanted..])
}

/// The ⌈cpus⌉ cores of `allowed` for the `slot`-th of several confined children (a
/// scaled-out run's nodes): slot 0 takes the last cores (as [`pick_cores`]), slot 1 the
/// ones before them, and so on, wrapping round when the machine has too few — then nodes
/// share cores, which [`Cgroup::describe`] shows. `None` when one child needs them all.
pub(super) fn pick_cores_in_slot(allowed: &[usize], cpus: f64, slot: usize) -> Option<Vec<usize>> {
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

/// The cores of `allowed` left free by `children` confined children in slots 0, 1, …
/// ([`pick_cores_in_slot`]); `None` when the children are not pinned (one needs every
/// core) or take every core between them — then there is no side of the machine of its own.
pub(super) fn cores_left(allowed: &[usize], cpus: f64, children: usize) -> Option<Vec<usize>> {
    let mut taken = Vec::new();
    for slot in 0..children {
        taken.extend(pick_cores_in_slot(allowed, cpus, slot)?);
    }
    let left: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|c| !taken.contains(c))
        .collect();
    (!left.is_empty()).then_some(left)
}

/// Cores that confined children of this process are pinned to now (one entry per child
/// and core), so the lab keeps off all of them, not only the last child's.
pub(super) static PINNED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

pub(super) fn pinned_cores() -> std::sync::MutexGuard<'static, Vec<usize>> {
    PINNED.lock().unwrap_or_else(|p| p.into_inner())
}
