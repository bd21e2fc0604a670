//! Idle CPU priority for the orders' work (`--idle-priority-work`, on with `--protect`).
//!
//! The expensive part of an order (filling 150 MB: page faults, kernel time) runs on
//! tokio's blocking pool; everything that must stay fast — admission decisions, 503s,
//! `/health`, `/metrics` — runs on the async worker. Under a CPU quota the kernel shares
//! the CPU fairly between all runnable threads, so one worker against seven page-faulting
//! orders gets an eighth of it and a refusal waits a whole scheduling round. Moving the
//! work threads to `SCHED_IDLE` lets the worker preempt them whenever it has something to
//! do, while the work still uses every cycle the worker leaves.

use std::cell::Cell;

thread_local! {
    /// Blocking-pool threads are reused: set the policy once per thread.
    static IDLE: Cell<bool> = const { Cell::new(false) };
}

/// Puts the calling thread in the `SCHED_IDLE` class (Linux), once per thread. Best
/// effort: if the kernel refuses, the work runs at normal priority and a warning is logged
/// once per thread.
pub fn make_current_thread_idle() {
    IDLE.with(|idle| {
        if idle.replace(true) {
            return;
        }
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler with pid 0 changes only the calling thread's policy;
        // `param` is a valid, initialised struct that outlives the call.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot lower the order work's CPU priority; continuing at normal priority"
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_becomes_idle_class() {
        std::thread::spawn(|| {
            make_current_thread_idle();
            // SAFETY: querying the calling thread's policy has no preconditions.
            let policy = unsafe { libc::sched_getscheduler(0) };
            assert_eq!(policy, libc::SCHED_IDLE);
            make_current_thread_idle(); // idempotent
        })
        .join()
        .unwrap();
    }
}
