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

mod cgroup;
mod cores;
mod error;
mod files;
mod limits;
mod run;
#[cfg(test)]
mod tests;

pub use cgroup::{Cgroup, CgroupVersion};
pub use cores::cpu_set;

/// The cores this process may run on now (after the lab moved itself off a confined
/// child's): the `client` host's cores in the report.
pub fn cores_allowed_now() -> Option<Vec<usize>> {
    cores::Cores::allowed_now().filter(|cores| !cores.is_empty())
}

/// The cores `children` confined children of `cpus` each will leave free, before any of
/// them starts (`None`: none left, or they are not pinned): where the lab puts what must
/// not run inside an emulated VM — itself and its brokers.
pub fn cores_left_by_confined(cpus: f64, children: usize) -> Option<Vec<usize>> {
    cores::cores_left(&cores::Cores::allowed()?, cpus, children)
}
pub use error::{CONFINE_REQUIREMENTS, ConfineError};
pub use limits::{Limits, MIN_MEMORY_BYTES, format_bytes, parse_memory_size};
pub use run::run_confined;
pub(crate) use run::wait_for_oom_count;
