//! Which cores a confined process is pinned to (⌈cpus⌉ of them, the last ones we may use),
//! and the cores already given to other confined processes of this lab.

use std::fmt;

/// A set of cores: as a list, and as the `cpu_set_t` the pre-exec hook hands to
/// `sched_setaffinity`.
pub(super) struct Cores {
    pub(super) list: Vec<usize>,
    pub(super) set: libc::cpu_set_t,
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
    pub(super) fn of(cores: &[usize]) -> Cores {
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

/// Cores that confined children of this process are pinned to now (one entry per child
/// and core), so the lab keeps off all of them, not only the last child's.
pub(super) static PINNED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

pub(super) fn pinned_cores() -> std::sync::MutexGuard<'static, Vec<usize>> {
    PINNED.lock().unwrap_or_else(|p| p.into_inner())
}
