//! The report's data: what `report.json` contains and what the summary table and
//! `report.html` are rendered from. Versioned: bump [`SCHEMA_VERSION`] when a field
//! changes meaning or disappears (adding fields does not need a bump).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use lab_topology::Topology;

/// 2: the messaging half (`run.transport`, `reconciliation.still_queued`, `messaging`,
/// `broker`, `timeline.queue`).
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub tool: String,
    /// Wall-clock start of the load, RFC 3339 (UTC).
    pub started_at: String,
    pub run: RunInfo,
    pub requests: RequestCounts,
    pub latency_ms: LatencySummary,
    pub throughput: Throughput,
    pub generator: GeneratorHealth,
    /// One row per step of a step profile (empty for the open model).
    pub steps: Vec<StepRow>,
    /// Index into `steps` of the knee: the first step where p99 broke or throughput
    /// stopped growing.
    pub knee_step: Option<usize>,
    pub reconciliation: Reconciliation,
    pub server: ServerReport,
    pub timeline: Timeline,
    pub thresholds: Vec<ThresholdResult>,
    /// The client's retry policy at work (all zero when retries were off).
    #[serde(default)]
    pub retries: RetryStats,
    /// The messaging half's figures (`--transport amqp`); `None` for HTTP runs.
    #[serde(default)]
    pub messaging: Option<MessagingReport>,
    /// The broker the lab started (`--spawn-broker`); `None` otherwise.
    #[serde(default)]
    pub broker: Option<BrokerReport>,
    /// Scaled out (`--instances K`): the load balancer and the nodes behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<BalancerReport>,
    /// What the run deployed: its hosts and their roles (`None` in reports written
    /// before the topology was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
    /// Every fault the plan injected (`--fault`, `--faults`, and the older fault flags),
    /// in the order they happened.
    #[serde(default)]
    pub faults: Vec<FaultEvent>,
}

/// One fault the plan injected.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultEvent {
    /// Seconds since the load started.
    pub at_s: f64,
    /// `kill`, `stop`, `start`, `restart`, `pause`, `resume`.
    pub action: String,
    /// The host's name in the topology (`api0`, `worker0`, `broker0`), or `broker-leader`.
    pub target: String,
    /// The host it hit, when the target was resolved as the fault fired (`broker-leader`:
    /// the node that led the orders queue then).
    #[serde(default)]
    pub host: Option<String>,
    /// Whether it was carried out (false: e.g. the host was down already).
    pub ok: bool,
    /// One line: what was done and how it went.
    pub detail: String,
}

/// What the queue did in a `--transport amqp` run. "Acknowledged" for a publish means the
/// publish call returned (faithful) or the broker confirmed it (reliable); an order is
/// only written when the worker gets to it, so the honest figures are the end-to-end
/// latency and the drain.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MessagingReport {
    /// `faithful` or `reliable`, as both sides were configured.
    pub delivery: String,
    /// The orders queue's type: `classic` (faithful: transient, on one node) or `quorum`
    /// (reliable: replicated by Raft to every broker node).
    #[serde(default)]
    pub queue_type: String,
    /// Publish latency: the request latency of acknowledged publishes.
    pub publish_latency_ms: Percentiles,
    /// How long the publisher took to open its one connection before the load (connect,
    /// channel, confirms, declarations), not part of any publish's latency; `None` when
    /// every publish opens its own connection (`--connection new`), which then is.
    #[serde(default)]
    pub connect_ms: Option<f64>,
    /// From the publish's start to its order's line appearing in the orders file, as the
    /// lab saw it by tailing the file (acknowledged publishes whose line appeared).
    pub end_to_end_ms: Percentiles,
    /// Orders whose line the tail saw, matched to a publish of this run.
    pub end_to_end_matched: u64,
    /// Seconds from the end of the load until the queue was empty and all was written;
    /// `None` when the drain deadline passed first.
    pub drain_s: Option<f64>,
    /// Whether the drain finished before `--drain-timeout`.
    pub drained: bool,
    /// The drain deadline, seconds.
    pub drain_timeout_s: f64,
    /// Orders written per second while the queue was not empty after the load.
    pub drain_rate_per_s: Option<f64>,
    /// Seconds from the load's start until the last order of the run was written.
    pub last_written_s: Option<f64>,
    /// Most messages waiting at any sample: ready in the queue plus held by the worker.
    pub queue_depth_max: Option<u64>,
    /// Messages still ready in the queue when the lab stopped waiting (after the worker
    /// stopped): the bound on `reconciliation.still_queued`.
    pub still_ready: Option<u64>,
    /// Deliveries the broker flagged redelivered, summed over the worker's processes.
    pub redelivered: u64,
    /// Messages in the dead-letter queue at the end (reliable; 0 in faithful mode).
    pub dead_lettered: u64,
    /// Messages the worker counted as lost (faithful: auto-acknowledged, never written),
    /// summed over its processes as sampled (a killed process's last counts are missed).
    pub worker_lost: u64,
    /// Each worker the lab started (`worker0`, …; `--workers K`), competing for the one
    /// queue; empty for a worker the lab did not start.
    #[serde(default)]
    pub workers: Vec<WorkerReport>,
}

/// One purchasing worker the lab started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerReport {
    /// Its host in the topology: `worker0`, `worker1`, …
    pub name: String,
    /// Its cgroup and cores.
    pub confinement: String,
    /// Order lines it appended, from its `/metrics` counter summed over its processes as
    /// sampled every 250 ms (a killed process's count since its last sample is missed).
    pub orders_written: u64,
    /// CPU seconds of all its processes (exact, from `wait4`).
    pub cpu_seconds: Option<f64>,
    /// Highest memory use (its cgroup's peak when confined, else the highest RSS sampled).
    pub peak_memory_bytes: Option<u64>,
    /// Exits the lab did not ask for (injected kills included).
    pub crashes: u64,
    /// Times its supervisor started it again.
    pub restarts: u64,
}

/// p50/p99 of a latency, milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// A broker the lab ran itself, outside the emulated VM.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BrokerReport {
    /// True when the lab started it (`--spawn-broker`).
    pub spawned: bool,
    /// Restarts the lab did (`--restart-broker-at`).
    pub restarts: u64,
    /// Each restart: seconds since the load start, and how it went.
    pub restart_events: Vec<CrashEvent>,
    /// Each node the lab started (`--broker-nodes N`: `broker0`, `broker1`, …; one for a
    /// single broker); empty for a broker the lab did not start.
    #[serde(default)]
    pub nodes: Vec<BrokerNodeReport>,
}

/// One RabbitMQ node the lab started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BrokerNodeReport {
    /// Its host name in the topology: `broker0`, `broker1`, ….
    pub name: String,
    /// Its Erlang node name, `broker0-ID@localhost` (what `rabbitmqctl -n` takes).
    pub node: String,
    /// Its AMQP URL, password hidden.
    pub url: String,
    /// Times it was killed (SIGKILL by the fault plan) or found dead.
    pub crashes: u64,
    /// Times the lab started it again.
    pub restarts: u64,
}

/// How often the client retried: a logical request is one item code; attempts are the
/// HTTP requests made for it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RetryStats {
    pub enabled: bool,
    /// Most attempts the policy allowed per logical request.
    pub max_attempts: u32,
    pub attempts_total: u64,
    /// attempts_total / requests.total.
    pub attempts_per_request: Option<f64>,
    /// The most attempts any one logical request took.
    pub attempts_max: u32,
    /// Logical requests whose retry the retry budget refused.
    pub budget_denied: u64,
    /// Acknowledgements the server marked as a replay of an earlier attempt
    /// (`Idempotent-Replayed: true`).
    pub replayed: u64,
}

/// What was run, against what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// `blog`, `step` or `rate`.
    pub profile: String,
    /// `closed` (virtual users, no coordinated-omission correction) or `open` (arrival
    /// rate; latency measured from each request's scheduled send time).
    pub model: String,
    /// Human description of the load shape, e.g. "20 users +20 every 5s up to 500".
    pub shape: String,
    pub url: String,
    pub timeout_ms: u64,
    pub new_connection_per_request: bool,
    pub iterations_cap: Option<u64>,
    pub duration_cap_s: Option<f64>,
    /// Seconds from the first request to the last answer.
    pub elapsed_s: f64,
    /// `http` (calls to the API) or `amqp` (publishes to the queue the worker consumes).
    #[serde(default = "http_transport")]
    pub transport: String,
    /// The server's command line when the lab spawned it.
    pub server_command: Option<Vec<String>>,
    pub orders_file: Option<String>,
}

fn http_transport() -> String {
    "http".into()
}

/// Every request, counted once by its outcome.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestCounts {
    pub total: u64,
    /// 2xx answers (the API answers 201 Created): the client believes the order exists.
    pub acknowledged: u64,
    /// Answered with a non-2xx status.
    pub failed_status: u64,
    /// No complete answer within the client timeout.
    pub timed_out: u64,
    /// Could not connect (refused: server down or restarting).
    pub connect_errors: u64,
    /// Connection reset or closed mid-exchange, or another transport failure.
    pub transport_errors: u64,
    /// Failed statuses by code, e.g. {"500": 12, "503": 40}.
    pub by_status: BTreeMap<String, u64>,
}

impl RequestCounts {
    pub fn failed(&self) -> u64 {
        self.total - self.acknowledged
    }
}

/// "Test time" in the original's words: from the intended send time (open model) or the
/// actual send (closed model) to the end of the exchange, over all requests whatever
/// their outcome. `None` when there were no requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
    /// Same percentiles over acknowledged requests only.
    pub acknowledged_p50: Option<f64>,
    pub acknowledged_p99: Option<f64>,
    /// How to read these numbers (coordinated omission in the closed model).
    pub note: String,
    /// How fast a refusal is: the duration of the final attempt of the requests answered
    /// 503 (shed), without the client's backoff between attempts.
    #[serde(default)]
    pub shed_p50: Option<f64>,
    #[serde(default)]
    pub shed_p99: Option<f64>,
    /// Duration of the admitted attempt of acknowledged requests (its last attempt): what
    /// an order the server accepted cost, without earlier refused attempts and backoff.
    /// Equal to the acknowledged figures when the client does not retry.
    #[serde(default)]
    pub admitted_p50: Option<f64>,
    #[serde(default)]
    pub admitted_p99: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Throughput {
    /// Completed requests per second ("tests/s"), whatever their outcome.
    pub requests_per_s: f64,
    /// Acknowledged requests per second: goodput.
    pub acknowledged_per_s: f64,
    /// Open model with a spike: goodput before the spike (acknowledged/s, averaged over
    /// the seconds before it, the first two left out as warm-up).
    #[serde(default)]
    pub pre_spike_acknowledged_per_s: Option<f64>,
    /// Seconds after the spike ended until goodput (3-second average) was back to ≥ 95 %
    /// of its pre-spike value; `None` when it never came back or there was no spike.
    #[serde(default)]
    pub recovery_s: Option<f64>,
}

/// Whether the load generator kept to its schedule. Lag = actual send − intended send.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GeneratorHealth {
    pub lag_p50_ms: Option<f64>,
    pub lag_p99_ms: Option<f64>,
    pub lag_max_ms: Option<f64>,
    /// True when the lag grew past what a healthy generator shows: the numbers then
    /// understate the load that was meant to be offered.
    pub saturated: bool,
    /// CPU time (user + system) the lab's process used while the load ran: what sending,
    /// recording and watching cost, so a reader can see the generator was not the
    /// bottleneck. `None` in reports written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRow {
    pub index: usize,
    /// Virtual users during this step.
    pub users: u64,
    pub start_s: f64,
    pub end_s: f64,
    /// Requests that started in this step, by outcome.
    pub sent: u64,
    pub acknowledged: u64,
    pub failed: u64,
    pub timed_out: u64,
    /// Completed requests per second during the step.
    pub requests_per_s: f64,
    pub acknowledged_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub knee: bool,
}

/// What happened to every item code the load generator sent, decided by reading the
/// orders file back after the server settled.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Reconciliation {
    /// False when the orders file could not be read (e.g. a remote server): every count
    /// below is then `None` and `unavailable_reason` says why.
    pub available: bool,
    pub unavailable_reason: Option<String>,
    pub orders_file: Option<String>,
    /// Acknowledged and in the file: the good case.
    pub acknowledged_persisted: Option<u64>,
    /// Acknowledged but not in the file: an order the client was promised and lost.
    pub lost: Option<u64>,
    /// Failed or timed out at the client but in the file: the client believes it failed,
    /// so a retry would order twice.
    pub ghost: Option<u64>,
    /// Failed and not in the file: consistent, the client knows it must retry.
    pub failed_absent: Option<u64>,
    /// Item codes sent once but in the file more than once.
    pub duplicates: Option<u64>,
    /// Orders in the file that this run never sent (left over, or forged).
    pub unexpected: Option<u64>,
    /// Lines of the file that are not well-formed orders (torn or interleaved writes).
    pub malformed_lines: Option<u64>,
    /// Messaging: acknowledged publishes not in the file that may still be in the queue
    /// (at most the messages left ready when the drain deadline passed; see
    /// `loadtest::messaging::split_absent`). Not lost yet, not written yet. `None` for HTTP.
    #[serde(default)]
    pub still_queued: Option<u64>,
    /// How long the lab waited for in-flight work to reach the file.
    pub settle_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerReport {
    /// True when the lab started the server (and so could sample and supervise it).
    pub spawned: bool,
    pub crashes: u64,
    pub crash_events: Vec<CrashEvent>,
    pub restarts: u64,
    /// Peak memory seen: the cgroup's usage when confined, else the process RSS.
    pub peak_memory_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_limit: Option<f64>,
    /// Peak CPU use over a sampling interval, in % of one CPU.
    pub peak_cpu_percent: Option<f64>,
    /// CPU seconds the server used during the run.
    pub cpu_seconds: Option<f64>,
    pub peak_threads: Option<u64>,
    /// How the server was confined: "cgroup v1", "cgroup v2", or "none".
    pub confinement: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CrashEvent {
    /// Seconds since the load started.
    pub t_s: f64,
    /// e.g. "OOM-killed (SIGKILL from the kernel's OOM killer)", "exited with status 1".
    pub cause: String,
    pub oom_killed: bool,
}

/// Everything over time, aggregated per second so the page stays small however long the
/// run: one row per second of the load, one sample per sampling interval of the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    pub seconds: Vec<SecondRow>,
    pub server: Vec<ServerSample>,
    /// Messaging: the queue at each sample (empty for HTTP runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<QueueSample>,
}

/// The queue at one sample of a messaging run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueSample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Messages ready in the queue (the broker's passive-declare count; unacked excluded).
    pub ready: Option<u64>,
    /// Messages the worker holds: received and not settled (reliable: unacked, the
    /// worker's `received − acked − rejected − requeued`; faithful: the order being
    /// written — what the broker pushed beyond it is invisible to both sides).
    pub at_worker: Option<u64>,
    /// Acknowledged publishes so far whose line the lab has not seen yet: the whole
    /// backlog as the client sees it (ready, held, pushed into the worker's buffer, or lost).
    pub outstanding: u64,
    /// Orders written so far (lines the tail saw).
    pub written: u64,
    /// Redeliveries so far (summed over the worker's processes).
    pub redelivered: u64,
    /// Messages in the dead-letter queue (reliable).
    pub dead_lettered: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SecondRow {
    /// Start of this second, in seconds since the load started.
    pub t_s: u64,
    /// Virtual users active (closed model) or the offered arrival rate (open model).
    pub users: Option<u64>,
    pub offered_rate: Option<f64>,
    /// Requests that completed during this second, by outcome.
    pub acknowledged: u64,
    pub failed_status: u64,
    pub timed_out: u64,
    pub connect_errors: u64,
    pub transport_errors: u64,
    /// Latency percentiles of the requests that completed during this second.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub in_flight: u64,
}

impl SecondRow {
    pub fn failed(&self) -> u64 {
        self.failed_status + self.timed_out + self.connect_errors + self.transport_errors
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServerSample {
    pub t_s: f64,
    /// cgroup memory usage when confined, else RSS.
    pub memory_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    /// CPU use since the previous sample, in % of one CPU.
    pub cpu_percent: Option<f64>,
    pub threads: Option<u64>,
    /// The server's admission limit (`purchasing_admission_limit`), when it has one: fixed,
    /// or where an adaptive limit stood at this sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_limit: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThresholdResult {
    pub expression: String,
    pub value: Option<f64>,
    pub passed: bool,
}

/// The balancer at one sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BalancerSample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Per node, in node order: in rotation now.
    pub up: Vec<bool>,
    /// Per node: requests in progress on it.
    pub sessions: Vec<u64>,
    /// Requests waiting in HAProxy's queue (the backend's and the nodes' together).
    pub queued: u64,
}

/// A node going out of or back into rotation, as the health checks decided.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Transition {
    pub t_s: f64,
    pub node: String,
    /// True: back in rotation; false: taken out.
    pub up: bool,
}

/// Several nodes behind a load balancer (`--instances K`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BalancerReport {
    /// `haproxy`.
    pub kind: String,
    /// True when the lab started it.
    pub spawned: bool,
    /// Where the clients sent their orders.
    pub url: String,
    /// The generated configuration, in the output folder.
    pub config_file: String,
    /// HAProxy's log: one line per request with its request id and the node that answered.
    pub log_file: String,
    /// Nodes behind the balancer.
    pub instances: u64,
    /// HAProxy's `maxconn` per node: the node's own admission limit (its hard cap with
    /// `--max-in-flight adaptive`), read from its `/metrics`; `None` for unprotected nodes.
    pub maxconn_per_node: Option<u32>,
    /// Requests HAProxy holds queued at most before it refuses at once.
    pub queue_bound: Option<u32>,
    /// Health checks: interval, failures to take a node out, successes to put it back.
    pub check_interval_ms: u64,
    pub fall: u32,
    pub rise: u32,
    /// Requests HAProxy answered itself with 503 (its queue full or timed out, no node
    /// up, or the node it tried refused the connection): no node answered them.
    pub refused_by_balancer: u64,
    /// HAProxy's own time on an admitted order (201): its total time minus the node's
    /// response time, by HAProxy's own timers (milliseconds, whole numbers).
    pub added_latency_ms: Percentiles,
    /// How long admitted orders waited in HAProxy's queue for a free node slot (`%Tw`):
    /// the excess the per-node `maxconn` held back instead of pushing onto a node.
    #[serde(default)]
    pub queue_wait_ms: Percentiles,
    /// CPU seconds HAProxy used (from /proc), and the lab's own (load generator,
    /// samplers): both share the machine with the nodes.
    pub cpu_seconds: Option<f64>,
    pub lab_cpu_seconds: Option<f64>,
    /// How HAProxy stopped.
    pub stop_outcome: String,
    pub nodes: Vec<NodeReport>,
    /// Every node going out of rotation or back, as the health checks decided.
    pub transitions: Vec<Transition>,
    /// The balancer every sampling interval: nodes up, sessions per node, queue.
    pub samples: Vec<BalancerSample>,
}

/// One node behind the balancer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    /// `api0`, `api1`, … (as in haproxy.cfg and haproxy.log).
    pub name: String,
    pub addr: String,
    /// e.g. "cgroup v1, pinned to core 1".
    pub confinement: String,
    pub crashes: u64,
    pub restarts: u64,
    pub crash_events: Vec<NodeCrash>,
    pub peak_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    /// Whether it finished its in-flight orders and exited 0 at the end.
    pub stopped_cleanly: bool,
    /// Requests it answered (HTTP requests: a client retry counts again); not those HAProxy
    /// tried on it and answered itself (the node dead or refusing connections).
    pub requests: u64,
    /// Of those, answered 201.
    pub acknowledged: u64,
    /// Of those, answered 503 by the node itself (its admission control).
    pub refused: u64,
}

/// A node's crash (OOM kill, injected SIGKILL, …) and the failover around it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeCrash {
    /// Seconds since the load started.
    pub t_s: f64,
    pub cause: String,
    pub oom_killed: bool,
    /// The lab killed it on purpose (`--kill-instance-at`).
    pub injected: bool,
    /// Crash → HAProxy took it out of rotation.
    pub detect_down_s: Option<f64>,
    /// When the supervisor had it listening again.
    pub restarted_at_s: Option<f64>,
    /// Restart → HAProxy put it back into rotation.
    pub back_up_s: Option<f64>,
    /// Requests that failed (any non-2xx outcome but the node's own 503s is not told
    /// apart here: every failure) in the seconds from the crash until it was out of
    /// rotation.
    pub failed_during_window: Option<u64>,
}
