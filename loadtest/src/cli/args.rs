//! The commands' arguments as clap defines them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, ValueEnum};
use inventory::AmqpUrls;

use crate::cluster::{self};
use crate::faults::{self, Fault};
use crate::threshold::Threshold;

use super::help::{AFTER_BROKER_HELP, AFTER_COMPARE_HELP, AFTER_RUN_HELP, fail_on_help};

#[derive(Debug, Args)]
#[command(after_help = AFTER_BROKER_HELP)]
pub struct BrokerArgs {
    /// Keep the broker's data (queues, messages, logs, configuration) in DIR, created if
    /// missing, and leave it there on exit; starting again on the same DIR finds the
    /// durable queues and persistent messages again [default: a temporary directory,
    /// removed on exit].
    #[arg(long, value_name = "DIR", conflicts_with = "nodes")]
    pub keep_data: Option<PathBuf>,
    /// Start N RabbitMQ nodes joined into one cluster (each its own node name, ports and
    /// data directory; one Erlang cookie) and print every node's URL, comma-separated:
    /// the list `--amqp-url` takes [default: 1].
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=crate::broker::MAX_NODES as i64))]
    pub nodes: u16,
    /// Longest wait, in seconds, for the broker to answer an AMQP handshake (it usually
    /// takes 4-13 s) before it is killed and the start fails.
    #[arg(long, value_name = "SECS", default_value_t = crate::broker::DEFAULT_READY_TIMEOUT.as_secs_f64())]
    pub ready_timeout: f64,
}

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
          requires = "spawn_server", conflicts_with_all = REMOTE_TARGET,
          value_parser = clap::value_parser!(u32).range(1..=cluster::MAX_INSTANCES as i64))]
    pub scale_out: Vec<u32>,
    /// Compare both styles at scale: rpc-protected with K API nodes behind HAProxy against
    /// messaging-reliable with K competing workers on a RabbitMQ cluster (3 nodes, or
    /// --spawn-broker --broker-nodes N; or your --amqp-url), same load, same node size
    /// (--cpus/--memory apply to each node and each worker). Needs --spawn-server.
    #[arg(long, value_name = "K", requires = "spawn_server",
          conflicts_with_all = ["transports", "scale_out"],
          value_parser = clap::value_parser!(u32).range(1..=cluster::MAX_INSTANCES as i64))]
    pub at_scale: Option<u32>,
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

/// The flags that name a target you run (`--url`, `--balancer-url`; one at most: the
/// group `remote_target`). Every flag about a server the lab spawns conflicts with each of
/// them by name, not with the group, so clap's error names the one given.
const REMOTE_TARGET: [&str; 2] = ["url", "balancer_url"];

/// Default of `--drain-timeout`, seconds.
pub const DEFAULT_DRAIN_TIMEOUT_S: f64 = 120.0;

/// A time flag (`--duration 10`, `--step-seconds 0.5s`, `--timeout 500ms`): as the fault
/// plan reads times ([`faults::parse_seconds`]), and more than 0 — a zero-length run,
/// step, timeout or drain would measure nothing.
pub(super) fn positive_seconds(text: &str) -> Result<Duration, String> {
    let time = faults::parse_seconds(text)?;
    if time.is_zero() {
        return Err("must be a time greater than 0 s".into());
    }
    Ok(time)
}

/// A repeat (`--kill-worker-every`): at least [`faults::MIN_EVERY`], as `--fault every=`.
pub(super) fn every_seconds(text: &str) -> Result<Duration, String> {
    let time = faults::parse_seconds(text)?;
    if time < faults::MIN_EVERY {
        return Err(format!(
            "must be at least {} s",
            faults::MIN_EVERY.as_secs_f64()
        ));
    }
    Ok(time)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Connection {
    /// A new TCP connection per request (the original's new HttpClient per call).
    New,
    /// Keep connections open between requests (an AMQP publisher opens its one connection
    /// before the load starts, as a service does at start-up).
    Reuse,
}

/// clap refuses the combinations it can express, and `--help` says them:
///
/// - the target is one of `--spawn-server` and the group `remote_target` (`--url`,
///   `--balancer-url`: something you run), and the broker one of the group `broker`
///   (`--spawn-broker`, `--amqp-url`), which `--transport amqp` requires;
/// - a flag that needs a spawned process says both `requires = "spawn_…"` and
///   `conflicts_with` what names a running one instead (`remote_target`, `--amqp-url`):
///   clap excuses a missing required flag when a flag *it* conflicts with is present, so
///   `requires` alone would let `--url X -- ARGS` through. For the same reason a flag
///   that requires another (`--kill-instance-at` needs `--instances`) repeats that one's
///   conflicts.
/// - times are parsed by [`positive_seconds`] and its kin (`20`, `20s`, `500ms`).
///
/// What depends on another flag's *value* (`--profile`, `--transport`, `--delivery`) is
/// checked in [`RunArgs::into_options`].
#[derive(Debug, Clone, Args)]
#[command(after_help = AFTER_RUN_HELP)]
#[command(group(ArgGroup::new("remote_target").args(REMOTE_TARGET)))]
#[command(group(ArgGroup::new("broker").args(["spawn_broker", "amqp_url"])))]
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
    #[arg(long, help_heading = "Step profile (closed model)", value_parser = positive_seconds)]
    pub step_seconds: Option<Duration>,
    /// Most virtual users [default: 500].
    #[arg(long, help_heading = "Step profile (closed model)")]
    pub max_users: Option<u64>,
    /// Pause of each user between its answer and its next request, ms [default: 0].
    #[arg(long, help_heading = "Step profile (closed model)")]
    pub think_ms: Option<u64>,

    /// Arrivals per second (rate profile).
    #[arg(
        long,
        help_heading = "Rate profile (open model)",
        required_if_eq("profile", "rate")
    )]
    pub rate: Option<f64>,
    /// Arrivals per second during the spike.
    #[arg(long, help_heading = "Rate profile (open model)",
          requires_all = ["spike_start", "spike_seconds"])]
    pub spike_rate: Option<f64>,
    /// Seconds after the start when the spike begins (0 or more).
    #[arg(long, help_heading = "Rate profile (open model)",
          requires_all = ["spike_rate", "spike_seconds"], value_parser = faults::parse_seconds)]
    pub spike_start: Option<Duration>,
    /// Length of the spike, seconds.
    #[arg(long, help_heading = "Rate profile (open model)",
          requires_all = ["spike_rate", "spike_start"], value_parser = positive_seconds)]
    pub spike_seconds: Option<Duration>,

    /// Stop after this many requests in total [default: 1000 for --profile blog, else no
    /// limit].
    #[arg(long, help_heading = "Caps")]
    pub iterations: Option<u64>,
    /// Start no request after this many seconds (required for --profile rate) [default:
    /// 60 for --profile blog, else no limit].
    #[arg(long, help_heading = "Caps", required_if_eq("profile", "rate"),
          value_parser = positive_seconds)]
    pub duration: Option<Duration>,

    /// Client timeout per request, seconds [default: 30, as the original].
    #[arg(long, help_heading = "Client", value_parser = positive_seconds)]
    pub timeout: Option<Duration>,
    /// Retry each failed request up to N more times with the client's retry policy
    /// (exponential backoff with full jitter, Retry-After honoured, a 10 % retry budget,
    /// an Idempotency-Key kept across attempts) [default: 0, as the original].
    /// (`loadtest compare` and `sweep`: the protected side only, default 2.)
    #[arg(long, value_name = "N", help_heading = "Client",
          value_parser = clap::value_parser!(u32).range(0..=9))]
    pub retries: Option<u32>,
    /// Connection behaviour [default: new for --profile blog, as the original (except the
    /// reliable publisher, which reuses one: this project's design); reuse otherwise].
    #[arg(long, value_enum, help_heading = "Client")]
    pub connection: Option<Connection>,

    /// Load a server that is already running (e.g. in a real VM); instead of
    /// --spawn-server or --balancer-url.
    #[arg(long, help_heading = "Target")]
    pub url: Option<String>,
    /// Start purchasing-api here (port 0; orders file in --out), arguments after `--`;
    /// instead of --url or --balancer-url. The flags below that confine, restart or
    /// scale a server need it.
    #[arg(long, help_heading = "Target", conflicts_with_all = REMOTE_TARGET)]
    pub spawn_server: bool,
    /// The purchasing-api binary [default: next to loadtest, else on PATH].
    #[arg(
        long,
        help_heading = "Target",
        requires = "spawn_server",
        conflicts_with_all = REMOTE_TARGET
    )]
    pub server_bin: Option<PathBuf>,
    /// Orders file to reconcile (--url), or for the spawned server [default: OUT/PurchaseOrders.txt].
    #[arg(long, help_heading = "Target")]
    pub orders_file: Option<PathBuf>,
    /// Confine the spawned server to this many CPUs (e.g. 1, 0.5), like the original VM:
    /// a CPU quota, and pinned to ⌈CPUS⌉ cores when the machine has more.
    #[arg(
        long,
        help_heading = "Target",
        requires = "spawn_server",
        conflicts_with_all = REMOTE_TARGET
    )]
    pub cpus: Option<f64>,
    /// Confine the spawned server to this much memory (e.g. 2G, 512M; binary units).
    #[arg(
        long,
        help_heading = "Target",
        requires = "spawn_server",
        conflicts_with_all = REMOTE_TARGET
    )]
    pub memory: Option<String>,
    /// Restart the spawned server when it crashes (e.g. OOM-killed), like a supervisor.
    #[arg(
        long,
        help_heading = "Target",
        requires = "spawn_server",
        conflicts_with_all = REMOTE_TARGET
    )]
    pub restart_on_crash: bool,

    /// Start K purchasing-api nodes, each confined alone to --cpus/--memory (on cores of
    /// its own while the machine has enough), all appending to one orders file, behind a
    /// real HAProxy that the lab starts and stops (its configuration is saved as
    /// OUT/haproxy.cfg, its per-request log as OUT/haproxy.log). K = 1 is one node behind
    /// HAProxy: the fair baseline for K > 1, paying the same hop.
    #[arg(long, value_name = "K", help_heading = "Scale-out (HAProxy)", requires = "spawn_server", conflicts_with_all = REMOTE_TARGET,
          value_parser = clap::value_parser!(u32).range(1..=cluster::MAX_INSTANCES as i64))]
    pub instances: Option<u32>,
    /// Fault: SIGKILL api0 (the first node) SECONDS after the load started; its supervisor restarts it
    /// (implies --restart-on-crash). The report's balancer.nodes[0].crash_events say when
    /// HAProxy took it out and put it back. Alias of --fault SECONDS:kill:api0.
    #[arg(long, value_name = "SECONDS", help_heading = "Scale-out (HAProxy)",
          requires = "instances", conflicts_with_all = REMOTE_TARGET, value_parser = positive_seconds)]
    pub kill_instance_at: Option<Duration>,
    /// How long a node killed by the fault plan (--kill-instance-at, --fault …:kill:apiN)
    /// stays down before its supervisor restarts it, seconds [default: 3: longer than
    /// HAProxy's detection, as a rebooting VM would].
    #[arg(long, value_name = "SECONDS", help_heading = "Scale-out (HAProxy)",
          requires = "instances", conflicts_with_all = REMOTE_TARGET,
          value_parser = faults::parse_seconds)]
    pub instance_down_for: Option<Duration>,
    /// Load a balancer you run (e.g. your HAProxy in front of nodes in VMs) at URL, as
    /// --url does (instead of --url or --spawn-server); with --balancer-stats-socket the
    /// lab also watches the nodes behind it.
    #[arg(long, value_name = "URL", help_heading = "Scale-out (HAProxy)")]
    pub balancer_url: Option<String>,
    /// Your HAProxy's `stats socket` (a path readable here): the lab samples its backend's
    /// servers — in rotation or not, sessions, queue, requests sent to each — into
    /// report.json's balancer object.
    #[arg(long, value_name = "PATH", help_heading = "Scale-out (HAProxy)",
          requires = "balancer_url", conflicts_with_all = ["url", "spawn_server"])]
    pub balancer_stats_socket: Option<PathBuf>,
    /// The backend whose servers are your nodes [default: nodes, as the lab's own].
    #[arg(long, value_name = "NAME", help_heading = "Scale-out (HAProxy)",
          requires = "balancer_stats_socket", conflicts_with_all = ["url", "spawn_server"])]
    pub balancer_backend: Option<String>,
    /// With --url: seconds the orders file must stay unchanged before it is reconciled.
    #[arg(long, help_heading = "Target", default_value = "5", value_parser = positive_seconds)]
    pub settle: Duration,

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
    /// --spawn-server the lab spawns purchasing-worker instead of purchasing-api). The
    /// flags below belong to amqp.
    #[arg(long, value_enum, default_value_t = Transport::Http, help_heading = "Messaging (--transport amqp)",
          requires_if("amqp", "broker"))]
    pub transport: Transport,
    /// Start a private RabbitMQ for the run, outside the emulated VM (as the original's
    /// broker ran on another machine), and stop it at the end — also on Ctrl-C; instead
    /// of --amqp-url.
    #[arg(long, help_heading = "Messaging (--transport amqp)")]
    pub spawn_broker: bool,
    /// With --spawn-broker: start N RabbitMQ nodes joined into one cluster (broker0, …),
    /// on which reliable delivery's quorum queues are replicated to every node; faults can
    /// aim at each node or at broker-leader [default: 1].
    #[arg(long, value_name = "N", default_value_t = 1, requires = "spawn_broker",
          help_heading = "Messaging (--transport amqp)",
          value_parser = clap::value_parser!(u16).range(1..=crate::broker::MAX_NODES as i64))]
    pub broker_nodes: u16,
    /// With --spawn-server: start K purchasing-worker processes (worker0, …), competing
    /// for the one queue, each confined alone to --cpus/--memory (on cores of its own
    /// while the machine has enough) with the prefetch its own size gives it, all
    /// appending to one orders file (their shared idempotency journal keeps a message
    /// from being written twice by two workers) [default: 1].
    #[arg(long, value_name = "K", help_heading = "Messaging (--transport amqp)",
          requires = "spawn_server", conflicts_with_all = REMOTE_TARGET,
          value_parser = clap::value_parser!(u32).range(1..=cluster::MAX_INSTANCES as i64))]
    pub workers: Option<u32>,
    /// A broker you run, e.g. amqp://guest:guest@127.0.0.1:5672/%2f; instead of
    /// --spawn-broker. Several (a cluster's nodes) comma-separated or with the flag
    /// repeated: the publisher and the worker fail over from one to the next.
    #[arg(long, value_name = "URL", help_heading = "Messaging (--transport amqp)",
          action = clap::ArgAction::Append, value_parser = AmqpUrls::value_parser())]
    pub amqp_url: Vec<AmqpUrls>,
    /// Delivery mode of both sides: `faithful` (the original: transient, no confirms,
    /// auto-ack) or `reliable` (durable, confirms, manual ack, dedup) [default: faithful].
    #[arg(long, value_name = "faithful|reliable", value_parser = parse_delivery,
          help_heading = "Messaging (--transport amqp)")]
    pub delivery: Option<inventory::DeliveryMode>,
    /// After the load, wait at most this many seconds for the queue to drain before the
    /// worker is stopped; what is still queued then is reported as still queued
    /// [default: 120].
    #[arg(long, value_name = "SECONDS", help_heading = "Messaging (--transport amqp)",
          value_parser = positive_seconds)]
    pub drain_timeout: Option<Duration>,
    /// Fault: SIGKILL the spawned worker every SECONDS, through the load and the drain;
    /// it is restarted as after any crash (implies --restart-on-crash). Alias of
    /// --fault every=SECONDS:kill:worker0.
    #[arg(long, value_name = "SECONDS", help_heading = "Messaging (--transport amqp)",
          requires = "spawn_server", conflicts_with_all = REMOTE_TARGET, value_parser = every_seconds)]
    pub kill_worker_every: Option<Duration>,
    /// Fault: restart the spawned broker SECONDS after the load started, on the same
    /// data directory and port (a faithful queue does not survive it; a reliable one does).
    /// Alias of --fault SECONDS:restart:broker0.
    #[arg(long, value_name = "SECONDS", help_heading = "Messaging (--transport amqp)",
          requires = "spawn_broker", conflicts_with = "amqp_url", value_parser = positive_seconds)]
    pub restart_broker_at: Option<Duration>,

    /// Give every host (each API node, worker, broker node, the balancer and the lab's
    /// client side) a network namespace of its own with one address on a lab network — a
    /// bridge the lab creates and removes, also on Ctrl-C — so that network faults
    /// (partition, isolate, loss, rate, heal) can be injected. Needs root and the
    /// programs ip and iptables. The report's topology.hosts[].address says who was where.
    #[arg(long, help_heading = "Network", requires = "spawn_server",
          conflicts_with_all = ["url", "balancer_url", "amqp_url"])]
    pub network: bool,
    /// The lab network's IPv4 range; host i of the topology gets its address i + 2
    /// [default: 10.200.0.0/24, which exists only inside the lab's namespaces].
    #[arg(
        long,
        value_name = "CIDR",
        help_heading = "Network",
        requires = "network"
    )]
    pub network_cidr: Option<crate::network::Cidr>,
    /// Limit every host's link to RATE, both ways, as a VM's bandwidth setting does
    /// (e.g. 100mbit, 10mbit, 512kbit; a tbf qdisc on each end of the host's link)
    /// [default: unlimited].
    #[arg(
        long,
        value_name = "RATE",
        help_heading = "Network",
        requires = "network"
    )]
    pub link_rate: Option<crate::network::LinkRate>,
    /// Delay every packet a host sends by this long (e.g. 20ms). Needs the kernel's netem
    /// qdisc; where it is missing the run is refused before anything starts.
    #[arg(long, value_name = "TIME", help_heading = "Network", requires = "network",
          value_parser = positive_seconds)]
    pub link_delay: Option<Duration>,

    /// A fault to inject, WHEN:ACTION:TARGET; repeatable. WHEN: seconds after the load
    /// starts (20, 20s, 1.5s) or every=20s (again and again, through the load and the
    /// drain). ACTION: kill (SIGKILL; a supervised process comes back after its down
    /// time), stop, start, restart, pause (SIGSTOP: alive, answering nothing), resume.
    /// TARGET: a host the lab starts: api0, api1, … (worker0, worker1, … with --transport amqp),
    /// broker0, broker1, … (--broker-nodes), or broker-leader (the broker node leading the
    /// orders queue when the fault fires; start/resume bring back the one it hit). With
    /// --network also: partition:A/B (each side hosts or roles, comma-separated, e.g.
    /// client/api0, worker0/broker), isolate:HOST, loss:HOST:5%, rate:HOST:1mbit and heal
    /// (no target; undoes every network fault), on any host including client and balancer.
    /// E.g. --fault every=20s:kill:worker0 --fault 30s:restart:broker0.
    #[arg(long = "fault", value_name = "WHEN:ACTION:TARGET", help_heading = "Faults",
          value_parser = parse_fault)]
    pub faults: Vec<Fault>,
    /// A fault plan in a TOML file, for long schedules: [[fault]] tables with `at` (or
    /// `every`), `action` and `target`; added to the --fault ones.
    #[arg(long = "faults", value_name = "FILE", help_heading = "Faults")]
    pub faults_file: Option<PathBuf>,

    /// Arguments for the spawned purchasing-api (or purchasing-worker with --transport
    /// amqp), e.g. -- --alloc-chars 1000 --delay-ms 5.
    #[arg(
        last = true,
        value_name = "SERVER_ARGS",
        requires = "spawn_server",
        conflicts_with_all = REMOTE_TARGET
    )]
    pub server_args: Vec<String>,
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

pub(super) fn parse_delivery(
    s: &str,
) -> Result<inventory::DeliveryMode, wire_contract::amqp::UnknownDelivery> {
    s.parse()
}

/// `--fault WHEN:ACTION:TARGET` (its host is checked against the topology later).
pub(super) fn parse_fault(s: &str) -> Result<Fault, String> {
    s.parse()
}
