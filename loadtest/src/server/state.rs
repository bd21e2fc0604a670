//! The state the supervisor, the sampler and the handle share: the live child, crashes,
//! the stop request, samples.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::confine::Cgroup;

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) changed: Condvar,
    pub(super) crashes: AtomicU64,
}

#[derive(Default)]
pub(super) struct State {
    /// The server process alive now (not reaped yet: its PID cannot be reused).
    pub(super) child: Option<LiveChild>,
    pub(super) stop_requested: bool,
    pub(super) sampler_stop: bool,
    pub(super) supervisor_done: bool,
    /// CPU seconds of the server processes already reaped.
    pub(super) cpu_carried_s: f64,
    pub(super) crashes: Vec<RawCrash>,
    pub(super) restarts: u64,
    /// When each restarted server was listening again.
    pub(super) restarted_at: Vec<Instant>,
    pub(super) gave_up: Option<String>,
    /// How the process that was running when stop was requested ended.
    pub(super) final_exit: Option<Exit>,
    /// Where the running server answers `/metrics`, once it has printed its address.
    pub(super) metrics_addr: Option<SocketAddr>,
    /// A SIGKILL the lab sent on purpose ([`ServerHandle::inject_kill`]) whose exit has
    /// not been classified yet: that exit is recorded as an injected crash.
    pub(super) kill_injected: bool,
    /// How long the injected kill keeps the server down before its restart (a machine
    /// that takes time to come back), beyond the usual backoff.
    pub(super) injected_downtime: Duration,
    /// A SIGTERM the fault plan sent (`stop`) whose exit has not been seen yet: that exit
    /// is not a crash, and the server stays down while [`State::held`].
    pub(super) stop_injected: bool,
    /// Stopped by the fault plan and not started again yet (`start` clears it).
    pub(super) held: bool,
}

/// What the lab did on purpose to the process whose exit the supervisor just reaped.
pub(super) struct Injected {
    /// It was killed with SIGKILL (`kill`): a crash whose cause says "injected".
    pub(super) kill: bool,
    /// How long to keep it down before the restart.
    pub(super) downtime: Duration,
    /// It was stopped cleanly (`stop`): no crash; down until started.
    pub(super) stop: bool,
}

impl State {
    /// Takes (and clears) what was injected into the process that just exited.
    pub(super) fn take_injected(&mut self) -> Injected {
        Injected {
            kill: std::mem::take(&mut self.kill_injected),
            downtime: std::mem::take(&mut self.injected_downtime),
            stop: std::mem::take(&mut self.stop_injected),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct LiveChild {
    pub(super) pid: u32,
}

pub(super) struct RawCrash {
    pub(super) at: Instant,
    pub(super) cause: String,
    pub(super) oom_killed: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RawSample {
    pub(super) at: Instant,
    pub(super) memory: Option<u64>,
    pub(super) rss: Option<u64>,
    pub(super) cpu_percent: Option<f64>,
    pub(super) threads: Option<u64>,
    pub(super) admission_limit: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Exit {
    /// `None` when the status could not be read (someone else reaped the process).
    pub(super) status: Option<ExitStatus>,
    /// Whether a stop was already requested when the process was reaped. `stop` signals
    /// the child and the supervisor reaps it under the same lock, so this tells exactly
    /// whether this exit was asked for (true) or a crash that `stop` did not see (false).
    pub(super) stop_requested: bool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take supervision down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until `condition` holds or `deadline` passes; returns whether it holds.
    pub(super) fn wait_until(&self, deadline: Instant, condition: impl Fn(&State) -> bool) -> bool {
        let mut state = self.lock();
        loop {
            if condition(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = match self.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.lock().stop_requested
    }
}

/// The threads that watch one server, joined when it is stopped.
pub(super) struct Threads {
    pub(super) supervisor: JoinHandle<()>,
    pub(super) sampler: JoinHandle<Vec<RawSample>>,
    pub(super) cgroup: Option<Arc<Cgroup>>,
}
