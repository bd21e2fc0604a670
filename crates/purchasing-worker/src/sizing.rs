//! How many messages the reliable worker takes at once: `--prefetch auto`.
//!
//! Every prefetched message is worked on at once, and each order holds `alloc_chars`
//! bytes for its whole store call, so the prefetch is how many orders this node holds in
//! memory. `auto` is the capacity crate's memory bound — the same rule as the API's
//! `--max-in-flight auto`, one definition:
//!
//! ```text
//! prefetch = max(1, min(⌊(0.8 · memory limit − baseline RSS) / alloc_chars⌋, 1024))
//! ```
//!
//! with the memory limit from [`capacity::Environment::discover`] (the smallest cgroup
//! limit over the process's cgroups, else the machine's) and the resident memory before
//! any order. When not one order fits, the worker refuses to start, like the API: taking
//! a message anyway would only move the OOM kill from start-up to the first delivery.
//!
//! **Why the CPU bound does not apply.** The API caps admission at 70 % of what its CPUs
//! can serve so that refusals (503s) and probes keep CPU headroom and admitted requests
//! keep a low latency; a client waits on each of them. A queue worker refuses nothing —
//! the broker holds the excess, however long — and no client waits on a message being
//! worked on, so there is no latency to protect: more orders in flight than the CPUs can
//! serve only share the CPU, the same work finishes at the same rate. Memory, on the
//! other hand, is a cliff: one order too many and the kernel kills the node. So the CPU
//! bound is switched off (the rule's "allocation costs no CPU" case, which also skips the
//! start-up calibration) and memory alone decides.

use std::time::Duration;

use capacity::{Environment, MAX_AUTO_IN_FLIGHT, Sizing, SizingInputs};
use purchasing_persistence::Workload;

/// Not one order fits in the memory limit: why, in one line (the sizing rule's words),
/// and where the limit came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why} (memory limit from {limit_source})")]
pub struct NothingFits {
    pub why: String,
    pub limit_source: String,
}

/// The automatic prefetch and how it was reached, or why not one order fits.
pub fn auto_prefetch(
    environment: &Environment,
    baseline_rss_bytes: u64,
    workload: Workload,
) -> Result<(u16, Sizing), NothingFits> {
    let sizing = capacity::size(SizingInputs {
        memory_limit_bytes: environment.memory.value,
        baseline_rss_bytes,
        alloc_chars: workload.alloc_chars,
        cpus: environment.cpus.value,
        delay: workload.delay,
        // No CPU bound (see the module doc): the rule's n_cpu is unbounded when one
        // order's allocation costs no time.
        alloc_time: Duration::ZERO,
        cap: MAX_AUTO_IN_FLIGHT,
    });
    if let Some(why) = sizing.nothing_fits() {
        return Err(NothingFits {
            why,
            limit_source: environment.memory.source.to_string(),
        });
    }
    let prefetch = u16::try_from(sizing.max_in_flight).unwrap_or(u16::MAX);
    Ok((prefetch, sizing))
}

#[cfg(test)]
mod tests {
    use capacity::Limit;

    use super::*;

    fn environment(memory: u64, cpus: f64) -> Environment {
        Environment {
            memory: Limit {
                value: memory,
                source: "test".into(),
            },
            cpus: Limit {
                value: cpus,
                source: "test".into(),
            },
        }
    }

    #[test]
    fn the_emulated_vm_holds_eleven_faithful_orders() {
        // (0.8 · 2 GiB − 10 MB) / 150 MB = 11.38: the CPU (1 core) does not lower it.
        let (prefetch, sizing) =
            auto_prefetch(&environment(2 << 30, 1.0), 10_000_000, Workload::default()).unwrap();
        assert_eq!(prefetch, 11);
        assert_eq!(sizing.n_mem, 11);
        assert_eq!(sizing.n_cpu, usize::MAX, "no CPU bound");
    }

    #[test]
    fn a_tiny_workload_is_capped_and_too_little_memory_refuses_to_start() {
        let tiny = Workload {
            alloc_chars: 1000,
            delay: Duration::from_millis(5),
            release_early: false,
        };
        let (prefetch, _) = auto_prefetch(&environment(2 << 30, 1.0), 10_000_000, tiny).unwrap();
        assert_eq!(usize::from(prefetch), MAX_AUTO_IN_FLIGHT);

        let why = auto_prefetch(
            &environment(140 << 20, 4.0),
            10_000_000,
            Workload::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(why.starts_with("not one order fits in memory"), "{why}");
        assert!(why.ends_with("(memory limit from test)"), "{why}");
    }
}
