//! A real load balancer in front of several purchasing nodes: HAProxy (Debian package
//! `haproxy`) as a child process with a configuration generated for the run.
//!
//! - [`BalancerConfig::render`] writes the configuration a user can read (the lab saves it
//!   as `haproxy.cfg` in the run's output folder); every knob in it carries a comment with
//!   its reason. [`check_config`] runs `haproxy -c` on it.
//! - [`Balancer::start`] runs `haproxy -f haproxy.cfg -db` (foreground, no daemon and no
//!   pidfile: the child's PID is HAProxy's), from a thread of its own with the
//!   parent-death signal, so it never outlives the lab; its log lines (one per request,
//!   naming the node that answered) go to `haproxy.log`. [`Balancer::stop`] ends it.
//! - [`Balancer::stats`] reads `show stat` from HAProxy's stats socket: per node its state
//!   (UP/DOWN as the health checks see it), sessions and queue. [`StatsSampler`] polls it
//!   every 100 ms during a run, for the timeline and the failover times.
//! - [`node_per_request`] reads the log back: which node handled each request id.
//!
//! Why HAProxy and these settings (measured with HAProxy 2.6 on the development machine):
//! a SIGKILLed node is marked DOWN about 1 s after the kill with `inter 500ms fall 2`
//! (connection refused fails each check at once), and requests keep succeeding meanwhile
//! because a connection failure is retried on another node; a node is back UP about 1 s
//! after it answers again (`rise 2`). Per-node `maxconn` makes HAProxy queue the excess
//! instead of pushing it onto a node, and a bounded queue turns the rest into an
//! immediate 503 in the contract's own format.

mod config;
mod haproxy;
mod log;
mod stats;

pub use config::{BalancerConfig, Node, check_config, free_port};
use haproxy::io_error;
pub use haproxy::{
    BACKEND, BalancerError, HAPROXY_PATHS, INSTALL_HINT, STATS_EVERY, installed,
    require_installed_or_skip,
};
pub use log::{LoggedRequest, node_per_request, parse_log_line};
pub use stats::{SampledStats, ServerStat, StatsReader, StatsSampler, parse_show_stat};

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::child::Supervised;
pub use crate::report::model::{BalancerSample, Transition};

/// How long HAProxy may take to listen: it starts in well under 0.1 s when idle.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a soft stop (SIGUSR1) may take: idle keep-alive connections of the clients
/// may hold it until then, after which the hard stop (SIGTERM) ends it.
const SOFT_STOP_GRACE: Duration = Duration::from_secs(3);

/// A running HAProxy. Stop it with [`Balancer::stop`]; dropping it kills it.
pub struct Balancer {
    url: String,
    config: BalancerConfig,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Supervised,
    /// Copies HAProxy's stdout and stderr into the log file.
    pumps: Vec<JoinHandle<()>>,
    /// The last lines of its stderr, for error messages.
    tail: Arc<Mutex<Vec<String>>>,
    /// The private directory of the stats socket, removed on drop.
    socket_dir: PathBuf,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("url", &self.url)
            .field("config", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl Balancer {
    /// Writes `haproxy.cfg` into `out_dir`, checks it with `haproxy -c`, starts HAProxy
    /// and waits until it listens. `configure` adjusts the defaults of
    /// [`BalancerConfig::new`] (the listening port and the socket are chosen here).
    /// `link` (`--network`): HAProxy runs in that host's namespace, on its address.
    pub fn start(
        nodes: Vec<Node>,
        out_dir: &Path,
        link: Option<&crate::network::HostLink>,
        configure: impl FnOnce(&mut BalancerConfig),
    ) -> Result<Balancer, BalancerError> {
        let program = installed().ok_or(BalancerError::NotInstalled)?;
        let socket_dir = std::env::temp_dir().join(format!(
            "loadtest-haproxy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&socket_dir)
            .map_err(io_error(format!("cannot create {}", socket_dir.display())))?;
        let cleanup = |e| {
            let _ = fs::remove_dir_all(&socket_dir);
            e
        };
        let port = free_port()
            .map_err(io_error("cannot find a free port on 127.0.0.1"))
            .map_err(cleanup)?;
        let ip = link.map_or(Ipv4Addr::LOCALHOST, |l| l.address);
        let mut config = BalancerConfig::new(
            nodes,
            SocketAddr::from((ip, port)),
            socket_dir.join("stats.sock"),
        );
        configure(&mut config);
        let config_path = out_dir.join("haproxy.cfg");
        fs::write(&config_path, config.render())
            .map_err(io_error(format!("cannot write {}", config_path.display())))
            .map_err(cleanup)?;
        check_config(&config_path).map_err(cleanup)?;
        let log_path = out_dir.join("haproxy.log");
        let netns = link.map(|l| &l.netns);
        let (child, pumps, tail) =
            spawn(&program, &config_path, &log_path, netns).map_err(cleanup)?;
        let mut balancer = Balancer {
            url: format!("http://{}", config.listen),
            config,
            config_path,
            log_path,
            child,
            pumps,
            tail,
            socket_dir,
        };
        balancer.wait_until_listening()?;
        Ok(balancer)
    }

    fn wait_until_listening(&mut self) -> Result<(), BalancerError> {
        let started = Instant::now();
        loop {
            if let Some(ended) = self.child.ended() {
                return Err(BalancerError::DidNotStart {
                    why: format!("it {ended}: {}", self.last_lines()),
                });
            }
            let listening =
                TcpStream::connect_timeout(&self.config.listen, Duration::from_millis(200)).is_ok();
            if listening && self.config.stats_socket.exists() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(BalancerError::DidNotStart {
                    why: format!(
                        "it did not listen on {} within {:?}: {}",
                        self.config.listen,
                        START_TIMEOUT,
                        self.last_lines()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn last_lines(&self) -> String {
        let tail = self.tail.lock().map(|t| t.clone()).unwrap_or_default();
        if tail.is_empty() {
            "no output".into()
        } else {
            tail.join(" / ")
        }
    }

    /// `http://127.0.0.1:PORT`: where clients send their orders.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn config(&self) -> &BalancerConfig {
        &self.config
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// HAProxy's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.with_running(|pid| pid)
    }

    /// A stats reader for the sampler thread.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader::new(self.config.stats_socket.clone(), BACKEND)
    }

    /// The nodes' rows of `show stat` now.
    pub fn stats(&self) -> io::Result<Vec<ServerStat>> {
        self.stats_reader().read()
    }

    /// Stops HAProxy (SIGTERM: a hard stop, fine once the nodes behind it have finished)
    /// and waits for its log to be complete. Returns how it ended.
    pub fn stop(mut self) -> String {
        // A soft stop first (SIGUSR1: stop listening, finish and log what is in progress,
        // exit), so the log has a line for every request; then the hard stop.
        self.child
            .with_running(|pid| crate::server::signal_group(pid, libc::SIGUSR1));
        let soft = self.child.wait(SOFT_STOP_GRACE);
        let in_grace = soft || self.child.terminate(STOP_GRACE);
        for pump in self.pumps.drain(..) {
            let _ = pump.join();
        }
        let ended = self
            .child
            .ended()
            .unwrap_or_else(|| "was not reaped".into());
        if in_grace {
            ended
        } else {
            format!("{ended} (killed after {STOP_GRACE:?})")
        }
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Balancer {
    fn drop(&mut self) {
        self.child.kill();
        let _ = fs::remove_dir_all(&self.socket_dir);
    }
}

/// The last stderr lines HAProxy wrote, for an error message.
type Tail = Arc<Mutex<Vec<String>>>;

/// Starts `program -f config -db` (in the foreground, so it stays our child), its stdout
/// (the request log) and stderr appended to `log_path` by a thread each, stderr's last
/// lines also kept in the returned tail.
fn spawn(
    program: &Path,
    config_path: &Path,
    log_path: &Path,
    netns: Option<&crate::network::Netns>,
) -> Result<(Supervised, Vec<JoinHandle<()>>, Tail), BalancerError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io_error(format!("cannot open {}", log_path.display())))?;
    let mut command = Command::new(program);
    command
        .arg("-f")
        .arg(config_path)
        .arg("-db")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(netns) = netns {
        netns.enter_on_exec(&mut command);
    }
    let (child, stdout, stderr) =
        Supervised::spawn_piped("haproxy", command).map_err(io_error("cannot start haproxy"))?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::new(Mutex::new(log));
    let mut pumps = Vec::new();
    if let Some(stdout) = stdout {
        pumps.push(pump(stdout, log.clone(), None));
    }
    if let Some(stderr) = stderr {
        pumps.push(pump(stderr, log, Some(tail.clone())));
    }
    Ok((child, pumps, tail))
}

/// Copies a pipe into the log file line by line; keeps stderr's last lines in `tail`.
fn pump(
    from: impl Read + Send + 'static,
    log: Arc<Mutex<File>>,
    tail: Option<Arc<Mutex<Vec<String>>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut log) = log.lock() {
                let _ = writeln!(log, "{line}");
            }
            if let Some(tail) = &tail
                && let Ok(mut tail) = tail.lock()
            {
                if tail.len() == 10 {
                    tail.remove(0);
                }
                tail.push(line);
            }
        }
    })
}
