//! [`Broker`]: starting it (epmd first, then rabbitmq-server on free ports), restarting
//! it on the same data and port, and stopping it with its epmd.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::child::Supervised;
use crate::server::{is_stopped, signal, signal_group};

use super::data_dir::{DataDir, process_group_of, read_pid_file};
use super::epmd::start_epmd;
use super::erlang::SharedErlang;
use super::install::Installation;
use super::options::{
    BrokerError, BrokerOptions, EPMD_GRACE, Failure, INSTALL_HINT, KILL_WAIT, PORT_ATTEMPTS,
    PROBE_EVERY, PROBE_TIMEOUT, RABBITMQCTL, STOP_GRACE,
};
use super::output::Output;
use super::ports::{Ports, port_is_free};
use super::ready::{Readiness, amqp_handshake};

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
    /// A cluster's node: the epmd and the cookie it shares with the other nodes (then
    /// `epmd` stays `None`).
    shared: Option<Arc<SharedErlang>>,
    epmd: Option<Supervised>,
    beam: Option<Supervised>,
    /// The VM's PID as it wrote it to the pid file (checked to be in our child's group).
    beam_pid: Option<u32>,
    /// How long the last start or restart took until the handshake succeeded.
    ready_after: Duration,
    /// The cores the VM runs on (`None`: not pinned); see [`BrokerOptions::cores`].
    cores: Option<Vec<usize>>,
    /// See [`BrokerOptions::link`].
    link: Option<crate::network::HostLink>,
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
        Broker::launch(installation, dir, node, None, options)
    }

    /// Starts one node of a cluster: like [`Broker::start`], but with the cluster's epmd
    /// and cookie (`shared`) instead of its own, under the cluster's name for it, in a
    /// temporary directory. Not yet joined to the others: [`super::cluster`] does that.
    pub(super) fn start_member(
        installation: Installation,
        node: String,
        shared: Arc<SharedErlang>,
        options: BrokerOptions,
    ) -> Result<Broker, BrokerError> {
        let dir = DataDir::prepare(None)?;
        Broker::launch(installation, dir, node, Some(shared), options)
    }

    /// Boots the broker on free ports, trying again with fresh ones when a picked port was
    /// taken before the broker bound it.
    fn launch(
        installation: Installation,
        dir: DataDir,
        node: String,
        shared: Option<Arc<SharedErlang>>,
        options: BrokerOptions,
    ) -> Result<Broker, BrokerError> {
        let mut broker = Broker {
            installation,
            node,
            ports: Ports::pick()?,
            dir,
            ready_timeout: options.ready_timeout,
            progress: options.progress,
            shared,
            epmd: None,
            beam: None,
            beam_pid: None,
            ready_after: Duration::ZERO,
            cores: options.cores.clone(),
            link: options.link.clone(),
        };
        let cancel = options.cancel.unwrap_or_default();
        let mut attempt = 1;
        loop {
            broker.use_shared_epmd();
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

    /// A cluster's node registers with the cluster's epmd, not a port of its own.
    fn use_shared_epmd(&mut self) {
        if let Some(shared) = &self.shared {
            self.ports.epmd = shared.epmd_port;
        }
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` (the default virtual host `/`).
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.amqp_addr())
    }

    /// The AMQP listener, `127.0.0.1:PORT` (the host's address with `--network`).
    pub fn amqp_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip(), self.ports.amqp))
    }

    /// Where the node listens for AMQP: its host's address, else 127.0.0.1.
    fn ip(&self) -> Ipv4Addr {
        self.link
            .as_ref()
            .map_or(Ipv4Addr::LOCALHOST, |l| l.address)
    }

    /// The host's namespace (`--network`), which every process of the node joins.
    pub(super) fn netns(&self) -> Option<&crate::network::Netns> {
        self.link.as_ref().map(|l| &l.netns)
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
        let epmd = self
            .epmd
            .as_ref()
            .or(self.shared.as_ref().and_then(|s| s.epmd()));
        epmd.filter(|e| e.is_running()).map(|e| e.pid)
    }

    /// The directory holding the broker's data, logs and configuration.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory holding the Erlang cookie a cluster's nodes share (`None` for a
    /// single broker, whose cookie is in its data directory).
    pub fn cluster_home(&self) -> Option<&Path> {
        self.shared.as_ref().map(|s| s.home())
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

    /// Until the broker completes an AMQP handshake (after it rejoined a cluster: its
    /// listener is back only once the node's application runs again), at most until
    /// `deadline`; why not otherwise.
    pub(super) fn wait_amqp(&self, deadline: Instant) -> Result<(), String> {
        let url = self.amqp_url();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = PROBE_TIMEOUT.min(left).max(Duration::from_millis(100));
            match amqp_handshake(&url, timeout) {
                Ok(()) => return Ok(()),
                Err(e) if left.is_zero() => {
                    return Err(format!(
                        "RabbitMQ node {} did not answer AMQP in time ({e})",
                        self.node
                    ));
                }
                Err(_) => std::thread::sleep(PROBE_EVERY),
            }
        }
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
    pub(super) fn fresh_dist_port(&self) -> Result<u16, BrokerError> {
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

    /// Stops RabbitMQ cleanly (SIGTERM, SIGKILL after [`STOP_GRACE`]) and keeps its data
    /// directory, epmd and ports: the fault plan's `stop`. [`Broker::restart`] starts it
    /// again. Returns whether it stopped within the grace (`false` if it was not running).
    pub fn stop_node(&mut self) -> bool {
        let graceful = self
            .beam
            .take()
            .is_some_and(|beam| beam.is_running() && beam.terminate(STOP_GRACE));
        self.beam_pid = None;
        graceful
    }

    /// Sends `signal` (SIGSTOP, SIGCONT: the fault plan's `pause` and `resume`) to the
    /// broker's process group — the Erlang VM and its helpers, not epmd. Returns whether
    /// the broker was running.
    pub fn signal_node(&self, signal: i32) -> bool {
        self.beam
            .as_ref()
            .and_then(|beam| beam.with_running(|leader| signal_group(leader, signal)))
            .is_some()
    }

    /// Whether the broker is paused (its Erlang VM stopped by SIGSTOP).
    pub fn is_paused(&self) -> bool {
        self.pid().is_some_and(is_stopped)
    }

    /// Starts epmd (unless it runs) and the broker on `self.ports`, and waits until ready.
    pub(super) fn boot(&mut self, cancel: &AtomicBool) -> Result<(), Failure> {
        self.dir
            .write_config(self.ip(), self.ports.amqp, self.shared.is_some())
            .map_err(Failure::Other)?;
        // A cluster's node on loopback uses the cluster's epmd; every other node (a single
        // broker, a node on the lab network) runs its own.
        let own_epmd = self.shared.as_ref().is_none_or(|s| s.epmd().is_none());
        if own_epmd && !self.epmd.as_ref().is_some_and(Supervised::is_running) {
            self.epmd = Some(start_epmd(
                &self.installation,
                self.ports.epmd,
                self.link.as_ref(),
                self.dir.path(),
                cancel,
            )?);
        }
        let started = Instant::now();
        let output = Output::at_end_of(&self.dir);
        let beam = Supervised::spawn("rabbitmq", self.broker_command(&output)?).map_err(|e| {
            Failure::Other(format!(
                "cannot start {}: {e}; check that rabbitmq-server is installed completely ({INSTALL_HINT})",
                self.installation.rabbitmq_server.display()
            ))
        })?;
        let addr = self.amqp_addr();
        let beam = self.beam.insert(beam);
        Readiness {
            beam,
            node: &self.node,
            addr,
            started,
            timeout: self.ready_timeout,
            progress: self.progress,
            cancel,
            output: &output,
        }
        .wait()?;
        self.ready_after = started.elapsed();
        self.beam_pid = read_pid_file(&self.dir.pid_file()).filter(|&pid| {
            beam.with_running(|leader| pid == leader || process_group_of(pid) == Some(leader))
                .unwrap_or(false)
        });
        Ok(())
    }

    /// What tells an Erlang program which node this is and how to reach it, beside its
    /// name: `HOME` holds the node's cookie (`.erlang.cookie`, which the broker writes
    /// there on its first start; a program with another cookie is refused) and
    /// `ERL_EPMD_PORT` names our epmd, where the node's distribution port is found. The
    /// broker is started with these and [`Broker::rabbitmqctl_command`] shows them: one
    /// definition, so the line printed for the user cannot drift from the broker.
    pub(super) fn erlang_env(&self) -> Vec<(&'static str, OsString)> {
        let home = match &self.shared {
            Some(shared) => shared.home(),
            None => self.dir.path(),
        };
        let mut env = vec![
            ("HOME", home.as_os_str().to_owned()),
            ("ERL_EPMD_PORT", self.ports.epmd.to_string().into()),
        ];
        // On the lab network the nodes' host names resolve through the cluster's table.
        if let Some(inetrc) = self.shared.as_ref().and_then(|s| s.inetrc()) {
            env.push(("ERL_INETRC", inetrc.as_os_str().to_owned()));
        }
        env
    }

    /// The cores the broker is pinned to (`None`: not pinned).
    pub fn cores(&self) -> Option<Vec<usize>> {
        self.cores.clone()
    }

    /// The shell command that runs `rabbitmqctl` against this broker, to which the user
    /// adds a subcommand (`list_queues`, `status`, …): `HOME=DIR ERL_EPMD_PORT=PORT
    /// /usr/lib/rabbitmq/bin/rabbitmqctl -n NODE`, each word quoted for `sh` where needed.
    /// Not Debian's `/usr/sbin/rabbitmqctl`: it switches to the `rabbitmq` user and its
    /// cookie, and reaches only the system's broker.
    pub fn rabbitmqctl_command(&self) -> String {
        let mut words: Vec<String> = self
            .erlang_env()
            .iter()
            .map(|(key, value)| format!("{key}={}", shell_word(&value.to_string_lossy())))
            .collect();
        words.extend([RABBITMQCTL, "-n"].map(str::to_string));
        words.push(shell_word(&self.node));
        words.join(" ")
    }

    pub(super) fn broker_command(&self, output: &Output) -> Result<Command, Failure> {
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
        // `+sbwt none` (and for the dirty schedulers): an idle Erlang scheduler spins for a
        // while before it sleeps, RabbitMQ's runtime guide says, which on a machine shared
        // with what the lab measures (three nodes of a cluster on two cores) is CPU taken
        // from it for nothing.
        // The distribution listens on loopback, or on a cluster node's lab-network address
        // (its peers are other hosts there; a single broker's distribution serves only
        // rabbitmqctl, in its own namespace).
        let dist_ip = match self.shared.as_ref().and_then(|s| s.inetrc()) {
            Some(_) => self.ip(),
            None => Ipv4Addr::LOCALHOST,
        };
        let [a, b, c, d] = dist_ip.octets();
        let erl_args = format!(
            "-noinput -kernel inet_dist_use_interface {{{a},{b},{c},{d}}} \
             +sbwt none +sbwtdcpu none +sbwtdio none"
        );
        command
            .envs(self.erlang_env())
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", self.ip().to_string())
            .env("RABBITMQ_NODE_PORT", self.ports.amqp.to_string())
            .env("RABBITMQ_DIST_PORT", self.ports.dist.to_string())
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
        if let Some(cores) = self.cores.as_deref().map(crate::confine::cpu_set) {
            // SAFETY: the hook runs in the forked child before exec and makes one
            // async-signal-safe call on a set prepared beforehand; it allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cores)
                        .map_err(std::io::Error::from)
                });
            }
        }
        if let Some(netns) = self.netns() {
            netns.enter_on_exec(&mut command);
        }
        Ok(command)
    }

    /// Stops the broker (SIGTERM to its group, SIGKILL after `grace`) and epmd; returns
    /// whether the broker ended within `grace` (true if it was not running).
    pub(super) fn stop_processes(&mut self, grace: Duration) -> bool {
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

/// `word` as one `sh` word: as it is when it holds only characters the shell leaves
/// alone, else in single quotes (a `'` inside written `'\''`). A kept data directory's
/// path is the user's choice and may hold spaces.
pub(super) fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
