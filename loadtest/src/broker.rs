//! A private RabbitMQ broker, run as a child process of the lab or of a test.
//!
//! [`Broker::start`] runs the Debian package's `rabbitmq-server` (never a system service,
//! never the `/usr/sbin` wrappers, which switch to the `rabbitmq` user, its home and its
//! cookie) with an environment of its own, in a data directory of its own, on free
//! loopback ports, and returns once the broker completes an AMQP handshake. Nothing is
//! shared with any other broker on the machine, so tests can run several at once.
//!
//! Why each knob:
//!
//! - **Its own epmd, started first.** Every Erlang node registers with the port mapper
//!   daemon. Without one listening on `ERL_EPMD_PORT` the broker starts `epmd -daemon`
//!   itself, which detaches and outlives everything (its prelaunch does so even with
//!   `-start_epmd false`: tried). So `epmd -port P -address 127.0.0.1` is our child, and
//!   every start and restart checks that it listens before the broker is started.
//! - **Three free loopback ports** (AMQP, Erlang distribution, epmd), picked together so
//!   they differ, and given to the broker explicitly. The default ports (5672, 25672,
//!   4369) would clash with any other broker. If another process takes a port between the
//!   pick and the broker's bind, the start is tried again with fresh ports.
//! - **Loopback only.** `listeners.tcp.1 = 127.0.0.1:PORT` in `rabbitmq.conf`,
//!   `RABBITMQ_NODE_IP_ADDRESS`, `ERL_EPMD_ADDRESS` and `-kernel inet_dist_use_interface
//!   {127,0,0,1}` (without it the distribution port listens on every interface). The
//!   `guest` user may log in over loopback by default (`loopback_users.guest = true`), so
//!   no user is created and `loopback_users` is left alone.
//! - **A data directory of its own**, a temporary one removed on stop unless the caller
//!   gives one to keep: `HOME` (the Erlang cookie), `mnesia/` (queues and messages),
//!   `log/`, `rabbitmq.conf`, an empty `enabled_plugins` (no management plugin: it slows
//!   the stop to ≈ 6 s and its numbers lag) and an empty `rabbitmq-env.conf` (so
//!   `/etc/rabbitmq/rabbitmq-env.conf` is not read), the pid file, and the broker's
//!   stdout/stderr. Inherited `RABBITMQ_*` and `ERL_*` variables are removed, so the
//!   user's environment cannot redirect any of it.
//! - **The Erlang VM as our direct child.** `RABBITMQ_ALLOW_INPUT` makes the start script
//!   `exec` the VM instead of keeping a shell wrapper that forwards signals to it (and we
//!   add `-noinput` ourselves, so there is still no shell on stdin). So the child we spawn
//!   *is* `beam.smp`: the parent-death signal reaches the broker itself (a SIGKILL of the
//!   wrapper alone would leave the VM running), and we reap it ourselves, so its PID is
//!   never signalled after reuse. The VM is the leader of its own process group; the
//!   group is killed when it ends, so no helper it started survives it.
//! - **Readiness = an AMQP handshake.** The TCP listener opens a little before the boot
//!   completes, so a TCP connect alone is not enough: a `lapin` connection that opens a
//!   channel is. Each `rabbitmqctl` call would cost 1–2 s of VM start (and start an epmd
//!   daemon). Measured on the 2-core development machine: ready 3.5–6.6 s after the start
//!   with builds running beside it (load ≈ 3); 9–13 s has been seen during a heavy build.
//! - **Stop = SIGTERM** to the process group: RabbitMQ shuts down cleanly (queues and
//!   messages flushed) in ≈ 1.1 s; SIGKILL after [`STOP_GRACE`]. Then epmd, then the
//!   temporary directory. [`Drop`] does the same, best effort. If the lab itself is
//!   killed with SIGKILL, the parent-death signal still ends the broker and epmd; only the
//!   temporary directory is left (`loadtest-broker-*` in the temp dir).
//!
//! [`require_installed_or_skip`] is the one rule for tests that need a broker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::child::Supervised;
use crate::server::{join_last_lines, signal, signal_group};

/// The broker's start script in Debian's `rabbitmq-server` package.
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
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
const EPMD_GRACE: Duration = Duration::from_secs(5);
/// How long a SIGKILLed broker may take to be gone (it is immediate unless the kernel is
/// stuck on I/O).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Pause between readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Longest wait for one TCP connect or one AMQP handshake while probing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often progress is reported while the broker starts.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Starts tried with fresh ports when a picked port was taken before the broker bound it.
const PORT_ATTEMPTS: u32 = 3;
/// Lines of the broker's output kept for an error message.
const TAIL_LINES: usize = 20;

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
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            ready_timeout: DEFAULT_READY_TIMEOUT,
            data_dir: None,
            progress: false,
            cancel: None,
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

/// Where the broker's programs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    /// [`RABBITMQ_SERVER`].
    pub rabbitmq_server: PathBuf,
    /// epmd, from [`EPMD_PATHS`].
    pub epmd: PathBuf,
}

impl Installation {
    /// Finds the programs, or says which is missing and how to install it.
    pub fn find() -> Result<Installation, BrokerError> {
        let rabbitmq_server = PathBuf::from(RABBITMQ_SERVER);
        if !rabbitmq_server.is_file() {
            return Err(BrokerError::NotInstalled {
                what: "rabbitmq-server",
                path: rabbitmq_server,
            });
        }
        let epmd = EPMD_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| BrokerError::NotInstalled {
                what: "epmd (Erlang's port mapper, package erlang-base)",
                path: PathBuf::from(EPMD_PATHS[0]),
            })?;
        Ok(Installation {
            rabbitmq_server,
            epmd,
        })
    }
}

/// Test support for every test that needs a real broker: the installation when RabbitMQ
/// is installed; otherwise [`crate::prerequisite::require`]'s rule (the test fails under
/// CI; elsewhere it prints `SKIPPED: <test>: rabbitmq-server is not installed (… is
/// missing): <how to install it>` and gets `None`, and returns).
///
/// ```no_run
/// # fn a_test() {
/// let Some(_installation) = loadtest::broker::require_installed_or_skip() else {
///     return;
/// };
/// # }
/// ```
pub fn require_installed_or_skip() -> Option<Installation> {
    crate::prerequisite::require(Installation::find().map_err(|error| {
        crate::prerequisite::Missing {
            what: match &error {
                BrokerError::NotInstalled { what, path } => {
                    format!("{what} is not installed ({} is missing)", path.display())
                }
                other => other.to_string(),
            },
            how: INSTALL_HINT.to_string(),
        }
    }))
}

/// How a [`Broker::stop`] went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stopped {
    /// RabbitMQ exited by itself within [`STOP_GRACE`] of SIGTERM (not killed).
    pub graceful: bool,
    /// From the stop's start until everything was gone.
    pub elapsed: Duration,
}

/// A running broker of our own. Stop it with [`Broker::stop`]; dropping it stops it too.
pub struct Broker {
    installation: Installation,
    node: String,
    ports: Ports,
    dir: DataDir,
    ready_timeout: Duration,
    progress: bool,
    epmd: Option<Supervised>,
    beam: Option<Supervised>,
    /// The VM's PID as it wrote it to the pid file (checked to be in our child's group).
    beam_pid: Option<u32>,
    /// How long the last start or restart took until the handshake succeeded.
    ready_after: Duration,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("node", &self.node)
            .field("amqp_url", &self.amqp_url())
            .field("pid", &self.pid())
            .field("data_dir", &self.data_dir())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Starts epmd and RabbitMQ (see the module doc) and waits until an AMQP handshake
    /// succeeds, at most `options.ready_timeout`. Blocks for seconds: in async code call
    /// it through `tokio::task::spawn_blocking`. On failure everything it started is
    /// stopped, and the error carries the broker's last output lines.
    pub fn start(options: BrokerOptions) -> Result<Broker, BrokerError> {
        let installation = Installation::find()?;
        let dir = DataDir::prepare(options.data_dir.as_deref())?;
        let node = dir.node_name()?;
        let mut broker = Broker {
            installation,
            node,
            ports: Ports::pick()?,
            dir,
            ready_timeout: options.ready_timeout,
            progress: options.progress,
            epmd: None,
            beam: None,
            beam_pid: None,
            ready_after: Duration::ZERO,
        };
        let cancel = options.cancel.unwrap_or_default();
        let mut attempt = 1;
        loop {
            match broker.boot(&cancel) {
                Ok(()) => return Ok(broker),
                Err(Failure::PortTaken(message)) if attempt < PORT_ATTEMPTS => {
                    if broker.progress {
                        eprintln!("loadtest: {message}; trying again with other ports");
                    }
                    broker.stop_processes(Duration::ZERO);
                    broker.ports = Ports::pick()?;
                    attempt += 1;
                }
                Err(failure) => {
                    broker.stop_processes(Duration::ZERO);
                    return Err(failure.into());
                }
            }
        }
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` (the default virtual host `/`).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.amqp_addr())
    }

    /// The AMQP listener, `127.0.0.1:PORT`.
    pub fn amqp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.amqp))
    }

    /// The Erlang distribution port in use (it may change on [`Broker::restart`] when
    /// another process took it meanwhile; the AMQP port never does).
    pub fn distribution_port(&self) -> u16 {
        self.ports.dist
    }

    /// The Erlang VM's PID (`beam.smp`); `None` while it is down (after [`Broker::kill`]).
    pub fn pid(&self) -> Option<u32> {
        let beam = self.beam.as_ref().filter(|b| b.is_running())?;
        Some(self.beam_pid.unwrap_or(beam.pid))
    }

    /// Our epmd's PID; `None` if it is not running.
    pub fn epmd_pid(&self) -> Option<u32> {
        self.epmd.as_ref().filter(|e| e.is_running()).map(|e| e.pid)
    }

    /// The directory holding the broker's data, logs and configuration.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// RabbitMQ's own log file (in [`Broker::data_dir`]).
    pub fn log_file(&self) -> PathBuf {
        self.dir.log_dir().join(format!("{}.log", self.node))
    }

    /// The Erlang node name, `loadtest-…@localhost`.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// How long the last start or restart took until the broker answered AMQP.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Whether the broker process is alive (false after [`Broker::kill`] or a crash).
    pub fn is_running(&self) -> bool {
        self.beam.as_ref().is_some_and(Supervised::is_running)
    }

    /// How the broker process ended, if it did (e.g. "killed by signal 9 (SIGKILL)").
    pub fn exit_description(&self) -> Option<String> {
        self.beam.as_ref()?.ended()
    }

    /// Stops RabbitMQ (SIGTERM, SIGKILL after [`STOP_GRACE`]), then epmd, then removes
    /// the temporary data directory (a directory given in [`BrokerOptions::data_dir`] is
    /// kept). Nothing of the broker is left running afterwards, whatever the result.
    pub fn stop(mut self) -> Result<Stopped, BrokerError> {
        let started = Instant::now();
        let graceful = self.stop_processes(STOP_GRACE);
        let dir = std::mem::replace(&mut self.dir, DataDir::Gone);
        dir.remove()?;
        Ok(Stopped {
            graceful,
            elapsed: started.elapsed(),
        })
    }

    /// Stops RabbitMQ cleanly (if it runs) and starts it again on the same data directory,
    /// node name and AMQP port (clients reconnect to the same URL), waiting until it is
    /// ready: durable queues and persistent messages are still there. Also brings the
    /// broker back after [`Broker::kill`].
    ///
    /// The Erlang distribution port is free while the broker is down, so another broker
    /// starting at that moment (tests run in parallel) may pick and take it. Only the
    /// node's peers use that port, and it is found through our own epmd, so a taken one
    /// is simply replaced: checked before the start, and on an "address in use" failure
    /// the start is tried again with a fresh one (at most three times).
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        if let Some(beam) = self.beam.take() {
            beam.terminate(STOP_GRACE);
        }
        self.beam_pid = None;
        let mut attempt = 1;
        loop {
            if !port_is_free(self.ports.dist) {
                self.ports.dist = self.fresh_dist_port()?;
            }
            match self.boot(&AtomicBool::new(false)) {
                Ok(()) => return Ok(()),
                Err(failure) => {
                    if let Some(beam) = self.beam.take() {
                        beam.terminate(Duration::ZERO);
                    }
                    match failure {
                        Failure::PortTaken(message) if attempt < PORT_ATTEMPTS => {
                            if self.progress {
                                eprintln!(
                                    "loadtest: {message}; trying again with another distribution port"
                                );
                            }
                            self.ports.dist = self.fresh_dist_port()?;
                            attempt += 1;
                        }
                        failure => return Err(failure.into()),
                    }
                }
            }
        }
    }

    /// A free loopback port for the Erlang distribution, other than the AMQP and epmd
    /// ports (and than the one in use now, which someone took).
    fn fresh_dist_port(&self) -> Result<u16, BrokerError> {
        for _ in 0..10 {
            let picked = Ports::pick()?;
            for port in [picked.amqp, picked.dist, picked.epmd] {
                if ![self.ports.amqp, self.ports.epmd, self.ports.dist].contains(&port) {
                    return Ok(port);
                }
            }
        }
        Err(BrokerError::Setup(
            "cannot find a free port on 127.0.0.1 for the broker's Erlang distribution; check the loopback interface".into(),
        ))
    }

    /// Kills the broker with SIGKILL, as a crash or `kill -9` would (for fault tests),
    /// and waits until it is gone. Messages it had confirmed as persisted survive;
    /// [`Broker::restart`] brings it back.
    pub fn kill(&mut self) -> Result<(), BrokerError> {
        let beam = self
            .beam
            .as_ref()
            .filter(|b| b.is_running())
            .ok_or_else(|| {
                BrokerError::NotRunning(format!(
                    "RabbitMQ (node {}) is not running, so it cannot be killed; restart it first",
                    self.node
                ))
            })?;
        beam.with_running(|leader| {
            // The VM itself; with a wrapper shell in front it is the pid-file PID.
            signal(self.beam_pid.unwrap_or(leader), libc::SIGKILL);
        });
        if !beam.wait(KILL_WAIT) {
            // The VM is gone but a wrapper held on: end the whole group.
            beam.with_running(|leader| signal_group(leader, libc::SIGKILL));
            beam.wait(KILL_WAIT);
        }
        self.beam_pid = None;
        Ok(())
    }

    /// Starts epmd (unless it runs) and the broker on `self.ports`, and waits until ready.
    fn boot(&mut self, cancel: &AtomicBool) -> Result<(), Failure> {
        self.dir
            .write_config(self.ports.amqp)
            .map_err(Failure::Other)?;
        if !self.epmd.as_ref().is_some_and(Supervised::is_running) {
            self.epmd = Some(self.start_epmd(cancel)?);
        }
        let started = Instant::now();
        let output = Output::at_end_of(&self.dir);
        let beam = Supervised::spawn("rabbitmq", self.broker_command(&output)?).map_err(|e| {
            Failure::Other(format!(
                "cannot start {}: {e}; check that rabbitmq-server is installed completely ({INSTALL_HINT})",
                self.installation.rabbitmq_server.display()
            ))
        })?;
        let beam = self.beam.insert(beam);
        wait_until_ready(
            beam,
            &self.node,
            self.ports.amqp,
            started,
            self.ready_timeout,
            self.progress,
            cancel,
            &output,
        )?;
        self.ready_after = started.elapsed();
        self.beam_pid = read_pid_file(&self.dir.pid_file()).filter(|&pid| {
            beam.with_running(|leader| pid == leader || process_group_of(pid) == Some(leader))
                .unwrap_or(false)
        });
        Ok(())
    }

    fn start_epmd(&self, cancel: &AtomicBool) -> Result<Supervised, Failure> {
        let log = self.dir.path().join("epmd.log");
        let output = open_append(&log).map_err(Failure::Other)?;
        let offset = output.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(&self.installation.epmd);
        command
            .arg("-port")
            .arg(self.ports.epmd.to_string())
            .arg("-address")
            .arg("127.0.0.1")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            // In the data directory, like the broker: no process of ours holds another
            // directory open, and a leftover is easy to find.
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(output.try_clone().map_err(|e| {
                Failure::Other(format!("cannot use {}: {e}", log.display()))
            })?))
            .stderr(Stdio::from(output));
        let epmd = Supervised::spawn("epmd", command).map_err(|e| {
            Failure::Other(format!(
                "cannot start {}: {e}; check that Erlang is installed ({INSTALL_HINT})",
                self.installation.epmd.display()
            ))
        })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.epmd));
        let deadline = Instant::now() + EPMD_GRACE;
        loop {
            if TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok() {
                return Ok(epmd);
            }
            let failed = |why: String| {
                let said = read_from(&log, offset);
                let message = format!(
                    "epmd ({}) {why}{}",
                    self.installation.epmd.display(),
                    tail_note(&said, "its output ends")
                );
                if mentions_port_taken(&said) {
                    Failure::PortTaken(message)
                } else {
                    Failure::Other(message)
                }
            };
            if let Some(how) = epmd.ended() {
                return Err(failed(format!("{how} instead of listening on {addr}")));
            }
            if cancel.load(Ordering::SeqCst) {
                epmd.terminate(Duration::ZERO);
                return Err(Failure::Cancelled);
            }
            if Instant::now() >= deadline {
                epmd.terminate(Duration::ZERO);
                return Err(failed(format!(
                    "did not listen on {addr} within {}, so it was killed",
                    seconds_text(EPMD_GRACE)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn broker_command(&self, output: &Output) -> Result<Command, Failure> {
        let dir = &self.dir;
        let (stdout, stderr) = output.open().map_err(Failure::Other)?;
        let mut command = Command::new(&self.installation.rabbitmq_server);
        // Only our settings: a RABBITMQ_* or ERL_* variable inherited from the user's
        // shell (or NOTIFY_SOCKET, which switches the script to systemd mode) could send
        // the broker elsewhere.
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("RABBITMQ_")
                || key_text.starts_with("ERL_")
                || key_text == "NOTIFY_SOCKET"
            {
                command.env_remove(&key);
            }
        }
        let erl_args = "-noinput -kernel inet_dist_use_interface {127,0,0,1}";
        command
            .env("HOME", dir.path())
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.ports.amqp.to_string())
            .env("RABBITMQ_DIST_PORT", self.ports.dist.to_string())
            .env("ERL_EPMD_PORT", self.ports.epmd.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", dir.mnesia_dir())
            .env("RABBITMQ_LOG_BASE", dir.log_dir())
            .env("RABBITMQ_CONFIG_FILE", dir.config_file())
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.plugins_file())
            .env("RABBITMQ_CONF_ENV_FILE", dir.conf_env_file())
            .env("RABBITMQ_PID_FILE", dir.pid_file())
            .env("RABBITMQ_ALLOW_INPUT", "true")
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", erl_args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        Ok(command)
    }

    /// Stops the broker (SIGTERM to its group, SIGKILL after `grace`) and epmd; returns
    /// whether the broker ended within `grace` (true if it was not running).
    fn stop_processes(&mut self, grace: Duration) -> bool {
        let graceful = self
            .beam
            .take()
            .is_none_or(|beam| !beam.is_running() || beam.terminate(grace));
        self.beam_pid = None;
        if let Some(epmd) = self.epmd.take() {
            epmd.terminate(EPMD_GRACE);
        }
        graceful
    }
}

impl Drop for Broker {
    /// Stops the broker as [`Broker::stop`] does, if it was not stopped; never panics.
    fn drop(&mut self) {
        self.stop_processes(STOP_GRACE);
        let dir = std::mem::replace(&mut self.dir, DataDir::Gone);
        let _ = dir.remove();
    }
}

/// Why one boot did not succeed.
enum Failure {
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

/// Probes until the broker completes an AMQP handshake, it exits, the timeout passes or
/// the start is cancelled. Kills it in the last two cases.
#[allow(clippy::too_many_arguments)]
fn wait_until_ready(
    beam: &Supervised,
    node: &str,
    port: u16,
    started: Instant,
    timeout: Duration,
    progress: bool,
    cancel: &AtomicBool,
    output: &Output,
) -> Result<(), Failure> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let url = format!("amqp://guest:guest@{addr}/%2f");
    let mut next_progress = started + PROGRESS_EVERY;
    let mut last_refusal = String::from("its AMQP port did not accept connections yet");
    loop {
        if let Some(how) = beam.ended() {
            let said = output.read();
            let message = format!(
                "RabbitMQ (node {node}) {how} before it was ready{}",
                tail_note(&said, "its output ends")
            );
            return Err(if mentions_port_taken(&said) {
                Failure::PortTaken(message)
            } else {
                Failure::Other(message)
            });
        }
        if cancel.load(Ordering::SeqCst) {
            beam.terminate(Duration::ZERO);
            return Err(Failure::Cancelled);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            beam.terminate(Duration::ZERO);
            let said = output.read();
            return Err(Failure::Other(format!(
                "RabbitMQ (node {node}) was not ready within {} ({last_refusal}), so it was killed; \
                 raise the ready timeout on a slow machine{}",
                seconds_text(timeout),
                tail_note(&said, "its output ends")
            )));
        }
        if progress && Instant::now() >= next_progress {
            eprintln!(
                "loadtest: waiting for RabbitMQ on {addr}: {:.0} s so far (usually 4–13 s; {last_refusal})",
                waited.as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        let probe_timeout = PROBE_TIMEOUT.min(timeout.saturating_sub(waited));
        match TcpStream::connect_timeout(&addr, probe_timeout.max(Duration::from_millis(10))) {
            Err(e) => last_refusal = format!("its AMQP port: {e}"),
            Ok(stream) => {
                drop(stream);
                match amqp_handshake(&url, probe_timeout) {
                    Ok(()) => return Ok(()),
                    Err(e) => last_refusal = format!("the AMQP handshake: {e}"),
                }
            }
        }
        std::thread::sleep(PROBE_EVERY);
    }
}

/// "60 s", "0.5 s".
fn seconds_text(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds.fract() == 0.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{seconds:.1} s")
    }
}

/// Opens an AMQP connection and a channel, then closes them. On a thread of its own with
/// its own small runtime, so it works whether or not the caller is inside a tokio runtime.
fn amqp_handshake(url: &str, timeout: Duration) -> Result<(), String> {
    let url = url.to_string();
    let probe = std::thread::Builder::new()
        .name("broker-probe".to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime for the probe: {e}"))?;
            runtime.block_on(async {
                let attempt = async {
                    let connection =
                        lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                            .await
                            .map_err(|e| format!("connect: {e}"))?;
                    let channel = connection
                        .create_channel()
                        .await
                        .map_err(|e| format!("open a channel: {e}"))?;
                    channel
                        .close(200, "readiness probe".into())
                        .await
                        .map_err(|e| format!("close the channel: {e}"))?;
                    connection
                        .close(200, "readiness probe".into())
                        .await
                        .map_err(|e| format!("close the connection: {e}"))
                };
                tokio::time::timeout(timeout, attempt)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
            })
        })
        .map_err(|e| format!("cannot start the probe thread: {e}"))?;
    probe
        .join()
        .unwrap_or_else(|_| Err("the probe thread panicked".to_string()))
}

// ---------------------------------------------------------------------------------------
// Ports

/// The three loopback ports a broker needs.
#[derive(Debug, Clone, Copy)]
struct Ports {
    amqp: u16,
    dist: u16,
    epmd: u16,
}

impl Ports {
    /// Three free ports, held open together while picked so that they differ.
    fn pick() -> Result<Ports, BrokerError> {
        let bind = || {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| {
                BrokerError::Setup(format!(
                    "cannot find a free port on 127.0.0.1 for the broker: {e}; check the loopback interface is up"
                ))
            })
        };
        let listeners = [bind()?, bind()?, bind()?];
        let port = |l: &TcpListener| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| BrokerError::Setup(format!("cannot read a picked port's number: {e}")))
        };
        Ok(Ports {
            amqp: port(&listeners[0])?,
            dist: port(&listeners[1])?,
            epmd: port(&listeners[2])?,
        })
    }
}

/// Whether nothing listens on loopback `port` now (we can bind it).
fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Whether output says an address was in use (the race between picking and binding).
fn mentions_port_taken(output: &str) -> bool {
    let lower = output.to_lowercase();
    lower.contains("eaddrinuse") || lower.contains("address already in use")
}

// ---------------------------------------------------------------------------------------
// Data directory

/// Where a broker keeps everything.
enum DataDir {
    /// Removed on stop.
    Temporary(tempfile::TempDir),
    /// Given by the caller; kept.
    Kept(PathBuf),
    /// Already removed or handed back.
    Gone,
}

/// File in a kept data directory that remembers the node name: RabbitMQ stores its data
/// under the node's name, so a broker started later on the directory must use the same.
const NODE_NAME_FILE: &str = "node-name";

impl DataDir {
    fn prepare(keep: Option<&Path>) -> Result<DataDir, BrokerError> {
        let dir = match keep {
            None => DataDir::Temporary(
                tempfile::Builder::new()
                    .prefix("loadtest-broker-")
                    .tempdir()
                    .map_err(|e| {
                        BrokerError::Setup(format!(
                            "cannot create a temporary directory for the broker in {}: {e}; \
                             check that it is writable and has space (or set TMPDIR)",
                            std::env::temp_dir().display()
                        ))
                    })?,
            ),
            Some(path) => {
                fs::create_dir_all(path).map_err(|e| {
                    BrokerError::Setup(format!(
                        "cannot create the broker's data directory {}: {e}; check the path and its permissions",
                        path.display()
                    ))
                })?;
                let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
                if let Some(pid) = read_pid_file(&path.join(PID_FILE))
                    && fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "beam.smp")
                {
                    return Err(BrokerError::Setup(format!(
                        "the data directory {} is in use by a running RabbitMQ (pid {pid}); stop it or choose another directory",
                        path.display()
                    )));
                }
                DataDir::Kept(path)
            }
        };
        for sub in [dir.mnesia_dir(), dir.log_dir()] {
            fs::create_dir_all(&sub).map_err(|e| {
                BrokerError::Setup(format!(
                    "cannot create {}: {e}; check the data directory's permissions",
                    sub.display()
                ))
            })?;
        }
        Ok(dir)
    }

    fn path(&self) -> &Path {
        match self {
            DataDir::Temporary(t) => t.path(),
            DataDir::Kept(p) => p,
            DataDir::Gone => Path::new(""),
        }
    }

    fn mnesia_dir(&self) -> PathBuf {
        self.path().join("mnesia")
    }
    fn log_dir(&self) -> PathBuf {
        self.path().join("log")
    }
    fn config_file(&self) -> PathBuf {
        self.path().join("rabbitmq.conf")
    }
    fn plugins_file(&self) -> PathBuf {
        self.path().join("enabled_plugins")
    }
    fn conf_env_file(&self) -> PathBuf {
        self.path().join("rabbitmq-env.conf")
    }
    fn pid_file(&self) -> PathBuf {
        self.path().join(PID_FILE)
    }

    /// `loadtest-<random>@localhost`: new for a temporary directory, remembered in a kept
    /// one. Unique, so two brokers never confuse each other's data or logs.
    fn node_name(&self) -> Result<String, BrokerError> {
        let fresh = || {
            let id = uuid::Uuid::new_v4().simple().to_string();
            format!("loadtest-{}@localhost", &id[..12])
        };
        let DataDir::Kept(path) = self else {
            return Ok(fresh());
        };
        let file = path.join(NODE_NAME_FILE);
        if let Ok(name) = fs::read_to_string(&file) {
            let name = name.trim();
            if !name.is_empty() {
                return Ok(name.to_string());
            }
        }
        let name = fresh();
        fs::write(&file, format!("{name}\n"))
            .map_err(|e| BrokerError::Setup(format!("cannot write {}: {e}", file.display())))?;
        Ok(name)
    }

    /// Writes the configuration for this start (the AMQP port may change between starts
    /// of a kept directory).
    fn write_config(&self, amqp_port: u16) -> Result<(), String> {
        let files = [
            (
                self.config_file(),
                format!(
                    "# Written by loadtest for one private broker: AMQP on loopback only.\n\
                     listeners.tcp.1 = 127.0.0.1:{amqp_port}\n"
                ),
            ),
            // No plugins (the management plugin slows stops and is not needed).
            (self.plugins_file(), String::new()),
            // Empty, so /etc/rabbitmq/rabbitmq-env.conf is not read instead.
            (self.conf_env_file(), String::new()),
        ];
        for (path, contents) in files {
            fs::write(&path, contents).map_err(|e| {
                format!(
                    "cannot write {}: {e}; check the data directory's permissions and free space",
                    path.display()
                )
            })?;
        }
        let _ = fs::remove_file(self.pid_file()); // a stale one would name another process
        Ok(())
    }

    /// Removes a temporary directory (a kept one stays).
    fn remove(self) -> Result<(), BrokerError> {
        match self {
            DataDir::Temporary(dir) => {
                let path = dir.path().to_path_buf();
                dir.close().map_err(|e| {
                    BrokerError::Cleanup(format!(
                        "the broker stopped, but its temporary directory {} could not be removed: {e}; remove it by hand",
                        path.display()
                    ))
                })
            }
            DataDir::Kept(_) | DataDir::Gone => Ok(()),
        }
    }
}

/// The pid file's name in the data directory.
const PID_FILE: &str = "rabbitmq.pid";

fn read_pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The process group of `pid` (field 5 of /proc/PID/stat), if it exists.
fn process_group_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // After ')': field 3 (state) is index 0, so field 5 (pgrp) is index 2.
    after.split_whitespace().nth(2)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// The broker's output

/// The broker's stdout and stderr files, and where this start's output begins in them
/// (a kept directory keeps the output of earlier starts).
struct Output {
    stdout: PathBuf,
    stderr: PathBuf,
    stdout_from: u64,
    stderr_from: u64,
}

impl Output {
    fn at_end_of(dir: &DataDir) -> Output {
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let len = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Output {
            stdout_from: len(&stdout),
            stderr_from: len(&stderr),
            stdout,
            stderr,
        }
    }

    fn open(&self) -> Result<(File, File), String> {
        Ok((open_append(&self.stdout)?, open_append(&self.stderr)?))
    }

    /// This start's output: stderr (where a failed boot says why), then stdout.
    fn read(&self) -> String {
        let mut text = read_from(&self.stdout, self.stdout_from);
        text.push('\n');
        text.push_str(&read_from(&self.stderr, self.stderr_from));
        text
    }
}

fn open_append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot open {} for the broker's output: {e}; check the data directory's permissions",
                path.display()
            )
        })
}

/// A file's contents from `offset` on (at most its last 256 KiB), lossy UTF-8.
fn read_from(path: &Path, offset: u64) -> String {
    const MAX: u64 = 256 * 1024;
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = offset.max(len.saturating_sub(MAX));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = file.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// "; {label}: line | line | …" with the last lines of `output`, or "" when it is empty.
fn tail_note(output: &str, label: &str) -> String {
    let lines: Vec<String> = output
        .lines()
        .rev()
        .take(TAIL_LINES)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(str::to_string)
        .collect();
    join_last_lines(&lines).map_or_else(String::new, |last| format!("; {label}: {last}"))
}

// ---------------------------------------------------------------------------------------
// `loadtest broker`

/// `loadtest broker`: starts a broker, prints its AMQP URL as the only line on stdout,
/// and runs until SIGINT (Ctrl-C), SIGTERM or SIGHUP, then stops it cleanly. A signal
/// during the start abandons it. Fails if the broker dies by itself.
pub fn run_foreground(mut options: BrokerOptions) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use tokio::signal::unix::{SignalKind, signal as unix_signal};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Handlers first: from here on a signal cannot kill us before the broker is
        // stopped (the default action would leave the data directory behind).
        let mut interrupt = unix_signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut terminate = unix_signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut hangup = unix_signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        let cancel = Arc::new(AtomicBool::new(false));
        options.cancel = Some(Arc::clone(&cancel));
        options.progress = true;
        let starting = tokio::task::spawn_blocking(move || Broker::start(options));
        tokio::pin!(starting);
        let broker = loop {
            tokio::select! {
                started = &mut starting => break started.context("the broker start task failed")?,
                _ = interrupt.recv() => cancel.store(true, Ordering::SeqCst),
                _ = terminate.recv() => cancel.store(true, Ordering::SeqCst),
                _ = hangup.recv() => cancel.store(true, Ordering::SeqCst),
            }
        };
        let broker = match broker {
            Ok(broker) => broker,
            Err(BrokerError::Cancelled) => {
                eprintln!("loadtest: stopped before RabbitMQ was ready; nothing is left running");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        {
            let mut stdout = io::stdout().lock();
            let _ = writeln!(stdout, "{}", broker.amqp_url());
            let _ = stdout.flush();
        }
        eprintln!(
            "loadtest: RabbitMQ ready in {:.1} s (node {}, pid {}, data in {}); stop it with Ctrl-C or kill -TERM {}",
            broker.ready_after().as_secs_f64(),
            broker.node_name(),
            broker.pid().map_or_else(|| "?".to_string(), |p| p.to_string()),
            broker.data_dir().display(),
            std::process::id()
        );
        let mut check = tokio::time::interval(Duration::from_millis(500));
        let died = loop {
            tokio::select! {
                _ = interrupt.recv() => break None,
                _ = terminate.recv() => break None,
                _ = hangup.recv() => break None,
                _ = check.tick() => {
                    if !broker.is_running() {
                        break broker.exit_description();
                    }
                }
            }
        };
        if died.is_none() {
            eprintln!("loadtest: stopping RabbitMQ");
        }
        let stopped = tokio::task::spawn_blocking(move || broker.stop())
            .await
            .context("the broker stop task failed")??;
        if let Some(how) = died {
            anyhow::bail!(
                "RabbitMQ {how} by itself; see its log (keep it with --keep-data DIR to read it after the stop)"
            );
        }
        eprintln!(
            "loadtest: RabbitMQ stopped {}in {:.1} s",
            if stopped.graceful { "" } else { "(killed after the grace period) " },
            stopped.elapsed.as_secs_f64()
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_ports_differ() {
        let ports = Ports::pick().unwrap();
        assert_ne!(ports.amqp, ports.dist);
        assert_ne!(ports.amqp, ports.epmd);
        assert_ne!(ports.dist, ports.epmd);
    }

    #[test]
    fn port_clashes_are_recognised() {
        assert!(mentions_port_taken(
            "{listen_error,{acceptor,{127,0,0,1},5672},eaddrinuse}"
        ));
        assert!(mentions_port_taken(
            "epmd: failed to bind socket: Address already in use"
        ));
        assert!(!mentions_port_taken("init terminating in do_boot"));
    }

    #[test]
    fn tails_are_one_line() {
        let note = tail_note("a\n\nb\nc\n", "its output ends");
        assert_eq!(note, "; its output ends: a | b | c");
        assert_eq!(tail_note("\n \n", "x"), "");
    }

    #[test]
    fn the_process_group_is_read_after_the_command_name() {
        let me = std::process::id();
        // SAFETY: plain syscall.
        let group = unsafe { libc::getpgrp() } as u32;
        assert_eq!(process_group_of(me), Some(group));
    }

    #[test]
    fn a_kept_directory_keeps_its_node_name() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::prepare(Some(dir.path())).unwrap();
        let name = first.node_name().unwrap();
        assert!(
            name.starts_with("loadtest-") && name.ends_with("@localhost"),
            "{name}"
        );
        let second = DataDir::prepare(Some(dir.path())).unwrap();
        assert_eq!(second.node_name().unwrap(), name);
        assert!(dir.path().join("mnesia").is_dir());
        second.remove().unwrap();
        assert!(dir.path().is_dir(), "a kept directory stays");
    }

    #[test]
    fn a_temporary_directory_is_removed() {
        let dir = DataDir::prepare(None).unwrap();
        let path = dir.path().to_path_buf();
        dir.write_config(5672).unwrap();
        let config = fs::read_to_string(path.join("rabbitmq.conf")).unwrap();
        assert!(
            config.contains("listeners.tcp.1 = 127.0.0.1:5672"),
            "{config}"
        );
        dir.remove().unwrap();
        assert!(!path.exists());
    }
}
