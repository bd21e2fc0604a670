//! [`ServerHandle`]: starting the server (checked arguments, the cgroup, the first
//! launch and its supervisor and sampler threads), its address and observations, and
//! stopping it.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::confine::{Cgroup, Limits};

use super::process::signal;
use super::sampler::sample_loop;
use super::spec::{ServerObservations, ServerSpec};
use super::state::{Shared, State, Threads};
use super::supervisor::{Launcher, request_stop, stop_blocking, supervise};

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

    /// [`ServerHandle::start`] for the host `host` of a run (`of`: e.g. "node 1 of 2" for
    /// the error), saying on stderr what was started, where and how confined.
    pub async fn start_host(
        spec: ServerSpec,
        host: &str,
        of: &str,
    ) -> anyhow::Result<ServerHandle> {
        let handle = ServerHandle::start(spec)
            .await
            .with_context(|| format!("cannot start {host} ({of})"))?;
        eprintln!(
            "loadtest: started {host} {} → {} ({})",
            handle.command_line().join(" "),
            handle.url(),
            handle.confinement()
        );
        Ok(handle)
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

    /// The fault plan's `stop`: SIGTERM (the server finishes its orders in progress and
    /// exits 0, as at the end of a run), and no restart until [`ServerHandle::inject_start`].
    /// The exit is not a crash. Returns whether a process was running to be stopped.
    pub fn inject_stop(&self) -> bool {
        let mut state = self.shared.lock();
        let Some(child) = state.child.filter(|_| !state.stop_requested && !state.held) else {
            return false;
        };
        state.held = true;
        state.stop_injected = true;
        signal(child.pid, libc::SIGCONT);
        signal(child.pid, libc::SIGTERM);
        true
    }

    /// The fault plan's `start`: lets the supervisor start a server stopped by
    /// [`ServerHandle::inject_stop`] again. Returns whether it was stopped.
    pub fn inject_start(&self) -> bool {
        let was_held = std::mem::take(&mut self.shared.lock().held);
        self.shared.changed.notify_all();
        was_held
    }

    /// The fault plan's `pause` (SIGSTOP: a frozen VM, a long GC pause — alive, answering
    /// nothing) and `resume` (SIGCONT). Returns whether a process was running; the run's
    /// stop resumes a paused server first.
    pub fn inject_pause(&self, paused: bool) -> bool {
        let state = self.shared.lock();
        let Some(child) = state.child.filter(|_| !state.stop_requested) else {
            return false;
        };
        signal(
            child.pid,
            if paused { libc::SIGSTOP } else { libc::SIGCONT },
        );
        true
    }

    /// Whether the running server is paused (stopped by SIGSTOP).
    pub fn is_paused(&self) -> bool {
        self.pid().is_some_and(super::process::is_stopped)
    }

    /// The cores the server is pinned to (`None`: not pinned).
    pub fn cores(&self) -> Option<Vec<usize>> {
        self.threads.as_ref()?.cgroup.as_ref()?.pinned_cores()
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

/// [`ServerHandle::start`] on a blocking thread: check, confine, launch, supervise, sample.
pub(super) fn start_blocking(spec: ServerSpec) -> anyhow::Result<ServerHandle> {
    refuse_lab_owned_flags(&spec)?;
    let log = open_log(&spec)?;
    let confined = Confined::new(&spec)?;
    let ip = spec
        .link
        .as_ref()
        .map_or([127, 0, 0, 1].into(), |l| l.address);
    let initial_bind = SocketAddr::from((ip, 0));
    let mut fixed_args = vec![
        "--orders-file".to_string(),
        spec.orders_file.display().to_string(),
    ];
    fixed_args.extend(spec.lab_args.iter().cloned());
    fixed_args.extend(spec.args.iter().cloned());
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
        cgroup: confined.cgroup.clone(),
        netns: spec.link.as_ref().map(|l| l.netns.clone()),
        log,
        shared: Arc::clone(&shared),
    };
    let (supervisor, addr) =
        start_supervisor(&shared, launcher, spec.restart_on_crash, initial_bind)?;
    let every = spec.sample_every.max(Duration::from_millis(10));
    let threads = start_sampler(&shared, confined.cgroup, every, supervisor)?;
    Ok(ServerHandle {
        url: format!("http://{addr}"),
        addr,
        command_line,
        limits: spec.limits,
        confinement: confined.description,
        memory_limit: confined.memory_limit,
        cpu_limit: confined.cpu_limit,
        cgroup_paths: confined.paths,
        shared,
        threads: Some(threads),
    })
}

/// The flags the lab sets itself (the orders file, the address, the broker and delivery)
/// cannot come from the user's server arguments too.
fn refuse_lab_owned_flags(spec: &ServerSpec) -> anyhow::Result<()> {
    for arg in &spec.args {
        for &owned in spec.kind.lab_owned_flags() {
            if arg == owned || arg.starts_with(&format!("{owned}=")) {
                anyhow::bail!(
                    "the server argument {arg:?} is not allowed: the lab chooses {owned} itself (use the lab's own options for the orders file, the broker and the delivery mode; the server always listens on 127.0.0.1 with a free port)"
                );
            }
        }
    }
    Ok(())
}

/// `--server-log`: the server's output, appended (every restart to the same file).
fn open_log(spec: &ServerSpec) -> anyhow::Result<Option<Arc<Mutex<std::fs::File>>>> {
    let Some(path) = &spec.log_file else {
        return Ok(None);
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| {
            format!(
                "cannot open the server log {} for appending; check that its directory exists and is writable",
                path.display()
            )
        })?;
    Ok(Some(Arc::new(Mutex::new(file))))
}

/// The emulated VM: the server's cgroup (none when unconfined) and what it enforces.
struct Confined {
    cgroup: Option<Arc<Cgroup>>,
    description: String,
    memory_limit: Option<u64>,
    cpu_limit: Option<f64>,
    paths: Vec<PathBuf>,
}

impl Confined {
    fn new(spec: &ServerSpec) -> anyhow::Result<Confined> {
        if spec.limits.is_unconfined() {
            return Ok(Confined {
                cgroup: None,
                description: "none".to_string(),
                memory_limit: None,
                cpu_limit: None,
                paths: Vec::new(),
            });
        }
        let cgroup = Cgroup::create_in_slot(&spec.limits, spec.core_slot)?;
        let description = match cgroup.keep_this_process_off_the_childs_cores() {
            Some(ours) => format!("{}; the lab runs on {ours}", cgroup.describe()),
            None => cgroup.describe(),
        };
        Ok(Confined {
            description,
            memory_limit: cgroup.memory_limit_bytes(),
            cpu_limit: cgroup.cpu_limit(),
            paths: cgroup.paths().to_vec(),
            cgroup: Some(Arc::new(cgroup)),
        })
    }
}

/// Starts the supervisor thread, which launches the server, and waits until the server
/// listens (or could not start: the supervisor's one-line reason).
fn start_supervisor(
    shared: &Arc<Shared>,
    launcher: Launcher,
    restart: bool,
    initial_bind: SocketAddr,
) -> anyhow::Result<(std::thread::JoinHandle<()>, SocketAddr)> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let supervisor = {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name("server-supervisor".to_string())
            .spawn(move || supervise(&shared, &launcher, restart, initial_bind, ready_tx))
            .context("cannot start the server supervisor thread")?
    };
    match ready_rx.recv() {
        Ok(Ok(addr)) => Ok((supervisor, addr)),
        Ok(Err(failure)) => {
            let _ = supervisor.join();
            Err(failure.into())
        }
        Err(_) => {
            let _ = supervisor.join();
            anyhow::bail!("the server supervisor ended before the server was ready");
        }
    }
}

/// Starts the thread that samples the server's memory and CPU; if it cannot start, the
/// server is killed (and its supervisor waited for) rather than left running unobserved.
fn start_sampler(
    shared: &Arc<Shared>,
    cgroup: Option<Arc<Cgroup>>,
    every: Duration,
    supervisor: std::thread::JoinHandle<()>,
) -> anyhow::Result<Threads> {
    let sampler = {
        let shared = Arc::clone(shared);
        let cgroup = cgroup.clone();
        std::thread::Builder::new()
            .name("server-sampler".to_string())
            .spawn(move || sample_loop(&shared, cgroup.as_deref(), every))
    };
    match sampler {
        Ok(sampler) => Ok(Threads {
            supervisor,
            sampler,
            cgroup,
        }),
        Err(e) => {
            {
                let mut state = shared.lock();
                state.stop_requested = true;
                if let Some(child) = &state.child {
                    signal(child.pid, libc::SIGKILL);
                }
            }
            let _ = supervisor.join();
            Err(e).context("cannot start the server sampler thread")
        }
    }
}
