//! The `loadtest` command line: `run` (the lab), `confine` (run any command inside the
//! emulated VM), `report`, `compare`, `sweep`, and `broker` (a private RabbitMQ in the
//! foreground).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use inventory::BaseUrl;

use crate::cluster::{self, ScaleOut};
use crate::confine::{Limits, parse_memory_size};
use crate::lab::{LabOptions, SAMPLE_EVERY, Target, run_lab};
use crate::messaging::{BrokerSource, MessagingOptions};
use crate::profile::{RateProfile, Spike, StepProfile};
use crate::runner::{ClientConfig, Load, Plan};
use crate::server::{ServerSpec, SutKind};
use crate::threshold::{EXIT_THRESHOLD_FAILED, METRICS, Threshold};

/// The original test's 1000 iterations.
pub const BLOG_ITERATIONS: u64 = 1000;
/// The original test's run-duration ceiling.
pub const BLOG_DURATION: Duration = Duration::from_secs(60);

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "The spike lab: load the purchasing API like the original article, confine it like its VM, \
             account for every order, report with charts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test and write report.json, requests.csv and report.html.
    Run(Box<RunArgs>),
    /// Run any command confined to a CPU quota and a memory limit (a cgroup), e.g. the
    /// API, to try it by hand with curl.
    Confine(ConfineArgs),
    /// Render a finished run, comparison or sweep again from its JSON (report.json,
    /// comparison.json or sweep.json), and with --svg-dir one standalone SVG file per
    /// chart (e.g. to put a chart in a README).
    Report(ReportArgs),
    /// Run the same load twice — against the faithful baseline and against
    /// `purchasing-api --protect` with client retries — and write one side-by-side report;
    /// with --transports, four times: rpc, rpc-protected, messaging-faithful and
    /// messaging-reliable.
    Compare(Box<CompareArgs>),
    /// Find the capacity: an open-model run at each offered rate, against the baseline and
    /// the protected configuration, and a chart of goodput against offered load.
    Sweep(Box<SweepArgs>),
    /// Run a private RabbitMQ broker (Debian's rabbitmq-server) on free loopback ports until
    /// Ctrl-C or SIGTERM; prints its amqp:// URL as the only line on stdout.
    Broker(BrokerArgs),
}

const AFTER_BROKER_HELP: &str = "\
Examples:
  loadtest broker                          # amqp://guest:guest@127.0.0.1:PORT/%2f
  loadtest broker --keep-data broker-data  # durable queues survive a stop and a new start

Needs rabbitmq-server (scripts/test as root installs it). Ctrl-C, SIGTERM or SIGHUP stop
the broker cleanly (SIGKILL after 15 s) together with its epmd and, unless --keep-data
was given, its data directory. Exit status: 0 stopped on request, 1 it could not start or
died by itself, 2 bad usage.";

#[derive(Debug, Args)]
#[command(after_help = AFTER_BROKER_HELP)]
pub struct BrokerArgs {
    /// Keep the broker's data (queues, messages, logs, configuration) in DIR, created if
    /// missing, and leave it there on exit; starting again on the same DIR finds the
    /// durable queues and persistent messages again [default: a temporary directory,
    /// removed on exit].
    #[arg(long, value_name = "DIR")]
    pub keep_data: Option<PathBuf>,
    /// Longest wait, in seconds, for the broker to answer an AMQP handshake (it usually
    /// takes 4-13 s) before it is killed and the start fails.
    #[arg(long, value_name = "SECS", default_value_t = crate::broker::DEFAULT_READY_TIMEOUT.as_secs_f64())]
    pub ready_timeout: f64,
}

const AFTER_COMPARE_HELP: &str = "\
Examples:
  loadtest compare --profile blog --spawn-server --cpus 1 --memory 2G --out cmp
  loadtest compare --transports --profile blog --spawn-server --cpus 1 --memory 2G --out styles
  loadtest compare --transports --profile rate --rate 20 --duration 5 --spawn-server \\
      --drain-timeout 30 --out quick-styles -- --alloc-chars 1000 --delay-ms 5

With --transports the messaging runs start a private broker each (or use --amqp-url); the
arguments after `--` go to both purchasing-api and purchasing-worker, so give only the
workload flags they share (--alloc-chars, --delay-ms, --durable, ...). Writes
comparison.json, comparison.html and one directory per configuration.";

#[derive(Debug, Args)]
#[command(after_help = AFTER_COMPARE_HELP)]
pub struct CompareArgs {
    /// Compare the two styles: rpc (the faithful API), rpc-protected (--protect and
    /// client retries), messaging-faithful and messaging-reliable, on the same profile.
    #[arg(long, conflicts_with = "scale_out")]
    pub transports: bool,
    /// Compare the same run with K nodes behind HAProxy, for each K given (e.g. 1,2):
    /// needs --spawn-server; --cpus/--memory apply to each node; the server arguments
    /// after `--` choose protected (`-- --protect`, with --retries 2) or faithful nodes.
    #[arg(long, value_delimiter = ',', value_name = "K,K,...",
          value_parser = clap::value_parser!(u32).range(1..=cluster::MAX_INSTANCES as i64))]
    pub scale_out: Vec<u32>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Offered rates to run, arrivals per second, e.g. 2,5,10,20.
    #[arg(long, value_delimiter = ',', required = true, value_name = "R,R,...")]
    pub rates: Vec<f64>,
    /// Which configurations to run at each rate.
    #[arg(long, value_delimiter = ',', default_value = "baseline,protected")]
    pub configs: Vec<SweepConfig>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The configurations `compare`, `compare --transports` and `sweep` run: the one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SweepConfig {
    /// The faithful server and client.
    Baseline,
    /// `purchasing-api --protect` and the client's retry policy.
    Protected,
    /// The messaging half as the original: faithful delivery on both sides.
    MessagingFaithful,
    /// The messaging half with reliable delivery on both sides.
    MessagingReliable,
}

impl SweepConfig {
    /// What `compare --transports` runs, in order.
    pub const STYLES: [SweepConfig; 4] = [
        SweepConfig::Baseline,
        SweepConfig::Protected,
        SweepConfig::MessagingFaithful,
        SweepConfig::MessagingReliable,
    ];

    /// Its name in directories, reports and tables.
    pub fn name(self) -> &'static str {
        match self {
            SweepConfig::Baseline => crate::compare::BASELINE,
            SweepConfig::Protected => crate::compare::PROTECTED,
            SweepConfig::MessagingFaithful => "messaging-faithful",
            SweepConfig::MessagingReliable => "messaging-reliable",
        }
    }

    /// Its name beside the other style (`compare --transports`).
    pub fn style_name(self) -> &'static str {
        match self {
            SweepConfig::Baseline => "rpc",
            SweepConfig::Protected => "rpc-protected",
            other => other.name(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The directory (the --out of `loadtest run`, `compare` or `sweep`).
    pub dir: PathBuf,
    /// Also write each chart as a standalone SVG file into this directory.
    #[arg(long, value_name = "DIR")]
    pub svg_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileKind {
    /// The original's numbers: 20 users, +20 every 5 s, up to 500, no think time, 1000
    /// iterations, 60 s ceiling, 30 s timeout, a new connection per request.
    Blog,
    /// A step profile from --users, --step-users, --step-seconds, --max-users.
    Step,
    /// An open-model arrival rate (--rate for --duration) with an optional spike.
    Rate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Transport {
    /// Call the purchasing API over HTTP (the RPC half; the original's first version).
    #[default]
    Http,
    /// Publish to the queue the purchasing worker consumes (the messaging half).
    Amqp,
}

/// Default of `--drain-timeout`, seconds.
pub const DEFAULT_DRAIN_TIMEOUT_S: f64 = 120.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Connection {
    /// A new TCP connection per request (the original's new HttpClient per call).
    New,
    /// Keep connections open between requests.
    Reuse,
}

const AFTER_RUN_HELP: &str = "\
Examples:
  loadtest run --profile blog --spawn-server --cpus 1 --memory 2G --out blog-run
  loadtest run --profile step --users 5 --step-users 5 --step-seconds 2 --max-users 20 \\
      --duration 10 --spawn-server --out quick -- --alloc-chars 1000 --delay-ms 5
  loadtest run --profile rate --rate 5 --duration 60 --spike-rate 50 --spike-start 20 \\
      --spike-seconds 10 --url http://VM:8080
  loadtest run ... --fail-on 'lost>0' --fail-on 'p99>2000'

The messaging half (a private broker outside the VM, the worker inside it):
  loadtest run --transport amqp --spawn-broker --spawn-server --delivery reliable \\
      --profile blog --cpus 1 --memory 2G --out blog-amqp
  loadtest run --transport amqp --spawn-broker --spawn-server --profile rate --rate 20 \\
      --duration 5 --drain-timeout 30 --out quick-amqp -- --alloc-chars 1000 --delay-ms 5
  loadtest run --transport amqp --spawn-broker --spawn-server --delivery reliable ... \\
      --kill-worker-every 2 --restart-broker-at 3      # faults: nothing confirmed is lost
  loadtest run --transport amqp --amqp-url amqp://guest:guest@HOST:5672/%2f \\
      --orders-file /mnt/vm/PurchaseOrders.txt ...      # your broker and your worker

Exit status: 0 the run completed (even if the server failed), 99 a --fail-on threshold
failed, 1 the run could not be done, 2 bad usage.";

#[derive(Debug, Clone, Args)]
#[command(after_help = AFTER_RUN_HELP)]
pub struct RunArgs {
    /// Load profile.
    #[arg(long, value_enum, default_value_t = ProfileKind::Blog)]
    pub profile: ProfileKind,

    /// Virtual users at the start (step profile) [default: 20].
    #[arg(long, help_heading = "Step profile (closed model)")]
    pub users: Option<u64>,
    /// Users added at every step [default: 20].
    #[arg(long, help_heading = "Step profile (closed model)")]
    pub step_users: Option<u64>,
    /// Seconds between steps [default: 5].
    #[arg(long, help_heading = "Step profile (closed model)")]
    pub step_seconds: Option<f64>,
    /// Most virtual users [default: 500].
    #[arg(long, help_heading = "Step profile (closed model)")]
    pub max_users: Option<u64>,
    /// Pause of each user between its answer and its next request, ms [default: 0].
    #[arg(long, help_heading = "Step profile (closed model)")]
    pub think_ms: Option<u64>,

    /// Arrivals per second (rate profile).
    #[arg(long, help_heading = "Rate profile (open model)")]
    pub rate: Option<f64>,
    /// Arrivals per second during the spike.
    #[arg(long, help_heading = "Rate profile (open model)")]
    pub spike_rate: Option<f64>,
    /// Seconds after the start when the spike begins.
    #[arg(long, help_heading = "Rate profile (open model)")]
    pub spike_start: Option<f64>,
    /// Length of the spike, seconds.
    #[arg(long, help_heading = "Rate profile (open model)")]
    pub spike_seconds: Option<f64>,

    /// Stop after this many requests in total.
    #[arg(long, help_heading = "Caps")]
    pub iterations: Option<u64>,
    /// Start no request after this many seconds (required for --profile rate).
    #[arg(long, help_heading = "Caps")]
    pub duration: Option<f64>,

    /// Client timeout per request, seconds [default: 30, as the original].
    #[arg(long, help_heading = "Client")]
    pub timeout: Option<f64>,
    /// Retry each failed request up to N more times with the client's retry policy
    /// (exponential backoff with full jitter, Retry-After honoured, a 10 % retry budget,
    /// an Idempotency-Key kept across attempts) [default: 0, as the original].
    /// (`loadtest compare` and `sweep`: the protected side only, default 2.)
    #[arg(long, value_name = "N", help_heading = "Client",
          value_parser = clap::value_parser!(u32).range(0..=9))]
    pub retries: Option<u32>,
    /// Connection behaviour [default: new for --profile blog, as the original; reuse otherwise].
    #[arg(long, value_enum, help_heading = "Client")]
    pub connection: Option<Connection>,

    /// Load a server that is already running (e.g. in a real VM).
    #[arg(long, help_heading = "Target", conflicts_with = "spawn_server")]
    pub url: Option<String>,
    /// Start purchasing-api here (port 0; orders file in --out), arguments after `--`.
    #[arg(long, help_heading = "Target")]
    pub spawn_server: bool,
    /// The purchasing-api binary [default: next to loadtest, else on PATH].
    #[arg(long, help_heading = "Target", requires = "spawn_server")]
    pub server_bin: Option<PathBuf>,
    /// Orders file to reconcile (--url), or for the spawned server [default: OUT/PurchaseOrders.txt].
    #[arg(long, help_heading = "Target")]
    pub orders_file: Option<PathBuf>,
    /// Confine the spawned server to this many CPUs (e.g. 1, 0.5), like the original VM:
    /// a CPU quota, and pinned to ⌈CPUS⌉ cores when the machine has more.
    #[arg(long, help_heading = "Target", requires = "spawn_server")]
    pub cpus: Option<f64>,
    /// Confine the spawned server to this much memory (e.g. 2G, 512M; binary units).
    #[arg(long, help_heading = "Target", requires = "spawn_server")]
    pub memory: Option<String>,
    /// Restart the spawned server when it crashes (e.g. OOM-killed), like a supervisor.
    #[arg(long, help_heading = "Target", requires = "spawn_server")]
    pub restart_on_crash: bool,

    /// Start K purchasing-api nodes, each confined alone to --cpus/--memory (on cores of
    /// its own while the machine has enough), all appending to one orders file, behind a
    /// real HAProxy that the lab starts and stops (its configuration is saved as
    /// OUT/haproxy.cfg, its per-request log as OUT/haproxy.log). K = 1 is one node behind
    /// HAProxy: the fair baseline for K > 1, paying the same hop.
    #[arg(long, value_name = "K", help_heading = "Scale-out (HAProxy)", requires = "spawn_server",
          value_parser = clap::value_parser!(u32).range(1..=cluster::MAX_INSTANCES as i64))]
    pub instances: Option<u32>,
    /// Fault: SIGKILL node0 SECONDS after the load started; its supervisor restarts it
    /// (implies --restart-on-crash). The report's balancer.nodes[0].crash_events say when
    /// HAProxy took it out and put it back.
    #[arg(
        long,
        value_name = "SECONDS",
        help_heading = "Scale-out (HAProxy)",
        requires = "instances"
    )]
    pub kill_instance_at: Option<f64>,
    /// How long the killed node stays down before its supervisor restarts it, seconds
    /// [default: 3: longer than HAProxy's detection, as a rebooting VM would].
    #[arg(
        long,
        value_name = "SECONDS",
        help_heading = "Scale-out (HAProxy)",
        requires = "kill_instance_at"
    )]
    pub instance_down_for: Option<f64>,
    /// With --url: seconds the orders file must stay unchanged before it is reconciled.
    #[arg(long, help_heading = "Target", default_value_t = 5.0)]
    pub settle: f64,

    /// Directory for report.json, requests.csv, report.html, server.log
    /// [default: loadtest-runs/<start time>].
    #[arg(long, help_heading = "Report")]
    pub out: Option<PathBuf>,
    /// Exit 99 if this condition holds after the run, e.g. 'lost>0', 'p99>2000'; repeatable.
    /// Metrics: see `loadtest run --help`'s list below.
    #[arg(long = "fail-on", value_name = "METRIC OP NUMBER", help_heading = "Report", long_help = fail_on_help())]
    pub fail_on: Vec<Threshold>,

    /// `http`: call the purchasing API; `amqp`: publish to the queue and let the
    /// purchasing worker write the orders (needs --spawn-broker or --amqp-url; with
    /// --spawn-server the lab spawns purchasing-worker instead of purchasing-api).
    #[arg(long, value_enum, default_value_t = Transport::Http, help_heading = "Messaging (--transport amqp)")]
    pub transport: Transport,
    /// Start a private RabbitMQ for the run, outside the emulated VM (as the original's
    /// broker ran on another machine), and stop it at the end — also on Ctrl-C.
    #[arg(
        long,
        help_heading = "Messaging (--transport amqp)",
        conflicts_with = "amqp_url"
    )]
    pub spawn_broker: bool,
    /// A broker you run, e.g. amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(
        long,
        value_name = "URL",
        help_heading = "Messaging (--transport amqp)"
    )]
    pub amqp_url: Option<String>,
    /// Delivery mode of both sides: `faithful` (the original: transient, no confirms,
    /// auto-ack) or `reliable` (durable, confirms, manual ack, dedup) [default: faithful].
    #[arg(long, value_name = "faithful|reliable", value_parser = parse_delivery,
          help_heading = "Messaging (--transport amqp)")]
    pub delivery: Option<inventory::DeliveryMode>,
    /// After the load, wait at most this many seconds for the queue to drain before the
    /// worker is stopped; what is still queued then is reported as still queued.
    #[arg(
        long,
        value_name = "SECONDS",
        help_heading = "Messaging (--transport amqp)"
    )]
    pub drain_timeout: Option<f64>,
    /// Fault: SIGKILL the spawned worker every SECONDS during the load; it is restarted
    /// as after any crash (implies --restart-on-crash).
    #[arg(
        long,
        value_name = "SECONDS",
        help_heading = "Messaging (--transport amqp)"
    )]
    pub kill_worker_every: Option<f64>,
    /// Fault: restart the spawned broker SECONDS after the load started, on the same
    /// data directory and port (a faithful queue does not survive it; a reliable one does).
    #[arg(
        long,
        value_name = "SECONDS",
        help_heading = "Messaging (--transport amqp)"
    )]
    pub restart_broker_at: Option<f64>,

    /// Arguments for the spawned purchasing-api (or purchasing-worker with --transport
    /// amqp), e.g. -- --alloc-chars 1000 --delay-ms 5.
    #[arg(last = true, value_name = "SERVER_ARGS")]
    pub server_args: Vec<String>,
}

fn fail_on_help() -> String {
    let mut text = String::from(
        "Exit 99 if this condition holds after the run, e.g. 'lost>0', 'p99>2000'; repeatable. \
         Operators: > >= < <= == !=. A metric that could not be measured fails the check.\n\nMetrics:",
    );
    for (name, meaning) in METRICS {
        text.push_str(&format!("\n  {name:<24} {meaning}"));
    }
    text
}

#[derive(Debug, Args)]
pub struct ConfineArgs {
    /// CPUs the command may use (e.g. 1, 0.5): a CPU quota, and pinned to ⌈CPUS⌉ cores
    /// when the machine has more.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory limit (e.g. 2G, 512M; binary units).
    #[arg(long)]
    pub memory: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn parse_delivery(s: &str) -> Result<inventory::DeliveryMode, String> {
    s.parse()
}

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag} must be a number of seconds greater than 0, not {value}"))
}

fn limits(cpus: Option<f64>, memory: Option<&str>) -> Result<Limits, String> {
    if let Some(c) = cpus
        && !(c.is_finite() && c > 0.0)
    {
        return Err(format!("--cpus must be greater than 0, not {c}"));
    }
    let memory_bytes = memory
        .map(parse_memory_size)
        .transpose()
        .map_err(|e| format!("--memory: {e}"))?;
    let limits = Limits { cpus, memory_bytes };
    // Checked here too, so a limit that cannot run anything is refused before the lab
    // starts anything.
    limits.validate().map_err(|e| e.to_string())?;
    Ok(limits)
}

impl RunArgs {
    /// Checks the combination of flags and turns them into lab options.
    pub fn into_options(self) -> Result<LabOptions, String> {
        let (profile_name, load, iterations, duration) = match self.profile {
            ProfileKind::Blog => {
                let given = [
                    ("--users", self.users.is_some()),
                    ("--step-users", self.step_users.is_some()),
                    ("--step-seconds", self.step_seconds.is_some()),
                    ("--max-users", self.max_users.is_some()),
                    ("--think-ms", self.think_ms.is_some()),
                    ("--iterations", self.iterations.is_some()),
                    ("--duration", self.duration.is_some()),
                    ("--timeout", self.timeout.is_some()),
                    ("--rate", self.rate.is_some()),
                ];
                if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                    return Err(format!(
                        "--profile blog is the original test's numbers and takes no {flag}; \
                         use --profile step (or rate) to choose your own"
                    ));
                }
                let load = Load::Closed {
                    profile: StepProfile::BLOG,
                    think: Duration::ZERO,
                };
                ("blog", load, Some(BLOG_ITERATIONS), Some(BLOG_DURATION))
            }
            ProfileKind::Step => {
                if self.rate.is_some() || self.spike_rate.is_some() {
                    return Err("--rate and --spike-* belong to --profile rate".into());
                }
                let b = StepProfile::BLOG;
                let profile = StepProfile {
                    initial_users: self.users.unwrap_or(b.initial_users),
                    step_users: self.step_users.unwrap_or(b.step_users),
                    step_duration: match self.step_seconds {
                        Some(s) => seconds(s, "--step-seconds")?,
                        None => b.step_duration,
                    },
                    max_users: self
                        .max_users
                        .unwrap_or(b.max_users.max(self.users.unwrap_or(0))),
                };
                profile.validate()?;
                let duration = self
                    .duration
                    .map(|d| seconds(d, "--duration"))
                    .transpose()?;
                if self.iterations.is_none() && duration.is_none() {
                    return Err("a step profile needs --iterations or --duration so that the run ends by itself".into());
                }
                let think = Duration::from_millis(self.think_ms.unwrap_or(0));
                (
                    "step",
                    Load::Closed { profile, think },
                    self.iterations,
                    duration,
                )
            }
            ProfileKind::Rate => {
                let step_flags = [self.users, self.step_users, self.max_users, self.think_ms];
                if step_flags.iter().any(Option::is_some) || self.step_seconds.is_some() {
                    return Err(
                        "--users, --step-*, --max-users and --think-ms belong to --profile step"
                            .into(),
                    );
                }
                let rate = self
                    .rate
                    .ok_or("--profile rate needs --rate (arrivals per second)")?;
                let duration = seconds(
                    self.duration
                        .ok_or("--profile rate needs --duration (seconds)")?,
                    "--duration",
                )?;
                let spike =
                    match (self.spike_rate, self.spike_start, self.spike_seconds) {
                        (None, None, None) => None,
                        (Some(rate), Some(start), Some(length)) => Some(Spike {
                            rate,
                            start: Duration::try_from_secs_f64(start)
                                .map_err(|_| format!("--spike-start must be ≥ 0, not {start}"))?,
                            duration: seconds(length, "--spike-seconds")?,
                        }),
                        _ => return Err(
                            "a spike needs all of --spike-rate, --spike-start and --spike-seconds"
                                .into(),
                        ),
                    };
                let profile = RateProfile {
                    base_rate: rate,
                    spike,
                    duration,
                };
                profile.validate()?;
                ("rate", Load::Open(profile), self.iterations, Some(duration))
            }
        };

        let timeout = match self.timeout {
            Some(t) => seconds(t, "--timeout")?,
            None => inventory::DEFAULT_TIMEOUT,
        };
        let new_connection_per_request = match self.connection {
            Some(c) => c == Connection::New,
            None => self.profile == ProfileKind::Blog,
        };
        let settle = seconds(self.settle, "--settle")?;

        let messaging = self.messaging_options()?;
        let scale_out = match self.instances {
            None => None,
            Some(_) if messaging.is_some() => {
                return Err("--instances scales the RPC half (nodes behind HAProxy); the messaging half scales by more workers on one queue: drop --instances or --transport amqp".into());
            }
            Some(k) => Some(ScaleOut {
                instances: k as usize,
                kill_instance_at: self
                    .kill_instance_at
                    .map(|s| {
                        Duration::try_from_secs_f64(s)
                            .map_err(|_| format!("--kill-instance-at must be ≥ 0 seconds, not {s}"))
                    })
                    .transpose()?,
                down_for: match self.instance_down_for {
                    Some(s) => Duration::try_from_secs_f64(s)
                        .map_err(|_| format!("--instance-down-for must be ≥ 0 seconds, not {s}"))?,
                    None => cluster::DEFAULT_DOWN_FOR,
                },
            }),
        };
        let out_dir = self.out.unwrap_or_else(|| default_out(""));
        let kind = if messaging.is_some() {
            SutKind::Worker
        } else {
            SutKind::Api
        };

        let (target, base_url) = if self.spawn_server {
            for arg in &self.server_args {
                if kind
                    .lab_owned_flags()
                    .iter()
                    .any(|f| arg == f || arg.starts_with(&format!("{f}=")))
                {
                    return Err(format!(
                        "{arg} is set by the lab for a spawned server; use loadtest's --orders-file to choose the file (and --spawn-broker/--amqp-url, --delivery for the worker)"
                    ));
                }
            }
            let spec = ServerSpec {
                kind,
                binary: match self.server_bin {
                    Some(path) => path,
                    None => find_server_binary(kind.binary_name())?,
                },
                orders_file: self
                    .orders_file
                    .unwrap_or_else(|| out_dir.join("PurchaseOrders.txt")),
                lab_args: Vec::new(),
                args: self.server_args,
                limits: limits(self.cpus, self.memory.as_deref())?,
                restart_on_crash: self.restart_on_crash
                    || self.kill_worker_every.is_some()
                    || self.kill_instance_at.is_some(),
                sample_every: SAMPLE_EVERY,
                log_file: Some(out_dir.join("server.log")),
                core_slot: 0,
            };
            // The real address is known once the server runs; a placeholder until then.
            (
                Target::Spawn(spec),
                BaseUrl::parse("http://127.0.0.1:1").map_err(|e| e.to_string())?,
            )
        } else {
            if !self.server_args.is_empty() {
                return Err("server arguments after `--` need --spawn-server".into());
            }
            let base_url = if messaging.is_some() {
                if self.url.is_some() {
                    return Err("--url is the API's address; with --transport amqp the broker is given by --amqp-url or --spawn-broker".into());
                }
                // Unused: publishes go to the broker, the worker is yours to run.
                BaseUrl::parse("http://127.0.0.1:1").map_err(|e| e.to_string())?
            } else {
                let url = self.url.ok_or(
                    "say where the API is: --url URL for a running server, or --spawn-server to start one",
                )?;
                BaseUrl::parse(&url).map_err(|e| format!("--url: {e}"))?
            };
            (
                Target::Remote {
                    orders_file: self.orders_file,
                },
                base_url,
            )
        };

        Ok(LabOptions {
            profile_name: profile_name.into(),
            plan: Plan {
                load,
                iterations,
                duration,
                client: ClientConfig {
                    base_url,
                    timeout,
                    new_connection_per_request,
                    retries: self.retries.unwrap_or(0),
                    amqp: None,
                },
            },
            target,
            out_dir,
            thresholds: self.fail_on,
            settle,
            messaging,
            scale_out,
        })
    }

    /// The messaging options of `--transport amqp`, checked; `None` for HTTP (where the
    /// messaging flags are refused).
    fn messaging_options(&self) -> Result<Option<MessagingOptions>, String> {
        if self.transport == Transport::Http {
            let given = [
                ("--spawn-broker", self.spawn_broker),
                ("--amqp-url", self.amqp_url.is_some()),
                ("--delivery", self.delivery.is_some()),
                ("--drain-timeout", self.drain_timeout.is_some()),
                ("--kill-worker-every", self.kill_worker_every.is_some()),
                ("--restart-broker-at", self.restart_broker_at.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
                return Err(format!(
                    "{flag} belongs to the messaging half: add --transport amqp"
                ));
            }
            return Ok(None);
        }
        let broker = match (&self.amqp_url, self.spawn_broker) {
            (Some(url), false) => {
                inventory::AmqpUrl::parse(url).map_err(|e| format!("--amqp-url: {e}"))?;
                BrokerSource::Url(url.clone())
            }
            (None, true) => BrokerSource::Spawn,
            (None, false) => {
                return Err("--transport amqp needs a broker: add --spawn-broker (a private one for the run) or --amqp-url URL (yours)".into());
            }
            (Some(_), true) => return Err("give --spawn-broker or --amqp-url, not both".into()),
        };
        let delivery = self.delivery.unwrap_or_default();
        if delivery == inventory::DeliveryMode::Faithful && self.retries.is_some_and(|r| r > 0) {
            return Err("--retries over AMQP needs --delivery reliable: a faithful message has no message id, so a repeated publish could order twice".into());
        }
        if self.kill_worker_every.is_some() && !self.spawn_server {
            return Err(
                "--kill-worker-every needs --spawn-server (the lab kills the worker it spawned)"
                    .into(),
            );
        }
        if self.restart_broker_at.is_some() && !self.spawn_broker {
            return Err(
                "--restart-broker-at needs --spawn-broker (the lab restarts the broker it started)"
                    .into(),
            );
        }
        let restart_broker_at = self
            .restart_broker_at
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| format!("--restart-broker-at must be ≥ 0 seconds, not {s}"))
            })
            .transpose()?;
        Ok(Some(MessagingOptions {
            broker,
            delivery,
            drain_timeout: seconds(
                self.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT_S),
                "--drain-timeout",
            )?,
            kill_worker_every: self
                .kill_worker_every
                .map(|s| seconds(s, "--kill-worker-every"))
                .transpose()?,
            restart_broker_at,
        }))
    }
}

/// `purchasing-api` (or `purchasing-worker`) next to this executable (both are built into
/// the same target directory), else on PATH.
fn find_server_binary(name: &str) -> Result<PathBuf, String> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)));
    if let Some(path) = beside.as_ref().filter(|p| p.is_file()) {
        return Ok(path.clone());
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }) {
        return Ok(path);
    }
    Err(format!(
        "cannot find the {name} binary next to loadtest ({}) or on PATH; build it with \
         `cargo build --release` (the whole workspace) or pass --server-bin",
        beside.map(|p| p.display().to_string()).unwrap_or_default()
    ))
}

/// Runs the command line; returns the process exit code.
pub fn main_with(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Confine(args) => {
            let limits = match limits(args.cpus, args.memory.as_deref()) {
                Ok(l) => l,
                Err(e) => return usage_error(&e),
            };
            match crate::confine::run_confined(&limits, &args.command) {
                Ok(code) => code,
                Err(e) => fail(&e),
            }
        }
        Command::Broker(args) => {
            let ready_timeout = match seconds(args.ready_timeout, "--ready-timeout") {
                Ok(t) => t,
                Err(e) => return usage_error(&e),
            };
            let options = crate::broker::BrokerOptions {
                ready_timeout,
                data_dir: args.keep_data,
                ..crate::broker::BrokerOptions::default()
            };
            match crate::broker::run_foreground(options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Compare(args) => {
            let CompareArgs {
                transports,
                scale_out,
                run,
            } = *args;
            if transports {
                compare_transports(run)
            } else if !scale_out.is_empty() {
                compare_scale_out(run, &scale_out)
            } else {
                compare(run)
            }
        }
        Command::Sweep(args) => sweep(*args),
        Command::Report(args) => match rerender(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Run(args) => {
            let options = match args.into_options() {
                Ok(o) => o,
                Err(e) => return usage_error(&e),
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
            };
            let out_dir = options.out_dir.clone();
            match runtime.block_on(interruptible(run_lab(options))) {
                Ok(report) => {
                    print!("{}", crate::report::summary::render(&report));
                    println!(
                        "\nreport: {}/report.html (also report.json, requests.csv)",
                        out_dir.display()
                    );
                    threshold_exit(&report)
                }
                Err(e) => fail(&e),
            }
        }
    }
}

/// Client retries on the protected side of `compare` and `sweep` unless --retries says.
pub const DEFAULT_PROTECTED_RETRIES: u32 = 2;

/// A configuration's run arguments from one set: the baseline exactly as given with the
/// original client (no retries), the protected one with `--protect` added to the server
/// and the retry policy on the client, the messaging ones over AMQP with that delivery on
/// both sides (a private broker each unless --amqp-url; retries only as given, and only
/// reliable delivery may retry). HTTP configurations drop the messaging flags.
fn configuration(args: &RunArgs, config: SweepConfig, out: PathBuf) -> Result<RunArgs, String> {
    if !args.spawn_server {
        return Err("compare and sweep start both servers themselves: add --spawn-server (and --cpus/--memory to confine them)".into());
    }
    if args.server_args.iter().any(|a| a == "--protect") {
        return Err(
            "leave --protect out of the server arguments: the protected side adds it".into(),
        );
    }
    let mut run = args.clone();
    run.out = Some(out);
    let http = |run: &mut RunArgs| {
        run.transport = Transport::Http;
        run.spawn_broker = false;
        run.amqp_url = None;
        run.delivery = None;
        run.drain_timeout = None;
        run.kill_worker_every = None;
        run.restart_broker_at = None;
    };
    let amqp = |run: &mut RunArgs, delivery: inventory::DeliveryMode| {
        run.transport = Transport::Amqp;
        run.delivery = Some(delivery);
        run.spawn_broker = run.amqp_url.is_none();
    };
    match config {
        SweepConfig::Baseline => {
            http(&mut run);
            run.retries = Some(0);
        }
        SweepConfig::Protected => {
            http(&mut run);
            run.retries = Some(args.retries.unwrap_or(DEFAULT_PROTECTED_RETRIES));
            run.server_args.push("--protect".into());
        }
        SweepConfig::MessagingFaithful => {
            amqp(&mut run, inventory::DeliveryMode::Faithful);
            run.retries = Some(0);
        }
        SweepConfig::MessagingReliable => {
            amqp(&mut run, inventory::DeliveryMode::Reliable);
            run.retries = Some(args.retries.unwrap_or(0));
        }
    }
    if config == SweepConfig::Baseline {
        // Thresholds gate the protected configuration; the baseline is expected to fail.
        run.fail_on.clear();
    }
    Ok(run)
}

/// `loadtest-runs/<prefix><start time>`: the output directory when --out is not given.
fn default_out(prefix: &str) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "");
    PathBuf::from("loadtest-runs").join(format!("{prefix}{stamp}"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

fn compare(args: RunArgs) -> ExitCode {
    let out = args.out.clone().unwrap_or_else(|| default_out("compare-"));
    let mut options = Vec::new();
    for config in [SweepConfig::Baseline, SweepConfig::Protected] {
        let dir = out.join(config.name());
        match configuration(&args, config, dir).and_then(RunArgs::into_options) {
            Ok(o) => options.push((config, o)),
            Err(e) => return usage_error(&e),
        }
    }
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let mut reports = Vec::new();
            for (config, o) in options {
                eprintln!(
                    "loadtest: === {} run → {}",
                    config.name(),
                    o.out_dir.display()
                );
                let report = run_lab(o).await?;
                print!("{}", crate::report::summary::render(&report));
                reports.push(report);
            }
            let protected = reports.pop().expect("two runs");
            let baseline = reports.pop().expect("two runs");
            Ok::<_, anyhow::Error>(crate::compare::Comparison::new(baseline, protected))
        })
    });
    let comparison = match result {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Err(e) = write_comparison(&comparison, &out) {
        return fail(&e);
    }
    print!("{}", crate::compare::render_table(&comparison));
    println!(
        "\nreport: {}/comparison.html (also comparison.json, baseline/, protected/)",
        out.display()
    );
    threshold_exit(&comparison.protected)
}

/// `compare --scale-out K,K,...`: the same run (the user's flags and server arguments)
/// with K nodes behind HAProxy for each K, one after the other, and one side-by-side
/// report, with the goodput of each K against the first.
fn compare_scale_out(args: RunArgs, ks: &[u32]) -> ExitCode {
    use crate::styles::{NamedRun, StylesComparison};
    if args.instances.is_some() {
        return usage_error(
            "compare --scale-out chooses --instances for each run; drop --instances",
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out("scale-out-"));
    let mut options = Vec::new();
    for &k in ks {
        let name = if k == 1 {
            "1 node".to_string()
        } else {
            format!("{k} nodes")
        };
        let mut run = args.clone();
        run.instances = Some(k);
        run.out = Some(out.join(format!("k{k}")));
        match run.into_options() {
            Ok(o) => options.push((name, o)),
            Err(e) => return usage_error(&format!("{name}: {e}")),
        }
    }
    let result = runtime().and_then(|rt| {
        rt.block_on(interruptible(async {
            let mut runs = Vec::new();
            for (name, o) in options {
                eprintln!("loadtest: === {name} run → {}", o.out_dir.display());
                let report = run_lab(o).await?;
                print!("{}", crate::report::summary::render(&report));
                runs.push(NamedRun { name, report });
            }
            Ok::<_, anyhow::Error>(StylesComparison::new(runs))
        }))
    });
    let comparison = match result {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let written = (|| -> anyhow::Result<()> {
        use anyhow::Context;
        let json =
            serde_json::to_string_pretty(&comparison).context("cannot serialise the comparison")?;
        std::fs::write(out.join("comparison.json"), json + "\n")
            .context("cannot write comparison.json")?;
        let html = crate::report::transports::render_html_titled(
            &comparison.named(),
            "Scale-out behind HAProxy",
        );
        std::fs::write(out.join("comparison.html"), html)
            .context("cannot write comparison.html")?;
        Ok(())
    })();
    if let Err(e) = written {
        return fail(&e);
    }
    print!("{}", crate::styles::render_table(&comparison));
    if let Some(first) = comparison.runs.first() {
        let base = first.report.throughput.acknowledged_per_s;
        for run in &comparison.runs[1..] {
            let ratio = run.report.throughput.acknowledged_per_s / base;
            println!(
                "goodput {} / {}: {:.2}× ({:.2}/s vs {:.2}/s)",
                run.name, first.name, ratio, run.report.throughput.acknowledged_per_s, base
            );
        }
    }
    println!(
        "\nreport: {}/comparison.html (also comparison.json, one directory per K)",
        out.display()
    );
    match comparison
        .runs
        .iter()
        .find(|r| r.report.thresholds.iter().any(|t| !t.passed))
    {
        Some(_) => ExitCode::from(EXIT_THRESHOLD_FAILED),
        None => ExitCode::SUCCESS,
    }
}

/// `compare --transports`: the four configurations of [`SweepConfig::STYLES`] on the same
/// profile, one after the other, and one side-by-side report.
fn compare_transports(args: RunArgs) -> ExitCode {
    use crate::styles::{NamedRun, StylesComparison, render_html, render_table};
    let out = args.out.clone().unwrap_or_else(|| default_out("styles-"));
    let mut options = Vec::new();
    for config in SweepConfig::STYLES {
        let dir = out.join(config.style_name());
        match configuration(&args, config, dir).and_then(RunArgs::into_options) {
            Ok(o) => options.push((config, o)),
            Err(e) => return usage_error(&format!("{}: {e}", config.style_name())),
        }
    }
    let result = runtime().and_then(|rt| {
        rt.block_on(interruptible(async {
            let mut runs = Vec::new();
            for (config, o) in options {
                eprintln!(
                    "loadtest: === {} run → {}",
                    config.style_name(),
                    o.out_dir.display()
                );
                let report = run_lab(o).await?;
                print!("{}", crate::report::summary::render(&report));
                runs.push(NamedRun {
                    name: config.style_name().into(),
                    report,
                });
            }
            Ok::<_, anyhow::Error>(StylesComparison::new(runs))
        }))
    });
    let comparison = match result {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let written = (|| -> anyhow::Result<()> {
        use anyhow::Context;
        let json =
            serde_json::to_string_pretty(&comparison).context("cannot serialise the comparison")?;
        std::fs::write(out.join("comparison.json"), json + "\n")
            .context("cannot write comparison.json")?;
        std::fs::write(out.join("comparison.html"), render_html(&comparison))
            .context("cannot write comparison.html")?;
        Ok(())
    })();
    if let Err(e) = written {
        return fail(&e);
    }
    print!("{}", render_table(&comparison));
    println!(
        "\nreport: {}/comparison.html (also comparison.json, one directory per configuration)",
        out.display()
    );
    match comparison
        .runs
        .iter()
        .find(|r| r.report.thresholds.iter().any(|t| !t.passed))
    {
        Some(_) => ExitCode::from(EXIT_THRESHOLD_FAILED),
        None => ExitCode::SUCCESS,
    }
}

fn write_comparison(c: &crate::compare::Comparison, out: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let json = serde_json::to_string_pretty(c).context("cannot serialise the comparison")?;
    std::fs::write(out.join("comparison.json"), json + "\n")
        .context("cannot write comparison.json")?;
    std::fs::write(out.join("comparison.html"), crate::compare::render_html(c))
        .context("cannot write comparison.html")?;
    Ok(())
}

fn sweep(args: SweepArgs) -> ExitCode {
    use crate::compare::{Sweep, SweepPoint};
    let out = args
        .run
        .out
        .clone()
        .unwrap_or_else(|| default_out("sweep-"));
    if args.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return usage_error("--rates must be positive numbers, e.g. --rates 2,5,10");
    }
    let Some(duration) = args.run.duration else {
        return usage_error("sweep needs --duration (seconds per point)");
    };
    let mut runs = Vec::new();
    for &rate in &args.rates {
        for &config in &args.configs {
            let mut run = args.run.clone();
            run.profile = ProfileKind::Rate;
            run.rate = Some(rate);
            let name = format!("{}-{rate}", config.name());
            match configuration(&run, config, out.join(&name)).and_then(RunArgs::into_options) {
                Ok(o) => runs.push((config, rate, o)),
                Err(e) => return usage_error(&e),
            }
        }
    }
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let mut points = Vec::new();
            for (config, rate, o) in runs {
                let name = config.name();
                eprintln!("loadtest: === {name} at {rate}/s → {}", o.out_dir.display());
                let report = run_lab(o).await?;
                points.push(SweepPoint::from_report(name, rate, &report));
            }
            Ok::<_, anyhow::Error>(Sweep {
                schema_version: crate::report::SCHEMA_VERSION,
                duration_s: duration,
                points,
            })
        })
    });
    let sweep = match result {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let written = (|| -> anyhow::Result<()> {
        use anyhow::Context;
        let json = serde_json::to_string_pretty(&sweep).context("cannot serialise the sweep")?;
        std::fs::write(out.join("sweep.json"), json + "\n").context("cannot write sweep.json")?;
        std::fs::write(
            out.join("sweep.html"),
            crate::compare::render_sweep_html(&sweep),
        )
        .context("cannot write sweep.html")?;
        Ok(())
    })();
    if let Err(e) = written {
        return fail(&e);
    }
    print!("{}", crate::compare::render_sweep_table(&sweep));
    println!(
        "\nreport: {}/sweep.html (also sweep.json and one directory per point)",
        out.display()
    );
    ExitCode::SUCCESS
}

fn threshold_exit(report: &crate::report::Report) -> ExitCode {
    if report.thresholds.iter().any(|t| !t.passed) {
        ExitCode::from(EXIT_THRESHOLD_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// Reads a JSON file the lab wrote, with the schema version checked.
fn read_versioned<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
    version: impl Fn(&T) -> u32,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: T = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a loadtest {what}", path.display()))?;
    let found = version(&value);
    if found != crate::report::SCHEMA_VERSION {
        anyhow::bail!(
            "{} has schema version {found}, this loadtest writes {}",
            path.display(),
            crate::report::SCHEMA_VERSION
        );
    }
    Ok(value)
}

fn write_svgs(dir: Option<&std::path::Path>, charts: Vec<(&str, String)>) -> anyhow::Result<()> {
    use anyhow::Context;
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, svg) in charts {
        let file = dir.join(name);
        std::fs::write(&file, svg).with_context(|| format!("cannot write {}", file.display()))?;
        println!("wrote {}", file.display());
    }
    Ok(())
}

/// `loadtest report DIR`: renders a run's, a comparison's or a sweep's page again from
/// its JSON (whichever DIR holds), and with `--svg-dir` each chart as its own SVG file.
fn rerender(args: &ReportArgs) -> anyhow::Result<()> {
    use crate::compare::{
        Comparison, Sweep, comparison_charts, render_html, render_sweep_html, sweep_chart,
    };
    use crate::report::html::{Chart, render_chart_svg};
    use anyhow::Context;

    let dir = &args.dir;
    let svg_dir = args.svg_dir.as_deref();
    if dir.join("comparison.json").is_file()
        && std::fs::read_to_string(dir.join("comparison.json"))
            .is_ok_and(|t| t.contains("\"runs\""))
    {
        let c: crate::styles::StylesComparison = read_versioned(
            &dir.join("comparison.json"),
            "comparison",
            |c: &crate::styles::StylesComparison| c.schema_version,
        )?;
        std::fs::write(dir.join("comparison.html"), crate::styles::render_html(&c))
            .context("cannot write comparison.html")?;
        println!("wrote {}", dir.join("comparison.html").display());
        return Ok(());
    }
    if dir.join("comparison.json").is_file() {
        let c: Comparison = read_versioned(
            &dir.join("comparison.json"),
            "comparison",
            |c: &Comparison| c.schema_version,
        )?;
        std::fs::write(dir.join("comparison.html"), render_html(&c))
            .context("cannot write comparison.html")?;
        println!("wrote {}", dir.join("comparison.html").display());
        let names = ["goodput.svg", "failed.svg", "latency.svg", "memory.svg"];
        let charts = names
            .into_iter()
            .zip(comparison_charts(&c))
            .map(|(n, chart)| (n, chart.to_svg(true)));
        return write_svgs(svg_dir, charts.collect());
    }
    if dir.join("sweep.json").is_file() {
        let s: Sweep = read_versioned(&dir.join("sweep.json"), "sweep", |s: &Sweep| {
            s.schema_version
        })?;
        std::fs::write(dir.join("sweep.html"), render_sweep_html(&s))
            .context("cannot write sweep.html")?;
        println!("wrote {}", dir.join("sweep.html").display());
        return write_svgs(
            svg_dir,
            vec![("goodput-vs-offered.svg", sweep_chart(&s).to_svg(true))],
        );
    }
    let path = dir.join("report.json");
    if !path.is_file() {
        anyhow::bail!(
            "{} holds no report.json, comparison.json or sweep.json; is it a loadtest --out directory?",
            dir.display()
        );
    }
    let report: crate::report::Report =
        read_versioned(&path, "report", |r: &crate::report::Report| {
            r.schema_version
        })?;
    crate::lab::write_report_files(&report, dir)?;
    println!("wrote {}", dir.join("report.html").display());
    let charts = Chart::of(&report)
        .into_iter()
        .map(|c| (c.file_name(), render_chart_svg(&report, c)));
    write_svgs(svg_dir, charts.collect())
}

/// Runs `run` until it ends or Ctrl-C / SIGTERM arrives; then the run's future is
/// dropped, which stops what it started (the spawned server or worker is killed, a
/// private broker is stopped and its data directory removed), and the error says so.
async fn interruptible<T>(
    run: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = run => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
            "interrupted (Ctrl-C): the run was abandoned; what the lab started was stopped"
        )),
        () = terminate => Err(anyhow::anyhow!(
            "interrupted (SIGTERM): the run was abandoned; what the lab started was stopped"
        )),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("loadtest: error: {message}");
    ExitCode::from(2)
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("loadtest: error: {error:#}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<LabOptions, String> {
        let mut argv = vec!["loadtest", "run"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Run(run) => run.into_options(),
            _ => unreachable!("parsed a run"),
        }
    }

    #[test]
    fn blog_is_the_original_test() {
        let o = parse(&["--url", "http://127.0.0.1:8080"]).unwrap();
        assert_eq!(o.profile_name, "blog");
        assert_eq!(
            o.plan.load,
            Load::Closed {
                profile: StepProfile::BLOG,
                think: Duration::ZERO
            }
        );
        assert_eq!(o.plan.iterations, Some(1000));
        assert_eq!(o.plan.client.timeout, Duration::from_secs(30));
        assert!(o.plan.client.new_connection_per_request);
    }

    #[test]
    fn blog_refuses_shape_flags() {
        let err = parse(&["--url", "http://x:1", "--users", "5"]).unwrap_err();
        assert!(err.contains("--profile step"), "{err}");
    }

    #[test]
    fn step_and_rate_profiles() {
        let o = parse(&[
            "--profile",
            "step",
            "--users",
            "5",
            "--step-users",
            "5",
            "--step-seconds",
            "2",
            "--max-users",
            "20",
            "--duration",
            "10",
            "--url",
            "http://127.0.0.1:1",
        ])
        .unwrap();
        let Load::Closed { profile, .. } = o.plan.load else {
            panic!()
        };
        assert_eq!(profile.max_users, 20);
        assert!(!o.plan.client.new_connection_per_request);

        let o = parse(&[
            "--profile",
            "rate",
            "--rate",
            "5",
            "--duration",
            "30",
            "--spike-rate",
            "50",
            "--spike-start",
            "10",
            "--spike-seconds",
            "5",
            "--url",
            "http://127.0.0.1:1",
        ])
        .unwrap();
        let Load::Open(p) = o.plan.load else { panic!() };
        assert_eq!(p.spike.unwrap().rate, 50.0);
        assert_eq!(o.plan.duration, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bad_combinations_are_explained() {
        for (args, needle) in [
            (
                &["--profile", "step", "--url", "http://x:1"][..],
                "--iterations or --duration",
            ),
            (
                &[
                    "--profile",
                    "rate",
                    "--duration",
                    "5",
                    "--url",
                    "http://x:1",
                ],
                "needs --rate",
            ),
            (
                &[
                    "--profile",
                    "rate",
                    "--rate",
                    "5",
                    "--duration",
                    "5",
                    "--spike-rate",
                    "9",
                    "--url",
                    "http://x:1",
                ],
                "all of",
            ),
            (&["--profile", "step", "--duration", "5"], "--url URL"),
            (
                &["--profile", "step", "--duration=-1", "--url", "http://x:1"],
                "--duration",
            ),
            (
                &["--url", "http://x:1", "--", "--alloc-chars", "1"],
                "need --spawn-server",
            ),
            (
                &[
                    "--spawn-server",
                    "--server-bin",
                    "/bin/true",
                    "--",
                    "--bind",
                    "0.0.0.0:1",
                ],
                "set by the lab",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn messaging_flags_are_checked() {
        for (args, needle) in [
            (
                &["--transport", "amqp", "--spawn-server"][..],
                "--spawn-broker",
            ),
            (
                &["--url", "http://x:1", "--spawn-broker"][..],
                "--transport amqp",
            ),
            (
                &["--transport", "amqp", "--spawn-broker", "--retries", "2"][..],
                "--delivery reliable",
            ),
            (
                &[
                    "--transport",
                    "amqp",
                    "--spawn-broker",
                    "--kill-worker-every",
                    "1",
                ][..],
                "--spawn-server",
            ),
            (
                &[
                    "--transport",
                    "amqp",
                    "--amqp-url",
                    "amqp://guest:guest@127.0.0.1:1/%2f",
                    "--restart-broker-at",
                    "1",
                ][..],
                "--spawn-broker",
            ),
            (
                &[
                    "--transport",
                    "amqp",
                    "--spawn-broker",
                    "--spawn-server",
                    "--server-bin",
                    "/bin/true",
                    "--",
                    "--delivery",
                    "reliable",
                ][..],
                "set by the lab",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        let o = parse(&[
            "--transport",
            "amqp",
            "--spawn-broker",
            "--delivery",
            "reliable",
            "--drain-timeout",
            "30",
            "--orders-file",
            "/tmp/o.txt",
        ])
        .unwrap();
        let m = o.messaging.unwrap();
        assert_eq!(m.delivery, inventory::DeliveryMode::Reliable);
        assert_eq!(m.drain_timeout, Duration::from_secs(30));
        assert_eq!(m.broker, BrokerSource::Spawn);
    }

    #[test]
    fn the_four_configurations_come_from_one_set_of_arguments() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "compare",
            "--transports",
            "--profile",
            "rate",
            "--rate",
            "5",
            "--duration",
            "2",
            "--spawn-server",
            "--server-bin",
            "/bin/true",
            "--drain-timeout",
            "9",
            "--",
            "--delay-ms",
            "5",
        ])
        .unwrap();
        let Command::Compare(args) = cli.command else {
            unreachable!()
        };
        assert!(args.transports);
        let mut seen = Vec::new();
        for config in SweepConfig::STYLES {
            let run = configuration(&args.run, config, PathBuf::from("x")).unwrap();
            let o = run.into_options().unwrap();
            seen.push((
                config.style_name(),
                o.messaging.as_ref().map(|m| m.delivery.as_str()),
                o.plan.client.retries,
            ));
            if let Some(m) = &o.messaging {
                assert_eq!(m.broker, BrokerSource::Spawn);
                assert_eq!(m.drain_timeout, Duration::from_secs(9));
            }
        }
        assert_eq!(
            seen,
            vec![
                ("rpc", None, 0),
                ("rpc-protected", None, DEFAULT_PROTECTED_RETRIES),
                ("messaging-faithful", Some("faithful"), 0),
                ("messaging-reliable", Some("reliable"), 0),
            ]
        );
    }

    #[test]
    fn thresholds_with_unknown_metrics_are_usage_errors() {
        let err = parse(&["--url", "http://x:1", "--fail-on", "lots>0"]).unwrap_err();
        assert!(err.contains("unknown metric"), "{err}");
        let o = parse(&[
            "--url",
            "http://x:1",
            "--fail-on",
            "lost>0",
            "--fail-on",
            "p99>2000",
        ])
        .unwrap();
        assert_eq!(o.thresholds.len(), 2);
    }
}
