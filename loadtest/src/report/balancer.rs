//! The scaled-out run's part of the report: HAProxy and the nodes behind it
//! (`report.json`'s `balancer` object), and its section of the HTML page.

use serde::{Deserialize, Serialize};

pub use crate::balancer::{BalancerSample, Transition};
use crate::report::model::Percentiles;

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
    /// Requests HAProxy answered itself with 503 (its queue full or timed out, or no
    /// node up), never reaching a node.
    pub refused_by_balancer: u64,
    /// HAProxy's own time on an admitted order (201): its total time minus the node's
    /// response time, by HAProxy's own timers (milliseconds, whole numbers).
    pub added_latency_ms: Percentiles,
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
    /// `node0`, `node1`, … (as in haproxy.cfg and haproxy.log).
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
    /// Requests HAProxy sent it (HTTP requests: a client retry counts again).
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

/// The section of the HTML page (empty without a balancer).
pub fn render_html(report: &BalancerReport) -> String {
    use crate::report::format::escape;
    let mut html = String::new();
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
    html.push_str("<section class=\"card\"><h2>Load balancer</h2>\n");
    html.push_str(&format!(
        "<p>{} {} node(s) behind {} at {} (configuration <code>{}</code>, log <code>{}</code>); \
         maxconn per node {}, queue bound {}; health checks every {} ms, out after {}, back after {}. \
         Refused by the balancer itself: {}. Its own time on an admitted order: p50 {} ms, p99 {} ms. \
         CPU: HAProxy {} s, the lab {} s.</p>\n",
        report.instances,
        if report.spawned { "spawned" } else { "given" },
        escape(&report.kind),
        escape(&report.url),
        escape(&report.config_file),
        escape(&report.log_file),
        report.maxconn_per_node.map_or("none".into(), |m| m.to_string()),
        report.queue_bound.map_or("none".into(), |m| m.to_string()),
        report.check_interval_ms,
        report.fall,
        report.rise,
        report.refused_by_balancer,
        opt(report.added_latency_ms.p50),
        opt(report.added_latency_ms.p99),
        opt(report.cpu_seconds),
        opt(report.lab_cpu_seconds),
    ));
    html.push_str("<table><thead><tr><th>node</th><th>confinement</th><th>requests</th><th>201</th><th>503 (node)</th><th>crashes</th><th>peak memory</th><th>CPU s</th><th>stopped cleanly</th></tr></thead><tbody>\n");
    for node in &report.nodes {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&node.name),
            escape(&node.confinement),
            node.requests,
            node.acknowledged,
            node.refused,
            node.crashes,
            crate::report::format::opt_bytes(node.peak_memory_bytes),
            opt(node.cpu_seconds),
            node.stopped_cleanly,
        ));
    }
    html.push_str("</tbody></table>\n");
    let crashes: Vec<(&str, &NodeCrash)> = report
        .nodes
        .iter()
        .flat_map(|n| n.crash_events.iter().map(move |c| (n.name.as_str(), c)))
        .collect();
    if !crashes.is_empty() {
        html.push_str("<h3>Failover</h3><table><thead><tr><th>node</th><th>crash at s</th><th>cause</th><th>out of rotation after s</th><th>restarted at s</th><th>back in rotation after s</th><th>failed meanwhile</th></tr></thead><tbody>\n");
        for (name, c) in crashes {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(name),
                c.t_s,
                escape(&c.cause),
                opt(c.detect_down_s),
                opt(c.restarted_at_s),
                opt(c.back_up_s),
                c.failed_during_window.map_or("–".into(), |f| f.to_string()),
            ));
        }
        html.push_str("</tbody></table>\n");
    }
    html.push_str("</section>\n");
    html
}
