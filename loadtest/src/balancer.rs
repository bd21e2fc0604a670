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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wire_contract::http::{HEALTH_PATH, IDEMPOTENCY_KEY_HEADER, PROBLEM_JSON, REQUEST_ID_HEADER};

use crate::child::Supervised;
pub use crate::report::model::{BalancerSample, Transition};

/// Where Debian's package puts the program; the first one present is used.
pub const HAPROXY_PATHS: [&str; 2] = ["/usr/sbin/haproxy", "/usr/bin/haproxy"];
/// What to do when HAProxy is missing; every "not installed" message says it.
pub const INSTALL_HINT: &str = "run scripts/test as root, or apt-get install haproxy";
/// The backend's name in the generated configuration (and in `show stat`).
pub const BACKEND: &str = "nodes";
/// How long HAProxy may take to listen: it starts in well under 0.1 s when idle.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop may take before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often [`StatsSampler`] asks for the stats: the failover times are measured to
/// this resolution.
pub const STATS_EVERY: Duration = Duration::from_millis(100);

/// The installed HAProxy, if any.
pub fn installed() -> Option<PathBuf> {
    HAPROXY_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The rule for tests that need HAProxy ([`crate::prerequisite::require`]): its path
/// when installed; otherwise the test fails under CI and prints one `SKIPPED:` line
/// elsewhere, and gets `None`.
pub fn require_installed_or_skip() -> Option<PathBuf> {
    crate::prerequisite::require(installed().ok_or_else(|| crate::prerequisite::Missing {
        what: format!(
            "haproxy is not installed (none of {} exists)",
            HAPROXY_PATHS.join(", ")
        ),
        how: INSTALL_HINT.to_string(),
    }))
}

/// Why the balancer could not be used: one line, with what to do.
#[derive(Debug)]
pub enum BalancerError {
    NotInstalled,
    /// `haproxy -c` refused the generated configuration (its own words).
    ConfigRefused {
        path: PathBuf,
        output: String,
    },
    Io {
        what: String,
        error: io::Error,
    },
    /// Started, but it did not listen, or it ended (its last output lines).
    DidNotStart {
        why: String,
    },
}

impl std::fmt::Display for BalancerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BalancerError::NotInstalled => write!(
                f,
                "HAProxy is not installed (looked for {}): {INSTALL_HINT}",
                HAPROXY_PATHS.join(", ")
            ),
            BalancerError::ConfigRefused { path, output } => write!(
                f,
                "HAProxy refused the generated configuration {}: {output}",
                path.display()
            ),
            BalancerError::Io { what, error } => write!(f, "{what}: {error}"),
            BalancerError::DidNotStart { why } => write!(f, "HAProxy did not start: {why}"),
        }
    }
}

impl std::error::Error for BalancerError {}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BalancerError {
    let what = what.into();
    move |error| BalancerError::Io { what, error }
}

/// One purchasing node behind the balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `node0`, `node1`, … (the name in the configuration, the stats and the log).
    pub name: String,
    pub addr: SocketAddr,
}

impl Node {
    /// `node{index}` at `addr`.
    pub fn numbered(index: usize, addr: SocketAddr) -> Node {
        Node {
            name: format!("node{index}"),
            addr,
        }
    }
}

/// What the generated configuration says.
#[derive(Debug, Clone)]
pub struct BalancerConfig {
    pub nodes: Vec<Node>,
    /// Where clients connect (the lab's target URL).
    pub listen: SocketAddr,
    /// The stats socket (a file in the run's private directory).
    pub stats_socket: PathBuf,
    /// Requests HAProxy lets one node work on at once: the node's own admission limit
    /// when it runs `--protect` (read from its `/metrics`), so the excess waits in
    /// HAProxy's queue instead of being pushed onto a node that would refuse it. `None`
    /// (unprotected nodes): no limit, as a plain balancer in front of the original.
    pub maxconn_per_node: Option<u32>,
    /// How long a request may wait in HAProxy's queue before a 503.
    pub queue_timeout: Duration,
    /// How long HAProxy waits for a node's answer: a little over the client's own timeout,
    /// so the client gives up first and HAProxy never cuts an order the client waits for.
    pub server_timeout: Duration,
    /// Health check interval (`inter`); a node is out after `fall` failed checks in a
    /// row and back after `rise` good ones.
    pub check_interval: Duration,
    pub fall: u32,
    pub rise: u32,
}

impl BalancerConfig {
    /// The defaults of the lab for these nodes (the measured failover settings above).
    pub fn new(nodes: Vec<Node>, listen: SocketAddr, stats_socket: PathBuf) -> BalancerConfig {
        BalancerConfig {
            nodes,
            listen,
            stats_socket,
            maxconn_per_node: None,
            queue_timeout: Duration::from_secs(2),
            server_timeout: Duration::from_secs(65),
            check_interval: Duration::from_millis(500),
            fall: 2,
            rise: 2,
        }
    }

    /// Requests HAProxy holds in its queue at most before it answers 503 at once: one
    /// more round of every node's slots. A request queued behind that many would wait
    /// more than one order's time for a slot; answering it now with `Retry-After` is
    /// kinder than a 503 after the queue timeout. `None` without a per-node limit.
    pub fn queue_bound(&self) -> Option<u32> {
        self.maxconn_per_node
            .map(|m| m.saturating_mul(self.nodes.len() as u32).max(1))
    }

    /// The configuration file's text.
    pub fn render(&self) -> String {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        let refusal = problem_json(
            "every purchasing node is busy; retry after the time in Retry-After (the balancer's queue is full or a request waited too long in it)",
        );
        let mut text = String::new();
        let mut line = |l: &str| {
            text.push_str(l);
            text.push('\n');
        };
        line("# Generated by `loadtest` for one run: HAProxy in front of the purchasing nodes.");
        line("# Every setting says why; the lab reads the stats socket and the log below.");
        line("global");
        line("    # One log line per request on stdout (the lab saves it as haproxy.log).");
        line("    log stdout format raw local0");
        line(&format!(
            "    # The lab samples node states, sessions and queues here (show stat).\n    stats socket {} mode 600 level admin",
            self.stats_socket.display()
        ));
        line("    # No global maxconn: HAProxy derives it from the open-files limit, and the");
        line("    # per-node limits below are what decide.");
        line("");
        line("defaults");
        line("    mode http");
        line("    log global");
        line("    option dontlognull");
        line("    # A connection to a node that does not answer at once is a dead node.");
        line("    timeout connect 1s");
        line("    timeout client 65s");
        line(&format!(
            "    # A little over the client's own timeout: the client gives up first.\n    timeout server {}",
            ms(self.server_timeout)
        ));
        line(&format!(
            "    # How long a request may wait for a free node slot before a 503.\n    timeout queue {}",
            ms(self.queue_timeout)
        ));
        line("    timeout http-request 10s");
        line("    timeout http-keep-alive 10s");
        line("    # Retries: a connection that failed never reached a node, so it is retried");
        line("    # (on another node: redispatch) for every request. A request that may have");
        line("    # reached a node (no answer, or none in time) is retried only when it carries");
        line("    # an Idempotency-Key (see the frontend), so no order can be written twice.");
        line("    retries 2");
        line("    option redispatch 1");
        line("    retry-on conn-failure empty-response response-timeout");
        line("    # HAProxy's own 503s (queue timeout, every node down) in the API's format.");
        line(&format!(
            "    http-error status 503 content-type \"{PROBLEM_JSON}\" string '{refusal}' hdr Retry-After 1"
        ));
        line("");
        line("frontend purchasing");
        line(&format!("    bind {}", self.listen));
        line("    # The request id (kept as it is on the way through) goes into the log line,");
        line("    # so the lab can tell which node handled each order.");
        line(&format!(
            "    http-request capture req.hdr({REQUEST_ID_HEADER}) len 100"
        ));
        line(&format!(
            "    http-request disable-l7-retry unless {{ req.hdr({IDEMPOTENCY_KEY_HEADER}) -m found }}"
        ));
        if let Some(bound) = self.queue_bound() {
            line("    # A bounded queue: past one more round of every node's slots, refuse now.");
            line(&format!(
                "    http-request return status 503 content-type \"{PROBLEM_JSON}\" string '{refusal}' hdr Retry-After 1 if {{ queue({BACKEND}) ge {bound} }}"
            ));
        }
        line(
            "    log-format \"rid=%[capture.req.hdr(0)] node=%s status=%ST tw=%Tw tr=%Tr ta=%Ta retries=%rc flags=%tsc\"",
        );
        line(&format!("    default_backend {BACKEND}"));
        line("");
        line(&format!("backend {BACKEND}"));
        line("    # The node with the fewest requests in progress: orders are long (0.5 s+).");
        line("    balance leastconn");
        line(&format!("    option httpchk GET {HEALTH_PATH}"));
        line("    http-check expect status 200");
        let maxconn = self
            .maxconn_per_node
            .map(|m| format!(" maxconn {m}"))
            .unwrap_or_default();
        line(&format!(
            "    # Checks every {} (every {} while a node changes state); out after {} failures,\n    # back after {} successes.{}",
            ms(self.check_interval),
            ms(self.check_interval / 2),
            self.fall,
            self.rise,
            if maxconn.is_empty() {
                ""
            } else {
                " maxconn = the node's admission limit."
            }
        ));
        line(&format!(
            "    default-server inter {} fastinter {} downinter {} fall {} rise {}{maxconn}",
            ms(self.check_interval),
            ms(self.check_interval / 2),
            ms(self.check_interval),
            self.fall,
            self.rise
        ));
        for node in &self.nodes {
            line(&format!("    server {} {} check", node.name, node.addr));
        }
        text
    }
}

/// A problem+json body on one line, safe inside the configuration's single quotes.
fn problem_json(detail: &str) -> String {
    format!(
        r#"{{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"{}"}}"#,
        detail.replace(['\'', '"', '\\'], "")
    )
}

/// Runs `haproxy -c -f PATH`: `Ok` when HAProxy accepts the configuration.
pub fn check_config(path: &Path) -> Result<(), BalancerError> {
    let program = installed().ok_or(BalancerError::NotInstalled)?;
    let output = Command::new(program)
        .args(["-c", "-q", "-f"])
        .arg(path)
        .output()
        .map_err(io_error("cannot run haproxy -c"))?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    Err(BalancerError::ConfigRefused {
        path: path.to_path_buf(),
        output: lines.join(" / "),
    })
}

/// A free TCP port on 127.0.0.1 (asked of the kernel; free when this returns).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

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
    pub fn start(
        nodes: Vec<Node>,
        out_dir: &Path,
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
        let port = free_port().map_err(io_error("cannot find a free port on 127.0.0.1"))?;
        let mut config = BalancerConfig::new(
            nodes,
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            socket_dir.join("stats.sock"),
        );
        configure(&mut config);
        let config_path = out_dir.join("haproxy.cfg");
        fs::write(&config_path, config.render())
            .map_err(io_error(format!("cannot write {}", config_path.display())))?;
        let cleanup = |e| {
            let _ = fs::remove_dir_all(&socket_dir);
            e
        };
        check_config(&config_path).map_err(cleanup)?;
        let log_path = out_dir.join("haproxy.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(format!("cannot open {}", log_path.display())))
            .map_err(cleanup)?;
        let mut command = Command::new(program);
        command
            .arg("-f")
            .arg(&config_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (child, stdout, stderr) = Supervised::spawn_piped("haproxy", command)
            .map_err(io_error("cannot start haproxy"))
            .map_err(cleanup)?;
        let tail = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(log));
        let mut pumps = Vec::new();
        if let Some(stdout) = stdout {
            pumps.push(pump(stdout, log.clone(), None));
        }
        if let Some(stderr) = stderr {
            pumps.push(pump(stderr, log, Some(tail.clone())));
        }
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
        let in_grace = self.child.terminate(STOP_GRACE);
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

/// Reads `show stat` from a stats socket: the rows of one backend.
#[derive(Debug, Clone)]
pub struct StatsReader {
    socket: PathBuf,
    backend: String,
}

impl StatsReader {
    /// A reader of `backend`'s rows through the stats socket at `socket` (the lab's own
    /// HAProxy, or one the user runs: `show stat` needs no admin level).
    pub fn new(socket: PathBuf, backend: &str) -> StatsReader {
        StatsReader {
            socket,
            backend: backend.to_string(),
        }
    }

    /// The rows of the backend's servers (the nodes), and the backend's own row.
    pub fn read(&self) -> io::Result<Vec<ServerStat>> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"show stat\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(parse_show_stat(&text, &self.backend))
    }

    /// The backend's servers by name, in HAProxy's order (for a balancer the lab did not
    /// configure). An error names the socket and what to check.
    pub fn servers(&self) -> Result<Vec<String>, String> {
        let rows = self.read().map_err(|e| {
            format!(
                "cannot read HAProxy's stats from {}: {e} (is it HAProxy's `stats socket`, and may this user open it?)",
                self.socket.display()
            )
        })?;
        let names: Vec<String> = rows
            .into_iter()
            .filter(|r| r.name != "BACKEND")
            .map(|r| r.name)
            .collect();
        if names.is_empty() {
            return Err(format!(
                "HAProxy's stats at {} show no servers in a backend named {:?}: give the backend's name with --balancer-backend",
                self.socket.display(),
                self.backend
            ));
        }
        Ok(names)
    }
}

/// One row of `show stat` for the backend: a node, or the backend itself
/// (`name == "BACKEND"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerStat {
    pub name: String,
    /// As HAProxy says it: "UP", "DOWN", "UP 1/2" (failing, still in), "DOWN 1/2"
    /// (recovering, still out), "MAINT", "no check".
    pub status: String,
    /// Requests in progress on it now.
    pub sessions: u64,
    /// Requests waiting in HAProxy's queue for it now.
    pub queued: u64,
    /// Requests it has handled so far.
    pub total: u64,
}

impl ServerStat {
    /// Whether HAProxy sends it traffic now ("UP", "UP 1/2", "no check").
    pub fn is_up(&self) -> bool {
        self.status.starts_with("UP") || self.status == "no check"
    }
}

/// Parses `show stat`'s CSV (a `# pxname,svname,…` header, then rows), keeping the rows
/// of `backend`. Columns are found by name, so other HAProxy versions read the same.
pub fn parse_show_stat(text: &str, backend: &str) -> Vec<ServerStat> {
    let mut lines = text.lines();
    let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let at = |name: &str| columns.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(status), Some(scur), Some(qcur), Some(stot)) = (
        at("pxname"),
        at("svname"),
        at("status"),
        at("scur"),
        at("qcur"),
        at("stot"),
    ) else {
        return Vec::new();
    };
    let number = |fields: &[&str], i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    lines
        .map(|line| line.split(',').collect::<Vec<&str>>())
        .filter(|f| f.get(px) == Some(&backend))
        .map(|f| ServerStat {
            name: f.get(sv).unwrap_or(&"").to_string(),
            status: f.get(status).unwrap_or(&"").to_string(),
            sessions: number(&f, scur),
            queued: number(&f, qcur),
            total: number(&f, stot),
        })
        .collect()
}

/// What the sampler saw.
#[derive(Debug, Clone, Default)]
pub struct SampledStats {
    /// One every [`STATS_EVERY`]·`keep_every` (the timeline).
    pub samples: Vec<BalancerSample>,
    /// Every change of a node's state, seen to [`STATS_EVERY`].
    pub transitions: Vec<Transition>,
    /// HAProxy's CPU time at the last sample, from /proc (seconds).
    pub cpu_seconds: Option<f64>,
    /// Stats reads that failed (HAProxy busy or gone).
    pub failed_reads: u64,
    /// Per node, the requests HAProxy had sent it (`stot`) at the first and the last
    /// good read: their difference is what it sent during the run.
    pub first_totals: Vec<u64>,
    pub last_totals: Vec<u64>,
}

/// Polls the stats socket every [`STATS_EVERY`] on a thread of its own until finished.
pub struct StatsSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SampledStats>>,
}

impl StatsSampler {
    /// Starts sampling `nodes` (by name, in order); times are seconds since `epoch`; a
    /// timeline sample is kept every `keep_every` polls. `pid` is HAProxy's, for its CPU.
    pub fn start(
        reader: StatsReader,
        nodes: Vec<String>,
        pid: Option<u32>,
        epoch: Instant,
        keep_every: u32,
    ) -> StatsSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("balancer-stats".into())
                .spawn(move || sample_loop(&reader, &nodes, pid, epoch, keep_every, &stop))
                .ok()
        };
        StatsSampler { stop, thread }
    }

    /// Stops sampling and returns what was seen.
    pub fn finish(mut self) -> SampledStats {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for StatsSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn sample_loop(
    reader: &StatsReader,
    nodes: &[String],
    pid: Option<u32>,
    epoch: Instant,
    keep_every: u32,
    stop: &AtomicBool,
) -> SampledStats {
    let mut seen = SampledStats::default();
    let mut last_up: Vec<Option<bool>> = vec![None; nodes.len()];
    let mut polls: u32 = 0;
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let t_s = seconds_since(epoch, Instant::now());
        match reader.read() {
            Ok(rows) => {
                let row = |name: &str| rows.iter().find(|r| r.name == name);
                let mut sample = BalancerSample {
                    t_s,
                    queued: row("BACKEND").map_or(0, |b| b.queued),
                    ..Default::default()
                };
                for (i, name) in nodes.iter().enumerate() {
                    let stat = row(name);
                    let up = stat.is_some_and(ServerStat::is_up);
                    if last_up[i].is_some_and(|was| was != up) {
                        seen.transitions.push(Transition {
                            t_s,
                            node: name.clone(),
                            up,
                        });
                    }
                    last_up[i] = Some(up);
                    sample.up.push(up);
                    sample.sessions.push(stat.map_or(0, |s| s.sessions));
                }
                let totals: Vec<u64> = nodes
                    .iter()
                    .map(|name| row(name).map_or(0, |s| s.total))
                    .collect();
                if seen.first_totals.is_empty() {
                    seen.first_totals = totals.clone();
                }
                seen.last_totals = totals;
                if polls.is_multiple_of(keep_every.max(1)) {
                    seen.samples.push(sample);
                }
            }
            Err(_) => seen.failed_reads += 1,
        }
        if let Some(cpu) = pid.and_then(process_cpu_seconds) {
            seen.cpu_seconds = Some(cpu);
        }
        polls = polls.wrapping_add(1);
        next += STATS_EVERY;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    seen
}

fn seconds_since(epoch: Instant, at: Instant) -> f64 {
    if at >= epoch {
        (at - epoch).as_secs_f64()
    } else {
        -(epoch - at).as_secs_f64()
    }
}

/// User + system CPU seconds of a process, from /proc/PID/stat.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

/// One request as HAProxy logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub request_id: String,
    /// The node that answered, or `None` when HAProxy answered itself (`<NOSRV>`: its
    /// bounded queue was full, or no node was up).
    pub node: Option<String>,
    /// The status sent to the client (-1 when the client went away first).
    pub status: i32,
    /// HAProxy's retries of this request (`%rc`; a `+` means redispatched).
    pub retries: String,
    /// The node's response time (`%Tr`) and HAProxy's total active time (`%Ta`), in
    /// milliseconds; -1 when HAProxy did not get that far.
    pub node_ms: i64,
    pub total_ms: i64,
    /// Time it waited in HAProxy's queue for a free node slot (`%Tw`), -1 if never queued
    /// to the end.
    pub queue_ms: i64,
}

impl LoggedRequest {
    /// HAProxy's own share of the request's time, the hop: its total minus the node's
    /// response time and minus the wait in its queue (receiving the request, connecting,
    /// relaying the answer), when known.
    pub fn own_time_ms(&self) -> Option<f64> {
        let queued = self.queue_ms.max(0);
        (self.node_ms >= 0 && self.total_ms >= self.node_ms + queued)
            .then(|| (self.total_ms - self.node_ms - queued) as f64)
    }
}

/// Parses the log lines the generated configuration asks for.
pub fn parse_log_line(line: &str) -> Option<LoggedRequest> {
    let mut request_id = None;
    let mut node = None;
    let mut status = None;
    let mut retries = String::new();
    let (mut node_ms, mut total_ms, mut queue_ms) = (-1, -1, -1);
    for field in line.split_whitespace() {
        if let Some(v) = field.strip_prefix("rid=") {
            request_id = Some(v.trim_matches(['{', '}']).to_string());
        } else if let Some(v) = field.strip_prefix("node=") {
            node = Some((v != "<NOSRV>").then(|| v.to_string()));
        } else if let Some(v) = field.strip_prefix("status=") {
            status = v.parse().ok();
        } else if let Some(v) = field.strip_prefix("retries=") {
            retries = v.to_string();
        } else if let Some(v) = field.strip_prefix("tr=") {
            node_ms = v.parse().unwrap_or(-1);
        } else if let Some(v) = field.strip_prefix("tw=") {
            queue_ms = v.parse().unwrap_or(-1);
        } else if let Some(v) = field.strip_prefix("ta=") {
            total_ms = v.parse().unwrap_or(-1);
        }
    }
    Some(LoggedRequest {
        request_id: request_id?,
        node: node?,
        status: status?,
        retries,
        node_ms,
        total_ms,
        queue_ms,
    })
}

/// Per request id, every time HAProxy logged it (a client retry is logged again).
pub fn node_per_request(log: &Path) -> io::Result<HashMap<String, Vec<LoggedRequest>>> {
    let mut per_request: HashMap<String, Vec<LoggedRequest>> = HashMap::new();
    for line in BufReader::new(File::open(log)?).lines() {
        if let Some(logged) = parse_log_line(&line?) {
            per_request
                .entry(logged.request_id.clone())
                .or_default()
                .push(logged);
        }
    }
    Ok(per_request)
}

/// One line summary of a stats snapshot, for progress and errors: "node0 UP 3, node1 DOWN 0".
pub fn describe_stats(rows: &[ServerStat]) -> String {
    let mut text = String::new();
    for row in rows.iter().filter(|r| r.name != "BACKEND") {
        if !text.is_empty() {
            text.push_str(", ");
        }
        let _ = write!(text, "{} {} {}", row.name, row.status, row.sessions);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_stat_rows_are_read_by_column_name() {
        let text = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status\n\
                    purchasing,FRONTEND,,,3,5,10000,40,0,0,0,0,0,,,,,OPEN\n\
                    nodes,node0,1,2,2,4,5,20,0,0,,0,,0,0,0,0,UP\n\
                    nodes,node1,0,0,0,3,5,19,0,0,,0,,0,0,0,0,DOWN 1/2\n\
                    nodes,BACKEND,4,4,2,5,1000,39,0,0,0,0,,0,0,0,0,UP\n";
        let rows = parse_show_stat(text, BACKEND);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            ServerStat {
                name: "node0".into(),
                status: "UP".into(),
                sessions: 2,
                queued: 1,
                total: 20
            }
        );
        assert!(!rows[1].is_up(), "DOWN 1/2 is still out of rotation");
        assert_eq!(rows[2].name, "BACKEND");
        assert_eq!(rows[2].queued, 4);
        assert!(parse_show_stat("garbage", BACKEND).is_empty());
        assert!(parse_show_stat(text, "other").is_empty());
    }

    #[test]
    fn log_lines_name_the_node_or_the_balancer_itself() {
        let line = "rid={r-1} node=node1 status=201 tw=0 tr=601 ta=602 retries=0 flags=----";
        let logged = parse_log_line(line).unwrap();
        assert_eq!(logged.request_id, "r-1");
        assert_eq!(logged.node.as_deref(), Some("node1"));
        assert_eq!(logged.status, 201);
        assert_eq!(logged.own_time_ms(), Some(1.0));
        let refused = parse_log_line(
            "rid={r-2} node=<NOSRV> status=503 tw=-1 tr=-1 ta=0 retries=0 flags=PR--",
        )
        .unwrap();
        assert_eq!(refused.node, None);
        assert_eq!(parse_log_line("[WARNING] Server nodes/node0 is DOWN"), None);
    }

    #[test]
    fn the_queue_bound_is_one_more_round_of_every_nodes_slots() {
        let nodes = vec![
            Node::numbered(0, "127.0.0.1:1".parse().unwrap()),
            Node::numbered(1, "127.0.0.1:2".parse().unwrap()),
        ];
        let mut config =
            BalancerConfig::new(nodes, "127.0.0.1:3".parse().unwrap(), "/tmp/s".into());
        assert_eq!(config.queue_bound(), None);
        assert!(!config.render().contains("maxconn 5"));
        config.maxconn_per_node = Some(5);
        assert_eq!(config.queue_bound(), Some(10));
        let text = config.render();
        assert!(
            text.contains(
                "default-server inter 500ms fastinter 250ms downinter 500ms fall 2 rise 2 maxconn 5"
            ),
            "{text}"
        );
        assert!(text.contains("queue(nodes) ge 10"), "{text}");
        assert!(text.contains("server node1 127.0.0.1:2 check"), "{text}");
    }
}
