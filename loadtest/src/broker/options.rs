//! Where the broker's programs are, how long each step may take, the options of a start
//! and its errors.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The broker's start script in Debian's `rabbitmq-server` package.
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// The `rabbitmqctl` beside [`RABBITMQ_SERVER`], for a user to reach a lab broker by hand:
/// Debian's `/usr/sbin/rabbitmqctl` wrapper switches to the `rabbitmq` user, its home and
/// its cookie, so it can only reach the system's broker, never ours.
pub const RABBITMQCTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";
/// Where Debian's Erlang puts epmd (`erlang-base`); the first one present is used.
pub const EPMD_PATHS: [&str; 2] = ["/usr/bin/epmd", "/usr/lib/erlang/bin/epmd"];
/// What to do when the broker is missing; every "not installed" message says it.
pub const INSTALL_HINT: &str =
    "run scripts/test as root or apt-get install --no-install-recommends rabbitmq-server";
/// How long a start may take by default: readiness usually takes 4–13 s here, and a
/// loaded CI machine is slower.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long RabbitMQ may take to stop after SIGTERM before it is killed (it takes ≈ 1–3 s;
/// a clean stop is what lets durable messages survive, so it is given time).
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long epmd may take to listen, and to exit after SIGTERM.
pub(super) const EPMD_GRACE: Duration = Duration::from_secs(5);
/// How long a SIGKILLed broker may take to be gone (it is immediate unless the kernel is
/// stuck on I/O).
pub(super) const KILL_WAIT: Duration = Duration::from_secs(5);
/// Pause between readiness probes.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for one TCP connect or one AMQP handshake while probing.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often progress is reported while the broker starts.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Starts tried with fresh ports when a picked port was taken before the broker bound it.
pub(super) const PORT_ATTEMPTS: u32 = 3;
/// Lines of the broker's output kept for an error message.
pub(super) const TAIL_LINES: usize = 20;

/// How to run the broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Longest wait for the broker to complete an AMQP handshake, per start or restart.
    pub ready_timeout: Duration,
    /// Keep the broker's data in this directory (created if missing) instead of a
    /// temporary one, and leave it there on stop: a later broker on the same directory
    /// finds its durable queues again (the node name is kept in it too).
    pub data_dir: Option<PathBuf>,
    /// Say on stderr what the start is waiting for, every few seconds.
    pub progress: bool,
    /// Set to `true` to abandon a start in progress (e.g. on Ctrl-C): what was started is
    /// stopped and the start returns [`BrokerError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Run the broker on these cores only (`None`: wherever the lab may run). The lab puts
    /// its brokers beside itself, off the cores its confined hosts are pinned to, so a
    /// broker's work never lands in an emulated VM's CPU; restarts keep the same cores.
    pub cores: Option<Vec<usize>>,
    /// `--network`: the broker host's namespace, which every process of the node (epmd,
    /// the Erlang VM, rabbitmqctl) joins, and its address, where AMQP listens (`None`:
    /// the lab's own namespace, 127.0.0.1). The node's Erlang distribution and epmd stay
    /// on the namespace's own loopback.
    pub link: Option<crate::network::HostLink>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            ready_timeout: DEFAULT_READY_TIMEOUT,
            data_dir: None,
            progress: false,
            cancel: None,
            cores: None,
            link: None,
        }
    }
}

/// Why a broker could not be started or stopped. Each message is one line: what failed,
/// where, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// `rabbitmq-server` or epmd is not installed.
    #[error("{what} is not installed ({} is missing): {INSTALL_HINT}", .path.display())]
    NotInstalled { what: &'static str, path: PathBuf },
    /// The data directory, its files or the ports could not be prepared.
    #[error("{0}")]
    Setup(String),
    /// epmd or the broker did not start, or did not become ready in time.
    #[error("{0}")]
    Start(String),
    /// The start was abandoned through [`BrokerOptions::cancel`].
    #[error("the RabbitMQ start was cancelled; everything it started was stopped")]
    Cancelled,
    /// The broker is not running (for [`Broker::kill`]).
    #[error("{0}")]
    NotRunning(String),
    /// The temporary directory could not be removed after the stop.
    #[error("{0}")]
    Cleanup(String),
}

/// Why one boot did not succeed.
pub(super) enum Failure {
    /// A picked port was taken by someone else before the broker or epmd bound it.
    PortTaken(String),
    Cancelled,
    Other(String),
}

impl From<Failure> for BrokerError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::PortTaken(message) | Failure::Other(message) => BrokerError::Start(message),
            Failure::Cancelled => BrokerError::Cancelled,
        }
    }
}
