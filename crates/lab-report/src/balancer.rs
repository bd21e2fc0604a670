//! The scaled-out run's card on the HTML page: HAProxy and the nodes behind it
//! (`report.json`'s `balancer` object, [`BalancerReport`]).

use super::format::{escape, opt_bytes};
use super::model::{BalancerReport, NodeCrash};

/// The section of the HTML page (empty without a balancer): the balancer's settings and
/// figures, one row per node, and the failover of each crashed node.
pub fn render_html(report: &BalancerReport) -> String {
    let mut html = String::new();
    html.push_str("<section class=\"card\"><h2>Load balancer</h2>\n");
    settings(&mut html, report);
    nodes(&mut html, report);
    failover(&mut html, report);
    html.push_str("</section>\n");
    html
}

fn opt(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.2}"))
}

/// One paragraph: the balancer, its settings, what it refused, added and spent.
fn settings(html: &mut String, report: &BalancerReport) {
    html.push_str(&format!(
        "<p>{} {} node(s) behind {} at {} (configuration <code>{}</code>, log <code>{}</code>); \
         maxconn per node {}, queue bound {}; health checks every {} ms, out after {}, back after {}. \
         Refused by the balancer itself: {}. Its own time on an admitted order (the hop): p50 {} ms, p99 {} ms; \
         its queue's wait for a free node slot: p50 {} ms, p99 {} ms. \
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
        opt(report.queue_wait_ms.p50),
        opt(report.queue_wait_ms.p99),
        opt(report.cpu_seconds),
        opt(report.lab_cpu_seconds),
    ));
}

/// One row per node behind the balancer.
fn nodes(html: &mut String, report: &BalancerReport) {
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
            opt_bytes(node.peak_memory_bytes),
            opt(node.cpu_seconds),
            node.stopped_cleanly,
        ));
    }
    html.push_str("</tbody></table>\n");
}

/// Each crash of a node: when it went out of rotation, came back, and what failed meanwhile.
fn failover(html: &mut String, report: &BalancerReport) {
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
}
