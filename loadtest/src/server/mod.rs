//! Spawning, confining, sampling and supervising the system under test's process: the
//! purchasing API (the RPC half) or the purchasing worker (the messaging half), chosen by
//! [`SutKind`]. Both print `listening on http://ADDR` as their only stdout line, answer
//! `/metrics` there, write the same orders file and stop cleanly on SIGTERM, so one
//! supervisor serves both; only the flag naming the address differs (`--bind` for the API,
//! `--http-bind` for the worker's probe server).
//!
//! [`ServerHandle::start`] runs `BINARY BIND_FLAG 127.0.0.1:0 --orders-file PATH LAB_ARGS
//! ARGS...` — inside a fresh cgroup when limits are given — and waits for its
//! `listening on http://ADDR` line. Two threads then watch it:
//!
//! - the **supervisor** waits for the process to end. An end that [`ServerHandle::stop`]
//!   did not ask for is a crash, recorded with its time and cause ("OOM-killed" when it
//!   died of SIGKILL and the cgroup's OOM-kill counter rose). With `restart_on_crash` it
//!   starts the server again on the same port, in the same cgroup, after
//!   [`RESTART_BACKOFF`], at most [`MAX_RESTARTS`] times per run so a crash loop cannot
//!   burn the CPU the load generator needs; without it the server stays down and requests
//!   are refused, which is what the experiment is meant to show.
//! - the **sampler** reads, every `sample_every`, the cgroup's memory usage, the process's
//!   RSS, thread count and CPU time (carried across restarts).
//!
//! Plain threads rather than tasks: the supervisor reaps its children itself (`wait4`, so
//! it gets each one's exact CPU time) and is the only one that does, so a signal is never
//! sent to a PID that was already reaped and reused. The server is started from the
//! supervisor thread with `PR_SET_PDEATHSIG`: if the lab dies, so does the server; and a
//! [`ServerHandle`] dropped without [`ServerHandle::stop`] kills it. No stray servers.

mod handle;
mod merge;
mod output;
mod process;
mod sampler;
mod spec;
mod state;
mod supervisor;
#[cfg(test)]
mod tests;

pub use handle::ServerHandle;
pub(crate) use output::join_last_lines;
pub use process::signal_name;
pub(crate) use process::{
    describe_status, die_with_spawning_thread, is_stopped, signal, signal_group,
    wait_for_exit_unreaped,
};
pub(crate) use sampler::{process_cpu_seconds, scrape_gauge, scrape_metrics, seconds_since};

pub use spec::{
    MAX_RESTARTS, READY_TIMEOUT, RESTART_BACKOFF, ServerObservations, ServerSpec, SutKind,
};
