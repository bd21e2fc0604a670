//! Admitted orders first (`--prioritize-work`, on with `--protect`): the async side —
//! accepting connections, answering 503s, `/health`, `/metrics` — runs at a lower CPU
//! priority (nice [`CONTROL_NICE`]) than the orders' work (nice 0, on the threads of
//! [`crate::work_pool`]).
//!
//! Why this way round. An earlier version did the opposite: order work in `SCHED_IDLE`,
//! so that refusals stayed fast. Under a refusal flood that starves the work: clients that
//! resend the moment they are refused make as many requests as the async worker has CPU
//! to refuse, so the worker is always runnable, and idle-class work only gets the gaps.
//! Measured in the emulated VM (1 CPU, 1 GiB, `--protect`, 200 clients without think
//! time): the worker took 60–77 % of the core, the orders 21–25 %, and goodput fell to
//! 2.8/s against 7.6–7.9/s at a moderate overload (0.1–0.85/s when the load generator
//! shared the core). With equal priorities it reached 75–82 %; with the worker at nice 5,
//! 97–103 %, at the price of a 503 p99 of 4–9 ms instead of 1–4 ms at a moderate load
//! (nice 10 also kept the goodput but pushed `/health`'s median to 26 ms).
//!
//! Nice values weigh the CPU shares of threads that want it at the same time (nice 5 gets
//! about a third of nice 0's share); they starve nobody, so `/health` still answers under
//! any flood. Raising one's own nice value needs no privilege; lowering it back does, so
//! the order threads are never created by a lowered thread (see [`crate::work_pool`]).
//!
//! The thread id and errno come from nix; `setpriority` and `getpriority` are raw libc
//! calls, because nix has no wrapper for them.

/// The nice value of the async side under `--prioritize-work`.
pub const CONTROL_NICE: i32 = 5;

/// Lowers the calling thread's CPU priority to nice [`CONTROL_NICE`] (Linux: nice is per
/// thread). Best effort: if the kernel refuses, a warning is logged and the thread keeps
/// its priority.
pub fn lower_current_thread() {
    #[cfg(target_os = "linux")]
    {
        let tid = nix::unistd::gettid().as_raw() as libc::id_t;
        // nix has no wrapper for setpriority/getpriority, so these two calls stay libc.
        // SAFETY: setpriority takes plain integers (our own thread id) and no memory.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, CONTROL_NICE) };
        if rc != 0 {
            tracing::warn!(
                error = %nix::errno::Errno::last(),
                "cannot lower the server's control threads' CPU priority; orders and refusals \
                 share the CPU equally"
            );
        }
    }
}

/// The calling thread's nice value (Linux), for tests and diagnostics.
pub fn current_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        use nix::errno::Errno;
        let tid = nix::unistd::gettid().as_raw() as libc::id_t;
        // getpriority returns -1 both as a value and as an error: clear errno to tell.
        Errno::clear();
        // SAFETY: getpriority takes plain integers (our own thread id) and no memory.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        let failed = nice == -1 && Errno::last_raw() != 0;
        (!failed).then_some(nice)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_thread_is_lowered_alone() {
        let before = current_nice();
        std::thread::spawn(|| {
            lower_current_thread();
            assert_eq!(current_nice(), Some(CONTROL_NICE));
        })
        .join()
        .unwrap();
        assert_eq!(current_nice(), before, "only the calling thread");
    }
}
