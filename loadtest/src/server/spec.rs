//! What the lab runs ([`SutKind`], [`ServerSpec`]), what it observed
//! ([`ServerObservations`]), and the supervisor's limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::confine::Limits;
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
pub(super) const START_ATTEMPTS_PER_RESTART: u32 = 10;
/// Lines of the server's stderr kept for error messages.
pub(super) const TAIL_LINES: usize = 20;
/// Longest line kept from the server's stdout/stderr (the rest of a line is dropped).
pub(super) const MAX_LINE_BYTES: usize = 4096;

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

    /// Its role in the run's topology (its hosts are `api0`, … or `worker0`, …).
    pub fn role(self) -> crate::topology::Role {
        match self {
            SutKind::Api => crate::topology::Role::Api,
            SutKind::Worker => crate::topology::Role::Worker,
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
    /// `--network`: the host's namespace, which the server joins before it executes, and
    /// its address, which it listens on (`None`: the lab's own namespace, 127.0.0.1).
    pub link: Option<crate::network::HostLink>,
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
