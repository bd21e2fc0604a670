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

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::confine::{Cgroup, Limits, format_bytes};
use crate::report::{CrashEvent, ServerSample};

/// Most restarts in one run; after that the server stays down and
/// [`ServerObservations::gave_up_restarting`] says why.
pub const MAX_RESTARTS: u64 = 20;
/// Pause between a crash and the restart (a process supervisor's usual backoff).
pub const RESTART_BACKOFF: Duration = Duration::from_millis(200);
/// How long the server may take to print `listening on http://ADDR`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to start the server again after one crash (the port may be briefly busy);
/// the pause grows by [`RESTART_BACKOFF`] each time.
const START_ATTEMPTS_PER_RESTART: u32 = 10;
/// Lines of the server's stderr kept for error messages.
const TAIL_LINES: usize = 20;
/// Longest line kept from the server's stdout/stderr (the rest of a line is dropped).
const MAX_LINE_BYTES: usize = 4096;

/// Which process of the system under test the lab runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SutKind {
    /// `purchasing-api`: the RPC half, answering orders over HTTP.
    #[default]
    Api,
    /// `purchasing-worker`: the messaging half's queue handler.
    Worker,
}

impl SutKind {
    /// The executable's name.
    pub fn binary_name(self) -> &'static str {
        match self {
            SutKind::Api => "purchasing-api",
            SutKind::Worker => "purchasing-worker",
        }
    }

    /// The flag giving the address it listens on (the API's orders, the worker's probes).
    pub fn bind_flag(self) -> &'static str {
        match self {
            SutKind::Api => "--bind",
            SutKind::Worker => "--http-bind",
        }
    }

    /// How errors name it.
    pub fn describe(self) -> &'static str {
        match self {
            SutKind::Api => "the purchasing API",
            SutKind::Worker => "the purchasing worker",
        }
    }

    /// Flags the lab sets itself and refuses among the user's arguments.
    pub fn lab_owned_flags(self) -> &'static [&'static str] {
        match self {
            SutKind::Api => &["--bind", "--orders-file"],
            SutKind::Worker => &["--http-bind", "--orders-file", "--amqp-url", "--delivery"],
        }
    }
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Which process it is (the API or the worker).
    pub kind: SutKind,
    /// The `purchasing-api` (or `purchasing-worker`) executable.
    pub binary: PathBuf,
    /// Passed as `--orders-file`.
    pub orders_file: PathBuf,
    /// Flags the lab itself adds after `--orders-file` (the worker's `--amqp-url` and
    /// `--delivery`); the user's [`ServerSpec::args`] may not repeat them.
    pub lab_args: Vec<String>,
    /// Further flags (workload etc.). The bind flag, `--orders-file` and the lab's own
    /// flags ([`SutKind::lab_owned_flags`]) are refused here.
    pub args: Vec<String>,
    /// Unconfined when both are `None`; otherwise a cgroup is required.
    pub limits: Limits,
    pub restart_on_crash: bool,
    /// Sampling interval (the lab uses 250 ms; at least 10 ms is used).
    pub sample_every: Duration,
    /// The server's stderr is appended here; without it only the last lines are kept,
    /// for error messages.
    pub log_file: Option<PathBuf>,
    /// Which of several servers confined side by side this is (0 for a single one): each
    /// gets cores of its own while the machine has enough ([`Cgroup::create_in_slot`]).
    pub core_slot: usize,
}

/// What was seen of the server while it ran, with times relative to the `epoch` given to
/// [`ServerHandle::stop`].
#[derive(Debug, Clone, Default)]
pub struct ServerObservations {
    /// One per sampling interval. Samples from before the epoch are dropped except the
    /// last one, which keeps its (negative) time: the server's state when the load began.
    pub samples: Vec<ServerSample>,
    /// Every exit that `stop` did not ask for, in order (`t_s` may be negative if the
    /// server crashed before the epoch).
    pub crashes: Vec<CrashEvent>,
    /// Times the server was started again after a crash.
    pub restarts: u64,
    /// When each restarted server was listening again, in seconds since the epoch.
    pub restarted_at_s: Vec<f64>,
    /// The memory limit in force (read back from the cgroup), if any.
    pub memory_limit_bytes: Option<u64>,
    /// The CPU quota in force, in CPUs, if any.
    pub cpu_limit: Option<f64>,
    /// CPU seconds used by every server process of the run (exact, from `wait4`).
    pub cpu_seconds: Option<f64>,
    /// "cgroup v1", "cgroup v2" or "none".
    pub confinement: String,
    /// True when the server running at `stop` exited with status 0 within the grace
    /// period (it finished its in-flight orders). False when it had to be killed, failed,
    /// or was already down.
    pub stopped_cleanly: bool,
    /// Highest memory use: the cgroup's own peak counter when confined (it sees spikes
    /// between samples), else the highest sampled RSS.
    pub peak_memory_bytes: Option<u64>,
    /// OOM kills the kernel counted in the cgroup (confined runs only).
    pub oom_kills: Option<u64>,
    /// Seconds the CPU quota held the server back (confined runs with a CPU limit).
    pub cpu_throttled_s: Option<f64>,
    /// Why the supervisor stopped restarting a crashed server, if it did (restart cap
    /// reached, or the server could not be started again).
    pub gave_up_restarting: Option<String>,
    /// How the server stopped, e.g. "exited with status 0 after SIGTERM",
    /// "killed with SIGKILL after the 10 s grace period", "was not running".
    pub stop_outcome: String,
}

/// A running (and supervised) server. Stop it with [`ServerHandle::stop`]; dropping it
/// kills the server instead.
pub struct ServerHandle {
    url: String,
    addr: SocketAddr,
    command_line: Vec<String>,
    limits: Limits,
    confinement: String,
    memory_limit: Option<u64>,
    cpu_limit: Option<f64>,
    cgroup_paths: Vec<PathBuf>,
    shared: Arc<Shared>,
    threads: Option<Threads>,
}

struct Threads {
    supervisor: JoinHandle<()>,
    sampler: JoinHandle<Vec<RawSample>>,
    cgroup: Option<Arc<Cgroup>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("url", &self.url)
            .field("command_line", &self.command_line)
            .field("confinement", &self.confinement)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Starts the server (confined when `spec.limits` says so), waits until it listens,
    /// and starts supervising and sampling it. Errors are one line: what failed and what
    /// to do (including the server's last stderr lines when it would not start).
    pub async fn start(spec: ServerSpec) -> anyhow::Result<ServerHandle> {
        tokio::task::spawn_blocking(move || start_blocking(spec))
            .await
            .context("the server start-up task failed")?
    }

    /// `http://127.0.0.1:PORT`; the same after restarts.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The command as first started (`--bind 127.0.0.1:0`; restarts use the learned port).
    pub fn command_line(&self) -> Vec<String> {
        self.command_line.clone()
    }

    /// Crashes so far (cheap: for live progress).
    pub fn crashes_so_far(&self) -> u64 {
        self.shared.crashes.load(Ordering::Relaxed)
    }

    /// "cgroup v1", "cgroup v2" or "none".
    pub fn confinement(&self) -> String {
        self.confinement.to_string()
    }

    /// The memory limit in force (read back from the cgroup at start), if any.
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        self.memory_limit
    }

    /// The CPU quota in force, in CPUs, if any.
    pub fn cpu_limit(&self) -> Option<f64> {
        self.cpu_limit
    }

    /// The limits asked for.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The PID of the server process running now (`None` while it is down).
    pub fn pid(&self) -> Option<u32> {
        self.shared.lock().child.as_ref().map(|c| c.pid)
    }

    /// Kills the running process with SIGKILL on purpose (fault injection: the lab's
    /// `--kill-worker-every`). The supervisor records the exit as a crash whose cause says
    /// "injected" and, with `restart_on_crash`, starts it again as after any crash.
    /// Returns whether a process was running to be killed.
    pub fn inject_kill(&self) -> bool {
        self.inject_kill_for(Duration::ZERO)
    }

    /// [`ServerHandle::inject_kill`], keeping the server down for `downtime` before the
    /// supervisor restarts it (`--kill-instance-at`: a node that takes seconds to come
    /// back, so the balancer's detection is what the run measures, not a race with a
    /// 200 ms restart).
    pub fn inject_kill_for(&self, downtime: Duration) -> bool {
        let mut state = self.shared.lock();
        state.injected_downtime = downtime;
        if state.stop_requested {
            return false;
        }
        match state.child {
            Some(child) => {
                state.kill_injected = true;
                signal(child.pid, libc::SIGKILL);
                true
            }
            None => false,
        }
    }

    /// The cgroup directories the server runs in (empty when unconfined).
    pub fn cgroup_paths(&self) -> Vec<PathBuf> {
        self.cgroup_paths.clone()
    }

    /// Stops the server: no more restarts, SIGTERM (the API stops accepting, finishes its
    /// in-flight orders — which reach the orders file — and exits 0), SIGKILL if it has not
    /// exited after `grace`. Then removes the cgroup and returns what was observed, with
    /// times in seconds since `epoch` (the start of the load).
    pub async fn stop(mut self, grace: Duration, epoch: Instant) -> ServerObservations {
        let Some(threads) = self.threads.take() else {
            return ServerObservations::default();
        };
        // Ask for the stop right away, so it happens even if this future is dropped.
        let was_running = request_stop(&self.shared);
        let shared = Arc::clone(&self.shared);
        let confinement = self.confinement.clone();
        let fallback = ServerObservations {
            confinement: confinement.clone(),
            memory_limit_bytes: self.memory_limit,
            cpu_limit: self.cpu_limit,
            stop_outcome: "the stop task failed".to_string(),
            ..ServerObservations::default()
        };
        tokio::task::spawn_blocking(move || {
            stop_blocking(&shared, threads, &confinement, was_running, grace, epoch)
        })
        .await
        .unwrap_or(fallback)
    }
}

impl Drop for ServerHandle {
    /// Kills the server if [`ServerHandle::stop`] was not called (e.g. the lab failed),
    /// and removes the cgroup. Waits at most about two seconds.
    fn drop(&mut self) {
        let Some(threads) = self.threads.take() else {
            return;
        };
        {
            let mut state = self.shared.lock();
            state.stop_requested = true;
            state.sampler_stop = true;
            if let Some(child) = &state.child {
                signal(child.pid, libc::SIGKILL);
            }
        }
        self.shared.changed.notify_all();
        let done = self
            .shared
            .wait_until(Instant::now() + Duration::from_secs(2), |s| {
                s.supervisor_done
            });
        if done {
            let _ = threads.supervisor.join();
        }
        let _ = threads.sampler.join(); // it ends at once: sampler_stop is set
        drop(threads.cgroup);
    }
}

// ---------------------------------------------------------------------------------------
// Shared state

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    crashes: AtomicU64,
}

#[derive(Default)]
struct State {
    /// The server process alive now (not reaped yet: its PID cannot be reused).
    child: Option<LiveChild>,
    stop_requested: bool,
    sampler_stop: bool,
    supervisor_done: bool,
    /// CPU seconds of the server processes already reaped.
    cpu_carried_s: f64,
    crashes: Vec<RawCrash>,
    restarts: u64,
    /// When each restarted server was listening again.
    restarted_at: Vec<Instant>,
    gave_up: Option<String>,
    /// How the process that was running when stop was requested ended.
    final_exit: Option<Exit>,
    /// Where the running server answers `/metrics`, once it has printed its address.
    metrics_addr: Option<SocketAddr>,
    /// A SIGKILL the lab sent on purpose ([`ServerHandle::inject_kill`]) whose exit has
    /// not been classified yet: that exit is recorded as an injected crash.
    kill_injected: bool,
    /// How long the injected kill keeps the server down before its restart (a machine
    /// that takes time to come back), beyond the usual backoff.
    injected_downtime: Duration,
}

#[derive(Debug, Clone, Copy)]
struct LiveChild {
    pid: u32,
}

struct RawCrash {
    at: Instant,
    cause: String,
    oom_killed: bool,
}

#[derive(Debug, Clone, Copy)]
struct RawSample {
    at: Instant,
    memory: Option<u64>,
    rss: Option<u64>,
    cpu_percent: Option<f64>,
    threads: Option<u64>,
    admission_limit: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Exit {
    /// `None` when the status could not be read (someone else reaped the process).
    status: Option<ExitStatus>,
    /// Whether a stop was already requested when the process was reaped. `stop` signals
    /// the child and the supervisor reaps it under the same lock, so this tells exactly
    /// whether this exit was asked for (true) or a crash that `stop` did not see (false).
    stop_requested: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take supervision down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until `condition` holds or `deadline` passes; returns whether it holds.
    fn wait_until(&self, deadline: Instant, condition: impl Fn(&State) -> bool) -> bool {
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

    fn stop_requested(&self) -> bool {
        self.lock().stop_requested
    }
}

/// Sends `signal` to the process `pid` (`-pgid` is not accepted: see
/// [`signal_group`]). Callers make sure `pid` is their child and not reaped yet, so it
/// cannot have been reused by another process.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
    {
        // SAFETY: plain syscall. Callers hold the state lock and the child is not reaped
        // yet, so the PID is still our child's.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Sends `signal` to every process in the process group `pgid` (a child started as the
/// leader of its own group). Same rule as [`signal`]: the leader is not reaped yet, so its
/// group id cannot have been reused.
pub(crate) fn signal_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: plain syscall on a negative pid, i.e. a process group.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// Makes a child started with `command` get SIGKILL when the thread that starts it ends —
/// which, for our supervisor threads, is when the lab ends, however it ends (even by
/// SIGKILL). Survives the child's `exec`, not its own children's `fork`.
pub(crate) fn die_with_spawning_thread(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe syscalls; nothing is allocated.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Blocks until our child `pid` has ended, without reaping it: until it is reaped its PID
/// (and its process group id) cannot be reused, so it may still be signalled safely.
pub(crate) fn wait_for_exit_unreaped(pid: u32) {
    loop {
        // SAFETY: waitid fills `info`; WNOWAIT leaves the child reapable.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let result = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if result == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Start

fn start_blocking(spec: ServerSpec) -> anyhow::Result<ServerHandle> {
    for arg in &spec.args {
        for &owned in spec.kind.lab_owned_flags() {
            if arg == owned || arg.starts_with(&format!("{owned}=")) {
                anyhow::bail!(
                    "the server argument {arg:?} is not allowed: the lab chooses {owned} itself (use the lab's own options for the orders file, the broker and the delivery mode; the server always listens on 127.0.0.1 with a free port)"
                );
            }
        }
    }
    let log = match &spec.log_file {
        Some(path) => Some(Arc::new(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| {
                    format!(
                        "cannot open the server log {} for appending; check that its directory exists and is writable",
                        path.display()
                    )
                })?,
        ))),
        None => None,
    };
    let cgroup = if spec.limits.is_unconfined() {
        None
    } else {
        Some(Arc::new(Cgroup::create_in_slot(
            &spec.limits,
            spec.core_slot,
        )?))
    };
    let confinement = cgroup.as_ref().map_or_else(
        || "none".to_string(),
        |c| match c.keep_this_process_off_the_childs_cores() {
            Some(ours) => format!("{}; the lab runs on {ours}", c.describe()),
            None => c.describe(),
        },
    );
    let memory_limit = cgroup.as_ref().and_then(|c| c.memory_limit_bytes());
    let cpu_limit = cgroup.as_ref().and_then(|c| c.cpu_limit());
    let cgroup_paths = cgroup
        .as_ref()
        .map(|c| c.paths().to_vec())
        .unwrap_or_default();

    let mut fixed_args = vec![
        "--orders-file".to_string(),
        spec.orders_file.display().to_string(),
    ];
    fixed_args.extend(spec.lab_args.iter().cloned());
    fixed_args.extend(spec.args.iter().cloned());
    let initial_bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut command_line = vec![
        spec.binary.display().to_string(),
        spec.kind.bind_flag().to_string(),
        initial_bind.to_string(),
    ];
    command_line.extend(fixed_args.iter().cloned());

    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        crashes: AtomicU64::new(0),
    });
    let launcher = Launcher {
        kind: spec.kind,
        binary: spec.binary.clone(),
        fixed_args,
        cgroup: cgroup.clone(),
        log,
        shared: Arc::clone(&shared),
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let supervisor = {
        let shared = Arc::clone(&shared);
        let restart = spec.restart_on_crash;
        std::thread::Builder::new()
            .name("server-supervisor".to_string())
            .spawn(move || supervise(&shared, &launcher, restart, initial_bind, ready_tx))
            .context("cannot start the server supervisor thread")?
    };
    let addr = match ready_rx.recv() {
        Ok(Ok(addr)) => addr,
        Ok(Err(message)) => {
            let _ = supervisor.join();
            anyhow::bail!(message);
        }
        Err(_) => {
            let _ = supervisor.join();
            anyhow::bail!("the server supervisor ended before the server was ready");
        }
    };
    let sampler = {
        let shared = Arc::clone(&shared);
        let cgroup = cgroup.clone();
        let every = spec.sample_every.max(Duration::from_millis(10));
        std::thread::Builder::new()
            .name("server-sampler".to_string())
            .spawn(move || sample_loop(&shared, cgroup.as_deref(), every))
    };
    let sampler = match sampler {
        Ok(sampler) => sampler,
        Err(e) => {
            // Do not leave the server running.
            {
                let mut state = shared.lock();
                state.stop_requested = true;
                if let Some(child) = &state.child {
                    signal(child.pid, libc::SIGKILL);
                }
            }
            let _ = supervisor.join();
            return Err(e).context("cannot start the server sampler thread");
        }
    };
    Ok(ServerHandle {
        url: format!("http://{addr}"),
        addr,
        command_line,
        limits: spec.limits,
        confinement,
        memory_limit,
        cpu_limit,
        cgroup_paths,
        shared,
        threads: Some(Threads {
            supervisor,
            sampler,
            cgroup,
        }),
    })
}

/// Starts server processes; used by the supervisor thread only (it is their parent
/// thread for `PR_SET_PDEATHSIG`, and their only reaper).
struct Launcher {
    kind: SutKind,
    binary: PathBuf,
    /// `--orders-file PATH` and the user's arguments (everything but `--bind`).
    fixed_args: Vec<String>,
    cgroup: Option<Arc<Cgroup>>,
    log: Option<Arc<Mutex<File>>>,
    shared: Arc<Shared>,
}

/// A server that printed its address.
struct Launched {
    pid: u32,
    addr: SocketAddr,
    /// The cgroup's (or, unconfined, the system's) OOM-kill count at its start.
    oom_before: Option<u64>,
    tail: Arc<Mutex<Tail>>,
}

/// Why a server did not become ready.
struct LaunchFailure {
    message: String,
}

impl Launcher {
    fn oom_count(&self) -> Option<u64> {
        match &self.cgroup {
            Some(cgroup) => cgroup.oom_kills(),
            None => system_oom_kills(),
        }
    }

    fn name(&self) -> String {
        self.binary.display().to_string()
    }

    /// Starts one server process on `bind` and waits for its `listening on` line.
    fn launch(&self, bind: SocketAddr) -> Result<Launched, LaunchFailure> {
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
        // Die with the thread that starts it (the supervisor), i.e. with the lab.
        die_with_spawning_thread(&mut command);
        let oom_before = self.oom_count();
        let mut child = command.spawn().map_err(|e| LaunchFailure {
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
        let (line_tx, line_rx) = mpsc::channel::<SocketAddr>();
        if let Some(stdout) = child.stdout.take() {
            let _ = std::thread::Builder::new()
                .name("server-stdout".to_string())
                .spawn(move || {
                    // Wait for the address line, then keep draining (so the server never
                    // blocks on a full pipe).
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
        }
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            let log = self.log.clone();
            let _ = std::thread::Builder::new()
                .name("server-stderr".to_string())
                .spawn(move || {
                    // Copy to the log as it comes (one write per read), keep the last lines.
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
        drop(child); // std's Child neither kills nor reaps on drop: we reap by PID.

        match line_rx.recv_timeout(READY_TIMEOUT) {
            Ok(addr) => Ok(Launched {
                // (Also where the sampler reads the admission limit.)
                pid: {
                    self.shared.lock().metrics_addr = Some(addr);
                    pid
                },
                addr,
                oom_before,
                tail,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let exit = self.reap(pid);
                let last = tail_after_close(&tail);
                Err(LaunchFailure {
                    message: format!(
                        "{} ({}) {} before it was ready (it never printed `listening on http://ADDR`){}",
                        self.kind.describe(),
                        self.name(),
                        describe_status(exit.status),
                        format_tail(&last)
                    ),
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                {
                    let state = self.shared.lock();
                    if let Some(child) = &state.child {
                        signal(child.pid, libc::SIGKILL);
                    }
                }
                self.reap(pid);
                let last = tail_after_close(&tail);
                Err(LaunchFailure {
                    message: format!(
                        "{} ({}) did not print `listening on http://ADDR` within {} s, so it was killed{}",
                        self.kind.describe(),
                        self.name(),
                        READY_TIMEOUT.as_secs(),
                        format_tail(&last)
                    ),
                })
            }
        }
    }

    /// Waits for `pid` to end and reaps it, adding its CPU time to the carried total.
    /// The reaping happens under the state lock, after `child` is cleared, so nobody
    /// signals a reaped (reusable) PID.
    fn reap(&self, pid: u32) -> Exit {
        let raw_pid = pid as libc::pid_t;
        wait_for_exit_unreaped(pid);
        let mut state = self.shared.lock();
        let mut status: libc::c_int = 0;
        // SAFETY: wait4 fills `status` and `usage`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
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
    fn classify(&self, exit: Exit, launched: &Launched) -> (String, bool) {
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

/// The supervisor thread: first start, then watch, classify, restart.
fn supervise(
    shared: &Shared,
    launcher: &Launcher,
    restart_on_crash: bool,
    initial_bind: SocketAddr,
    ready: mpsc::Sender<Result<SocketAddr, String>>,
) {
    let finish = |shared: &Shared| {
        shared.lock().supervisor_done = true;
        shared.changed.notify_all();
    };
    let mut current = match launcher.launch(initial_bind) {
        Ok(launched) => launched,
        Err(failure) => {
            let _ = ready.send(Err(failure.message));
            finish(shared);
            return;
        }
    };
    let bind = SocketAddr::new(initial_bind.ip(), current.addr.port());
    let _ = ready.send(Ok(current.addr));
    drop(ready);

    loop {
        let exit = launcher.reap(current.pid);
        let at = Instant::now();
        if exit.stop_requested {
            shared.lock().final_exit = Some(exit);
            break;
        }
        let (injected, downtime) = {
            let mut state = shared.lock();
            (
                std::mem::take(&mut state.kill_injected),
                std::mem::take(&mut state.injected_downtime),
            )
        };
        let (cause, oom_killed) = if injected {
            (
                "injected: SIGKILL sent by the lab (fault injection)".to_string(),
                false,
            )
        } else {
            launcher.classify(exit, &current)
        };
        let give_up = {
            let mut state = shared.lock();
            state.crashes.push(RawCrash {
                at,
                cause,
                oom_killed,
            });
            shared.crashes.fetch_add(1, Ordering::Relaxed);
            if !restart_on_crash {
                break;
            }
            if state.restarts >= MAX_RESTARTS {
                state.gave_up = Some(format!(
                    "the server crashed again after {MAX_RESTARTS} restarts (the cap per run), so it was left down"
                ));
                true
            } else {
                false
            }
        };
        if give_up {
            break;
        }
        let mut relaunched = None;
        for attempt in 1..=START_ATTEMPTS_PER_RESTART {
            let pause = RESTART_BACKOFF * attempt
                + if attempt == 1 {
                    downtime
                } else {
                    Duration::ZERO
                };
            if shared.wait_until(Instant::now() + pause, |s| s.stop_requested) {
                break;
            }
            match launcher.launch(bind) {
                Ok(launched) => {
                    relaunched = Some(launched);
                    break;
                }
                Err(_) if shared.stop_requested() => break,
                Err(failure) if attempt == START_ATTEMPTS_PER_RESTART => {
                    shared.lock().gave_up = Some(format!(
                        "could not restart the server after {attempt} attempts: {}",
                        failure.message
                    ));
                }
                Err(_) => {}
            }
        }
        match relaunched {
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

// ---------------------------------------------------------------------------------------
// Stop

/// No more restarts; SIGTERM to the server if one is running (returns whether one was).
fn request_stop(shared: &Shared) -> bool {
    let was_running = {
        let mut state = shared.lock();
        state.stop_requested = true;
        match &state.child {
            Some(child) => {
                signal(child.pid, libc::SIGTERM);
                true
            }
            None => false,
        }
    };
    shared.changed.notify_all();
    was_running
}

/// The waiting half of [`ServerHandle::stop`], after [`request_stop`].
fn stop_blocking(
    shared: &Shared,
    threads: Threads,
    confinement: &str,
    was_running: bool,
    grace: Duration,
    epoch: Instant,
) -> ServerObservations {
    let asked_at = Instant::now();
    let in_grace = shared.wait_until(asked_at + grace, |s| s.supervisor_done);
    if !in_grace {
        {
            let state = shared.lock();
            if let Some(child) = &state.child {
                signal(child.pid, libc::SIGKILL);
            }
        }
        shared.wait_until(Instant::now() + Duration::from_secs(10), |s| {
            s.supervisor_done
        });
    }
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
    let stop_outcome = if !was_running {
        "was not running when the stop was asked (it had crashed)".to_string()
    } else if in_grace {
        format!("{} after SIGTERM", describe_status(final_status))
    } else {
        format!(
            "did not exit within the {:.1} s grace period after SIGTERM, so it was killed with SIGKILL",
            grace.as_secs_f64()
        )
    };

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

/// Samples at or after `epoch`, preceded by the last one before it (negative time).
fn samples_since(raw: &[RawSample], epoch: Instant) -> Vec<ServerSample> {
    let first_after = raw.partition_point(|s| s.at < epoch);
    let start = first_after.saturating_sub(1);
    raw[start..]
        .iter()
        .map(|s| ServerSample {
            t_s: seconds_since(epoch, s.at),
            memory_bytes: s.memory,
            rss_bytes: s.rss,
            cpu_percent: s.cpu_percent,
            threads: s.threads,
            admission_limit: s.admission_limit,
        })
        .collect()
}

/// Seconds from `epoch` to `at`, negative when `at` is earlier.
fn seconds_since(epoch: Instant, at: Instant) -> f64 {
    match at.checked_duration_since(epoch) {
        Some(after) => after.as_secs_f64(),
        None => -epoch.duration_since(at).as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------------------
// Sampling

fn sample_loop(shared: &Shared, cgroup: Option<&Cgroup>, every: Duration) -> Vec<RawSample> {
    // SAFETY: sysconf is always safe to call.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut previous: Option<(Instant, f64)> = None;
    let mut tick: u32 = 0;
    loop {
        let (at, process, carried, metrics_addr) = {
            let state = shared.lock();
            if state.sampler_stop {
                break;
            }
            // Read /proc under the lock: the supervisor cannot reap (and the PID cannot
            // be reused) meanwhile.
            let at = Instant::now();
            let process = state.child.map(|c| read_process(c.pid, ticks));
            let metrics_addr = state.child.and(state.metrics_addr);
            (at, process, state.cpu_carried_s, metrics_addr)
        };
        // Outside the lock: an HTTP round trip.
        let admission_limit = metrics_addr.and_then(|addr| scrape_gauge(addr, ADMISSION_LIMIT));
        let process = process.unwrap_or_default();
        let memory = match cgroup {
            Some(cgroup) => cgroup.memory_usage_bytes().or(process.rss),
            None => process.rss,
        };
        let mut cpu_total = carried + process.cpu_s.unwrap_or(0.0);
        let cpu_percent = previous.map(|(then, cpu_then)| {
            // A process that just exited may read low before its reaping carries its
            // exact total: never let the total go backwards.
            cpu_total = cpu_total.max(cpu_then);
            let wall = at.duration_since(then).as_secs_f64();
            if wall > 0.0 {
                (cpu_total - cpu_then) / wall * 100.0
            } else {
                0.0
            }
        });
        previous = Some((at, cpu_total));
        samples.push(RawSample {
            at,
            memory,
            rss: process.rss,
            cpu_percent,
            threads: process.threads,
            admission_limit,
        });

        // Absolute deadlines: no drift; skip ticks that were missed.
        tick = tick.saturating_add(1);
        let mut next = started + every * tick;
        let now = Instant::now();
        while next <= now {
            tick = tick.saturating_add(1);
            next = started + every * tick;
        }
        if shared.wait_until(next, |s| s.sampler_stop) {
            break;
        }
    }
    samples
}

/// The whole `GET /metrics` answer of the server at `addr` (headers included), or `None`
/// when it does not answer within [`SCRAPE_TIMEOUT`]. For samplers of other gauges
/// (the messaging monitor reads the worker's counters).
pub(crate) fn scrape_metrics(addr: SocketAddr) -> Option<String> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT)).ok()?;
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        wire_contract::http::METRICS_PATH
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// The API's gauge of its admission limit (fixed, or where the adaptive controller has it).
const ADMISSION_LIMIT: &str = "purchasing_admission_limit";

/// How long one scrape of `/metrics` may take. Short: a server too busy to answer within
/// it leaves a gap in the chart rather than delaying the memory and CPU samples.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(200);

/// One unlabelled gauge from the server's `GET /metrics`, over a plain loopback HTTP/1.1
/// request (no client library: the sampler is a std thread). `None` when the server does
/// not answer in time or has no such gauge (or reports 0: admission control is off).
pub(crate) fn scrape_gauge(addr: SocketAddr, name: &str) -> Option<u64> {
    parse_gauge(&scrape_metrics(addr)?, name)
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition, if it is a
/// whole number above 0.
fn parse_gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|v| *v >= 1.0 && v.is_finite())
        .map(|v| v as u64)
}

#[derive(Debug, Default, Clone, Copy)]
struct ProcessSample {
    rss: Option<u64>,
    threads: Option<u64>,
    cpu_s: Option<f64>,
}

fn read_process(pid: u32, ticks: f64) -> ProcessSample {
    let mut sample = ProcessSample::default();
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("VmRSS:") {
                sample.rss = rest
                    .split_whitespace()
                    .next()
                    .and_then(|kb| kb.parse::<u64>().ok())
                    .map(|kb| kb * 1024);
            } else if let Some(rest) = line.strip_prefix("Threads:") {
                sample.threads = rest.trim().parse().ok();
            }
        }
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        sample.cpu_s = parse_stat_cpu_ticks(&stat).map(|t| t as f64 / ticks);
    }
    sample
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat, in clock ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after the last ')'.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so field N is index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The system-wide OOM-kill count (`oom_kill` in /proc/vmstat), for unconfined runs.
fn system_oom_kills() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

fn timeval_s(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

// ---------------------------------------------------------------------------------------
// Exit statuses and output

/// e.g. "exited with status 1", "killed by signal 11 (SIGSEGV), core dumped".
pub(crate) fn describe_status(status: Option<ExitStatus>) -> String {
    let Some(status) = status else {
        return "ended (its exit status could not be read)".to_string();
    };
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    if let Some(signal) = status.signal() {
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        return format!("killed by signal {signal} ({}){core}", signal_name(signal));
    }
    format!("ended ({status})")
}

/// The usual name of a signal number on Linux.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// The last lines of a server's stderr.
#[derive(Debug, Default)]
struct Tail {
    lines: std::collections::VecDeque<String>,
    closed: bool,
}

impl Tail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }
}

/// The tail once the stream has closed (waiting up to 500 ms for that: the process has
/// ended, so its stderr closes unless something it started still holds it).
fn tail_after_close(tail: &Mutex<Tail>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if tail.closed || Instant::now() >= deadline {
            return tail.lines.iter().cloned().collect();
        }
        drop(tail);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn format_tail(lines: &[String]) -> String {
    join_last_lines(lines).map_or_else(
        || "; it wrote nothing on stderr".to_string(),
        |last| format!("; its last stderr lines: {last}"),
    )
}

/// The last five non-blank lines of a process's output, each cut at 300 characters, on
/// one line joined by " | " (an error message stays one line); `None` if all are blank.
pub(crate) fn join_last_lines(lines: &[String]) -> Option<String> {
    let useful: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if useful.is_empty() {
        return None;
    }
    let last: Vec<String> = useful
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(|l| truncate(l, 300))
        .collect();
    Some(last.join(" | "))
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}

/// Calls `on_chunk` with each piece of `reader` as it arrives, until end of file or an
/// error.
fn for_each_chunk(mut reader: impl Read, mut on_chunk: impl FnMut(&[u8])) {
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => on_chunk(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Cuts a byte stream into lines (lossy UTF-8, without the newline, at most
/// [`MAX_LINE_BYTES`] kept of each).
#[derive(Debug, Default)]
struct LineSplitter {
    line: Vec<u8>,
}

impl LineSplitter {
    fn feed(&mut self, mut chunk: &[u8], mut on_line: impl FnMut(&str)) {
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            self.keep(&chunk[..i]);
            on_line(&String::from_utf8_lossy(&self.line));
            self.line.clear();
            chunk = &chunk[i + 1..];
        }
        self.keep(chunk);
    }

    /// The last line, if the stream did not end with a newline.
    fn finish(self, mut on_line: impl FnMut(&str)) {
        if !self.line.is_empty() {
            on_line(&String::from_utf8_lossy(&self.line));
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_is_read_from_the_exposition() {
        let text = "HTTP/1.1 200 OK\r\n\r\n# HELP purchasing_admission_limit x\n\
                    # TYPE purchasing_admission_limit gauge\n\
                    purchasing_admission_limit_cap 11\n\
                    purchasing_admission_limit 7\n";
        assert_eq!(parse_gauge(text, ADMISSION_LIMIT), Some(7));
        // Off (0), missing or garbage: no sample.
        assert_eq!(
            parse_gauge("purchasing_admission_limit 0\n", ADMISSION_LIMIT),
            None
        );
        assert_eq!(parse_gauge("", ADMISSION_LIMIT), None);
        assert_eq!(
            parse_gauge("purchasing_admission_limit NaN\n", ADMISSION_LIMIT),
            None
        );
    }

    #[test]
    fn stat_cpu_is_read_after_the_command_name() {
        let stat = "1234 (purchasing api) (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(300));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn statuses_are_described() {
        assert_eq!(
            describe_status(Some(ExitStatus::from_raw(1 << 8))),
            "exited with status 1"
        );
        assert_eq!(
            describe_status(Some(ExitStatus::from_raw(libc::SIGSEGV))),
            "killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(
            describe_status(None),
            "ended (its exit status could not be read)"
        );
        assert_eq!(signal_name(64), "signal 64");
    }

    #[test]
    fn lines_are_split_and_capped() {
        let long = "x".repeat(MAX_LINE_BYTES + 100);
        let input = format!("first\n{long}\nlast-without-newline");
        let mut lines = Vec::new();
        let mut splitter = LineSplitter::default();
        // Fed in uneven pieces, as a pipe delivers them.
        for_each_chunk(input.as_bytes(), |chunk| {
            for piece in chunk.chunks(3) {
                splitter.feed(piece, |l| lines.push(l.to_string()));
            }
        });
        splitter.finish(|l| lines.push(l.to_string()));
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "first");
        assert_eq!(lines[1].len(), MAX_LINE_BYTES);
        assert_eq!(lines[2], "last-without-newline");
    }

    #[test]
    fn samples_before_the_epoch_are_dropped_but_the_last() {
        let base = Instant::now();
        let raw: Vec<RawSample> = (0..6)
            .map(|i| RawSample {
                at: base + Duration::from_millis(250 * i),
                memory: Some(i),
                rss: Some(i),
                cpu_percent: None,
                threads: Some(1),
                admission_limit: None,
            })
            .collect();
        let epoch = base + Duration::from_millis(600);
        let samples = samples_since(&raw, epoch);
        assert_eq!(samples.len(), 4);
        assert!((samples[0].t_s + 0.1).abs() < 1e-9, "{}", samples[0].t_s);
        assert!((samples[1].t_s - 0.15).abs() < 1e-9);
        assert!(samples.windows(2).all(|w| w[0].t_s < w[1].t_s));
    }

    #[test]
    fn tails_are_bounded_and_formatted() {
        let mut tail = Tail::default();
        for i in 0..50 {
            tail.push(&format!("line {i}"));
        }
        assert_eq!(tail.lines.len(), TAIL_LINES);
        let lines: Vec<String> = tail.lines.iter().cloned().collect();
        assert_eq!(
            format_tail(&lines),
            "; its last stderr lines: line 45 | line 46 | line 47 | line 48 | line 49"
        );
        assert_eq!(format_tail(&[]), "; it wrote nothing on stderr");
    }
}
