//! The supervisor: launches the server and waits for its `listening on` line, reaps it,
//! records each crash with its cause, restarts it (with backoff, up to
//! [`MAX_RESTARTS`]), and stops it on request.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::confine::{Cgroup, format_bytes};
use crate::report::CrashEvent;

use super::output::{LineSplitter, Tail, for_each_chunk, format_tail, tail_after_close, truncate};
use super::process::{describe_status, die_with_spawning_thread, signal, wait_for_exit_unreaped};
use super::sampler::{samples_since, seconds_since, system_oom_kills, timeval_s};
use super::spec::{
    MAX_RESTARTS, READY_TIMEOUT, RESTART_BACKOFF, START_ATTEMPTS_PER_RESTART, ServerObservations,
    SutKind,
};
use super::state::Threads;
use super::state::{Exit, LiveChild, RawCrash, Shared};

/// The longest a server stopped by the fault plan (`stop`) waits for its `start`: a
/// bound for the thread, far beyond any run (the run's own stop ends the wait first).
const HELD_AT_MOST: Duration = Duration::from_secs(24 * 3600);

/// Starts server processes; used by the supervisor thread only (it is their parent
/// thread for `PR_SET_PDEATHSIG`, and their only reaper).
pub(super) struct Launcher {
    pub(super) kind: SutKind,
    pub(super) binary: PathBuf,
    /// `--orders-file PATH` and the user's arguments (everything but `--bind`).
    pub(super) fixed_args: Vec<String>,
    pub(super) cgroup: Option<Arc<Cgroup>>,
    /// The host's network namespace (`--network`), joined before exec.
    pub(super) netns: Option<crate::network::Netns>,
    pub(super) log: Option<Arc<Mutex<File>>>,
    pub(super) shared: Arc<Shared>,
}

/// A server that printed its address.
pub(super) struct Launched {
    pub(super) pid: u32,
    pub(super) addr: SocketAddr,
    /// The cgroup's (or, unconfined, the system's) OOM-kill count at its start.
    pub(super) oom_before: Option<u64>,
    pub(super) tail: Arc<Mutex<Tail>>,
}

/// Why a server did not become ready: one line, with its last stderr lines.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(super) struct LaunchFailure {
    pub(super) message: String,
}

impl Launcher {
    pub(super) fn oom_count(&self) -> Option<u64> {
        match &self.cgroup {
            Some(cgroup) => cgroup.oom_kills(),
            None => system_oom_kills(),
        }
    }

    pub(super) fn name(&self) -> String {
        self.binary.display().to_string()
    }

    /// Starts one server process on `bind` and waits for its `listening on` line.
    pub(super) fn launch(&self, bind: SocketAddr) -> Result<Launched, LaunchFailure> {
        let oom_before = self.oom_count();
        let mut child = self.command(bind).spawn().map_err(|e| LaunchFailure {
            message: format!(
                "cannot start {} {}{}: {e}; check the path to the {name} binary (build it with `cargo build -p {name}`)",
                self.kind.describe(),
                self.name(),
                self.cgroup
                    .as_ref()
                    .map(|c| format!(" in its cgroup ({})", c.version()))
                    .unwrap_or_default(),
                name = self.kind.binary_name()
            ),
        })?;
        let pid = child.id();
        {
            let mut state = self.shared.lock();
            state.child = Some(LiveChild { pid });
            if state.stop_requested {
                signal(pid, libc::SIGKILL);
            }
        }
        let tail = Arc::new(Mutex::new(Tail::default()));
        let address = child.stdout.take().map(watch_for_address);
        if let Some(stderr) = child.stderr.take() {
            keep_stderr(stderr, Arc::clone(&tail), self.log.clone());
        }
        drop(child); // std's Child neither kills nor reaps on drop: we reap by PID.
        let ready = match address {
            Some(address) => address.recv_timeout(READY_TIMEOUT),
            None => Err(mpsc::RecvTimeoutError::Disconnected),
        };
        match ready {
            Ok(addr) => {
                // (Also where the sampler reads the admission limit.)
                self.shared.lock().metrics_addr = Some(addr);
                Ok(Launched {
                    pid,
                    addr,
                    oom_before,
                    tail,
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.exited_early(pid, &tail)),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(self.kill_unready(pid, &tail)),
        }
    }

    /// The server's command line, confined to its cgroup and tied to this thread's life.
    fn command(&self, bind: SocketAddr) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg(self.kind.bind_flag())
            .arg(bind.to_string())
            .args(&self.fixed_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cgroup) = &self.cgroup {
            cgroup.confine_command(&mut command);
        }
        if let Some(netns) = &self.netns {
            netns.enter_on_exec(&mut command);
        }
        // Die with the thread that starts it (the supervisor), i.e. with the lab.
        die_with_spawning_thread(&mut command);
        command
    }

    /// The server ended before it printed its address.
    fn exited_early(&self, pid: u32, tail: &Mutex<Tail>) -> LaunchFailure {
        let exit = self.reap(pid);
        let last = tail_after_close(tail);
        LaunchFailure {
            message: format!(
                "{} ({}) {} before it was ready (it never printed `listening on http://ADDR`){}",
                self.kind.describe(),
                self.name(),
                describe_status(exit.status),
                format_tail(&last)
            ),
        }
    }

    /// The server did not print its address in time: killed and reaped.
    fn kill_unready(&self, pid: u32, tail: &Mutex<Tail>) -> LaunchFailure {
        if let Some(child) = &self.shared.lock().child {
            signal(child.pid, libc::SIGKILL);
        }
        self.reap(pid);
        let last = tail_after_close(tail);
        LaunchFailure {
            message: format!(
                "{} ({}) did not print `listening on http://ADDR` within {} s, so it was killed{}",
                self.kind.describe(),
                self.name(),
                READY_TIMEOUT.as_secs(),
                format_tail(&last)
            ),
        }
    }

    /// Waits for `pid` to end and reaps it, adding its CPU time to the carried total.
    /// The reaping happens under the state lock, after `child` is cleared, so nobody
    /// signals a reaped (reusable) PID.
    pub(super) fn reap(&self, pid: u32) -> Exit {
        let raw_pid = pid as libc::pid_t;
        wait_for_exit_unreaped(pid);
        let mut state = self.shared.lock();
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data (integers and timevals) for which all-zero is valid.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // wait4 stays libc: nix has no wrapper that returns the reaped child's own rusage
        // (getrusage(RUSAGE_CHILDREN) sums every child this process ever reaped).
        // SAFETY: `status` and `usage` are valid for writes for the whole call.
        let reaped = unsafe { libc::wait4(raw_pid, &mut status, 0, &mut usage) };
        state.child = None;
        let status = (reaped == raw_pid).then(|| {
            state.cpu_carried_s += timeval_s(usage.ru_utime) + timeval_s(usage.ru_stime);
            ExitStatus::from_raw(status)
        });
        let exit = Exit {
            status,
            stop_requested: state.stop_requested,
        };
        drop(state);
        self.shared.changed.notify_all();
        exit
    }

    /// Why a server that was running ended: (cause, OOM-killed).
    pub(super) fn classify(&self, exit: Exit, launched: &Launched) -> (String, bool) {
        let sigkilled = exit.status.and_then(|s| s.signal()) == Some(libc::SIGKILL);
        match (&self.cgroup, launched.oom_before) {
            (Some(cgroup), Some(before)) if sigkilled => {
                let now = crate::confine::wait_for_oom_count(cgroup, before, true);
                if now > before {
                    let limit = cgroup
                        .memory_limit_bytes()
                        .map(|l| format!(", memory limit {}", format_bytes(l)))
                        .unwrap_or_default();
                    return (
                        format!("OOM-killed (SIGKILL from the kernel's OOM killer{limit})"),
                        true,
                    );
                }
            }
            (None, before) if sigkilled => {
                let rose = matches!((before, system_oom_kills()), (Some(b), Some(n)) if n > b);
                return (
                    if rose {
                        "killed by SIGKILL; not confined, but the system's OOM-kill count rose meanwhile: probably the OOM killer".to_string()
                    } else {
                        "killed by SIGKILL (not confined: an OOM kill cannot be told from a kill -9)".to_string()
                    },
                    false,
                );
            }
            _ => {}
        }
        let mut cause = describe_status(exit.status);
        if exit.status.and_then(|s| s.code()).is_some_and(|c| c != 0) {
            let lines = tail_after_close(&launched.tail);
            if let Some(line) = lines
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("note: "))
            {
                cause.push_str(&format!(" ({})", truncate(line.trim(), 200)));
            }
        }
        (cause, false)
    }
}

/// Reads the server's stdout on a thread of its own: sends the address of its
/// `listening on http://ADDR` line, then keeps draining (so the server never blocks on a
/// full pipe).
fn watch_for_address(stdout: std::process::ChildStdout) -> mpsc::Receiver<SocketAddr> {
    let (line_tx, line_rx) = mpsc::channel::<SocketAddr>();
    let _ = std::thread::Builder::new()
        .name("server-stdout".to_string())
        .spawn(move || {
            let mut sender = Some(line_tx);
            let mut splitter = LineSplitter::default();
            for_each_chunk(stdout, |chunk| {
                if sender.is_some() {
                    splitter.feed(chunk, |line| {
                        if let Some(addr) = line
                            .trim()
                            .strip_prefix("listening on http://")
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            && let Some(tx) = sender.take()
                        {
                            let _ = tx.send(addr);
                        }
                    });
                }
            });
        });
    line_rx
}

/// Reads the server's stderr on a thread of its own: copies it to the log as it comes
/// (one write per read) and keeps the last lines for the crash report.
fn keep_stderr(
    stderr: std::process::ChildStderr,
    tail: Arc<Mutex<Tail>>,
    log: Option<Arc<Mutex<File>>>,
) {
    let _ = std::thread::Builder::new()
        .name("server-stderr".to_string())
        .spawn(move || {
            let mut splitter = LineSplitter::default();
            for_each_chunk(stderr, |chunk| {
                if let Some(log) = &log
                    && let Ok(mut file) = log.lock()
                {
                    let _ = file.write_all(chunk);
                }
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                splitter.feed(chunk, |line| tail.push(line));
            });
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            splitter.finish(|line| tail.push(line));
            tail.closed = true;
        });
}

/// The supervisor thread: first start, then watch, classify, restart.
pub(super) fn supervise(
    shared: &Shared,
    launcher: &Launcher,
    restart_on_crash: bool,
    initial_bind: SocketAddr,
    ready: mpsc::Sender<Result<SocketAddr, LaunchFailure>>,
) {
    let finish = |shared: &Shared| {
        shared.lock().supervisor_done = true;
        shared.changed.notify_all();
    };
    let mut current = match launcher.launch(initial_bind) {
        Ok(launched) => launched,
        Err(failure) => {
            let _ = ready.send(Err(failure));
            finish(shared);
            return;
        }
    };
    // Every restart takes the first launch's port, so the URL stays the same.
    let bind = SocketAddr::new(initial_bind.ip(), current.addr.port());
    let _ = ready.send(Ok(current.addr));
    drop(ready);

    loop {
        let exit = launcher.reap(current.pid);
        let Some(downtime) = after_exit(shared, launcher, exit, &current, restart_on_crash) else {
            break;
        };
        match relaunch(shared, launcher, bind, downtime) {
            Some(launched) => {
                let mut state = shared.lock();
                state.restarts += 1;
                state.restarted_at.push(Instant::now());
                drop(state);
                current = launched;
            }
            None => break,
        }
    }
    finish(shared);
}

/// What follows the server's exit: `None` when it stays down (the run stops it, or a
/// crash is not to be restarted), else how long it stays down first. A clean stop by the
/// fault plan waits here for its start; a kill or a crash is recorded as a crash.
fn after_exit(
    shared: &Shared,
    launcher: &Launcher,
    exit: Exit,
    current: &Launched,
    restart_on_crash: bool,
) -> Option<Duration> {
    let at = Instant::now();
    if exit.stop_requested {
        shared.lock().final_exit = Some(exit);
        return None;
    }
    let injected = shared.lock().take_injected();
    if injected.stop {
        // Not a crash: down until the plan asks for a start (or the run stops it for good).
        let started = shared.wait_until(Instant::now() + HELD_AT_MOST, |s| {
            !s.held || s.stop_requested
        });
        if !started || shared.stop_requested() {
            shared.lock().final_exit = Some(exit);
            return None;
        }
        return Some(Duration::ZERO);
    }
    let (cause, oom_killed) = if injected.kill {
        let cause = "injected: SIGKILL sent by the lab (fault injection)";
        (cause.to_string(), false)
    } else {
        launcher.classify(exit, current)
    };
    let stays_down = record_crash(shared, at, cause, oom_killed, restart_on_crash);
    (!stays_down).then_some(injected.downtime)
}

/// Starts the server again on `bind` after `downtime`, with backoff between attempts;
/// `None` when the run stops it meanwhile or every attempt failed (recorded as given up).
fn relaunch(
    shared: &Shared,
    launcher: &Launcher,
    bind: SocketAddr,
    downtime: Duration,
) -> Option<Launched> {
    for attempt in 1..=START_ATTEMPTS_PER_RESTART {
        let pause = RESTART_BACKOFF * attempt
            + if attempt == 1 {
                downtime
            } else {
                Duration::ZERO
            };
        if shared.wait_until(Instant::now() + pause, |s| s.stop_requested) {
            return None;
        }
        match launcher.launch(bind) {
            Ok(launched) => return Some(launched),
            Err(_) if shared.stop_requested() => return None,
            Err(failure) if attempt == START_ATTEMPTS_PER_RESTART => {
                shared.lock().gave_up = Some(format!(
                    "could not restart the server after {attempt} attempts: {failure}"
                ));
            }
            Err(_) => {}
        }
    }
    None
}

/// Records a crash; returns whether supervision ends here (no restarts wanted, or the
/// cap on restarts reached).
fn record_crash(
    shared: &Shared,
    at: Instant,
    cause: String,
    oom_killed: bool,
    restart_on_crash: bool,
) -> bool {
    let mut state = shared.lock();
    state.crashes.push(RawCrash {
        at,
        cause,
        oom_killed,
    });
    shared.crashes.fetch_add(1, Ordering::Relaxed);
    if !restart_on_crash {
        return true;
    }
    if state.restarts >= MAX_RESTARTS {
        state.gave_up = Some(format!(
            "the server crashed again after {MAX_RESTARTS} restarts (the cap per run), so it was left down"
        ));
        return true;
    }
    false
}

/// No more restarts; SIGTERM to the server if one is running (returns whether one was).
pub(super) fn request_stop(shared: &Shared) -> bool {
    let was_running = {
        let mut state = shared.lock();
        state.stop_requested = true;
        match &state.child {
            Some(child) => {
                // A paused server (the fault plan's `pause`) would hold SIGTERM until
                // the grace is over.
                signal(child.pid, libc::SIGCONT);
                signal(child.pid, libc::SIGTERM);
                true
            }
            None => false,
        }
    };
    shared.changed.notify_all();
    was_running
}

/// Waits `grace` for the supervisor to see the server exit after SIGTERM; past it, kills
/// the server. Whether it exited within the grace period.
fn wait_or_kill(shared: &Shared, grace: Duration) -> bool {
    if shared.wait_until(Instant::now() + grace, |s| s.supervisor_done) {
        return true;
    }
    if let Some(child) = &shared.lock().child {
        signal(child.pid, libc::SIGKILL);
    }
    shared.wait_until(Instant::now() + Duration::from_secs(10), |s| {
        s.supervisor_done
    });
    false
}

/// The report's `stop_outcome`: how the server ended when the run stopped it.
fn describe_stop(
    was_running: bool,
    held: bool,
    in_grace: bool,
    final_status: Option<ExitStatus>,
    grace: Duration,
) -> String {
    if !was_running && held {
        "was not running when the stop was asked (stopped by the fault plan)".to_string()
    } else if !was_running {
        "was not running when the stop was asked (it had crashed)".to_string()
    } else if in_grace {
        format!("{} after SIGTERM", describe_status(final_status))
    } else {
        format!(
            "did not exit within the {:.1} s grace period after SIGTERM, so it was killed with SIGKILL",
            grace.as_secs_f64()
        )
    }
}

/// The waiting half of [`ServerHandle::stop`], after [`request_stop`].
pub(super) fn stop_blocking(
    shared: &Shared,
    threads: Threads,
    confinement: &str,
    was_running: bool,
    grace: Duration,
    epoch: Instant,
) -> ServerObservations {
    let in_grace = wait_or_kill(shared, grace);
    let supervisor_done = shared.lock().supervisor_done;
    if supervisor_done {
        let _ = threads.supervisor.join();
    }
    shared.lock().sampler_stop = true;
    shared.changed.notify_all();
    let raw_samples = threads.sampler.join().unwrap_or_default();

    let cgroup = threads.cgroup;
    let state = shared.lock();
    let final_status = state.final_exit.and_then(|e| e.status);
    let stopped_cleanly =
        was_running && in_grace && final_status.is_some_and(|s| s.code() == Some(0));
    let stop_outcome = describe_stop(was_running, state.held, in_grace, final_status, grace);

    let samples = samples_since(&raw_samples, epoch);
    let sampled_peak = raw_samples.iter().filter_map(|s| s.memory).max();
    let observations = ServerObservations {
        samples,
        crashes: state
            .crashes
            .iter()
            .map(|c| CrashEvent {
                t_s: seconds_since(epoch, c.at),
                cause: c.cause.clone(),
                oom_killed: c.oom_killed,
            })
            .collect(),
        restarts: state.restarts,
        restarted_at_s: state
            .restarted_at
            .iter()
            .map(|at| seconds_since(epoch, *at))
            .collect(),
        memory_limit_bytes: cgroup.as_ref().and_then(|c| c.memory_limit_bytes()),
        cpu_limit: cgroup.as_ref().and_then(|c| c.cpu_limit()),
        cpu_seconds: Some(state.cpu_carried_s),
        confinement: confinement.to_string(),
        stopped_cleanly,
        peak_memory_bytes: cgroup
            .as_ref()
            .and_then(|c| c.memory_peak_bytes())
            .or(sampled_peak),
        oom_kills: cgroup.as_ref().and_then(|c| c.oom_kills()),
        cpu_throttled_s: cgroup.as_ref().and_then(|c| c.cpu_throttled_seconds()),
        gave_up_restarting: state.gave_up.clone(),
        stop_outcome,
    };
    drop(state);
    // Last reference once the supervisor has ended: this removes the cgroup.
    drop(cgroup);
    observations
}
