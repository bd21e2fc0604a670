//! The page's cards: the header, banners and headline figures, the run, the counters of
//! the original Visual Studio load test, the reconciliation table, the charts over time,
//! the steps with the knee, generator health, thresholds and crash events.

use std::fmt::Write as _;

use super::charts::time_axis;
use super::downsampling::MAX_POINTS;
use super::format::{
    DASH, at, duration, escape, fin, fmt_bytes, fmt_ms, int, opt_bytes, opt_int, opt_ms, pct,
    plural, rate, trim,
};
use super::reconciliation::{PARTITION, reconciliation_bar, reconciliation_classes};
use super::request_charts::{latency_chart, throughput_chart};
use super::server_charts::{cpu_chart, memory_chart, no_server_note};
use super::{Report, RunInfo, ServerReport};

pub fn header(html: &mut String, report: &Report) {
    let run = &report.run;
    let model = match run.model.as_str() {
        "closed" => "closed model (virtual users)",
        "open" => "open model (arrival rate)",
        other => other,
    };
    let _ = write!(
        html,
        "<header><h1>Load test report</h1><p class=\"sub\"><b>{}</b> profile · {} · {} · started {} · {} elapsed</p></header>",
        escape(&run.profile),
        escape(model),
        escape(&run.shape),
        escape(&report.started_at),
        escape(&duration(run.elapsed_s))
    );
}

/// The banners under the header: the thresholds' verdict, then what makes the results
/// suspect (a saturated generator) or bad (orders lost or made up, crashes).
pub fn banners(html: &mut String, report: &Report) {
    thresholds_banner(html, report);
    if report.generator.saturated {
        let _ = write!(
            html,
            "<div class=\"banner warn\"><b>Generator saturated</b>The load generator fell behind its schedule \
             (send lag p99 {}, max {}): less load was offered than intended, and these results understate it.</div>",
            opt_ms(report.generator.lag_p99_ms),
            opt_ms(report.generator.lag_max_ms)
        );
    }
    let r = &report.reconciliation;
    if r.available
        && (r.lost.unwrap_or(0) > 0 || r.ghost.unwrap_or(0) > 0 || r.duplicates.unwrap_or(0) > 0)
    {
        let _ = write!(
            html,
            "<div class=\"banner bad\"><b>Orders are not what the client was told</b>{} lost (acknowledged, not persisted) · \
             {} ghost (failed at the client, yet persisted) · {} duplicated</div>",
            opt_int(r.lost),
            opt_int(r.ghost),
            opt_int(r.duplicates)
        );
    }
    if report.server.crashes > 0 {
        let oom = report
            .server
            .crash_events
            .iter()
            .filter(|e| e.oom_killed)
            .count();
        let _ = write!(
            html,
            "<div class=\"banner bad\"><b>The server crashed {} time{}</b>{} by the OOM killer · {} restart{}</div>",
            int(report.server.crashes),
            if report.server.crashes == 1 { "" } else { "s" },
            int(oom as u64),
            int(report.server.restarts),
            if report.server.restarts == 1 { "" } else { "s" }
        );
    }
}

/// Which thresholds failed, with their values; or that all passed (nothing when the run
/// had none).
fn thresholds_banner(html: &mut String, report: &Report) {
    let failed: Vec<&super::ThresholdResult> =
        report.thresholds.iter().filter(|t| !t.passed).collect();
    if !failed.is_empty() {
        let list: Vec<String> = failed
            .iter()
            .map(|t| {
                format!(
                    "<code>{}</code> (value {})",
                    escape(&t.expression),
                    threshold_value(t.value)
                )
            })
            .collect();
        let _ = write!(
            html,
            "<div class=\"banner bad\"><b>{} of {} thresholds failed</b>{}</div>",
            failed.len(),
            report.thresholds.len(),
            list.join(" · ")
        );
    } else if !report.thresholds.is_empty() {
        let _ = write!(
            html,
            "<div class=\"banner ok\"><b>All {} thresholds passed</b></div>",
            report.thresholds.len()
        );
    }
}

/// One figure of the row at the top: a label, the value, a line under it.
fn tile(html: &mut String, class: &str, label: &str, value: String, sub: String) {
    let _ = write!(
        html,
        "<div class=\"kpi {class}\"><div class=\"l\">{}</div><div class=\"v\">{}</div><div class=\"s\">{}</div></div>",
        escape(label),
        escape(&value),
        escape(&sub)
    );
}

/// The row of figures at the top: the requests, the reconciliation, the server.
pub fn kpis(html: &mut String, report: &Report) {
    html.push_str("<section class=\"kpis\">");
    request_tiles(html, report);
    reconciliation_tiles(html, report);
    server_tiles(html, report);
    html.push_str("</section>");
}

/// Sent, acknowledged, failed, the p99 test time.
fn request_tiles(html: &mut String, report: &Report) {
    let q = &report.requests;
    let failed = q.failed();
    tile(
        html,
        "",
        "Sent",
        int(q.total),
        format!("{} tests/s", rate(report.throughput.requests_per_s)),
    );
    tile(
        html,
        if q.acknowledged > 0 { "good" } else { "" },
        "Acknowledged",
        int(q.acknowledged),
        format!(
            "{} · goodput {}/s",
            pct(q.acknowledged, q.total),
            rate(report.throughput.acknowledged_per_s)
        ),
    );
    tile(
        html,
        if failed > 0 { "bad" } else { "good" },
        "Failed",
        int(failed),
        pct(failed, q.total),
    );
    tile(
        html,
        "",
        "p99 test time",
        opt_ms(report.latency_ms.p99),
        format!("max {}", opt_ms(report.latency_ms.max)),
    );
}

/// Lost and ghost orders, or one tile saying the orders file was not read.
fn reconciliation_tiles(html: &mut String, report: &Report) {
    let r = &report.reconciliation;
    if !r.available {
        tile(
            html,
            "warn",
            "Reconciliation",
            "n/a".into(),
            "orders file not read".into(),
        );
        return;
    }
    let lost = r.lost.unwrap_or(0);
    let ghost = r.ghost.unwrap_or(0);
    tile(
        html,
        if lost > 0 { "bad" } else { "good" },
        "Lost",
        opt_int(r.lost),
        "acknowledged, not in the file".into(),
    );
    tile(
        html,
        if ghost > 0 { "bad" } else { "good" },
        "Ghost",
        opt_int(r.ghost),
        "failed, yet in the file".into(),
    );
}

/// The server's crashes and peak memory.
fn server_tiles(html: &mut String, report: &Report) {
    let s = &report.server;
    tile(
        html,
        if s.crashes > 0 {
            "bad"
        } else if s.spawned {
            "good"
        } else {
            ""
        },
        "Crashes",
        if s.spawned || s.crashes > 0 {
            int(s.crashes)
        } else {
            DASH.into()
        },
        if s.spawned {
            plural(s.restarts, "restart")
        } else {
            "server not spawned".into()
        },
    );
    tile(
        html,
        "",
        "Peak memory",
        opt_bytes(s.peak_memory_bytes),
        s.memory_limit_bytes
            .map(|l| format!("limit {}", fmt_bytes(l as f64)))
            .unwrap_or_else(|| "no limit".into()),
    );
}

fn kv(html: &mut String, key: &str, value_html: &str) {
    let _ = write!(html, "<dt>{}</dt><dd>{}</dd>", escape(key), value_html);
}

/// A command line for display: each argument escaped, quoted when it needs it.
fn command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What stops the run besides its profile: "1,000 iterations · 1m", or "none".
fn caps(run: &RunInfo) -> String {
    let mut caps = Vec::new();
    if let Some(i) = run.iterations_cap {
        caps.push(format!("{} iterations", int(i)));
    }
    if let Some(d) = fin(run.duration_cap_s) {
        caps.push(duration(d));
    }
    if caps.is_empty() {
        "none".to_string()
    } else {
        caps.join(" · ")
    }
}

/// How the spawned server was confined, with its limits, as HTML.
fn confinement_html(s: &ServerReport) -> String {
    let mut conf = escape(&s.confinement);
    let mut limits = Vec::new();
    if let Some(c) = fin(s.cpu_limit) {
        limits.push(format!("{} CPU", trim(c, 2)));
    }
    if let Some(m) = s.memory_limit_bytes {
        limits.push(fmt_bytes(m as f64));
    }
    if !limits.is_empty() {
        let _ = write!(conf, " · {}", escape(&limits.join(", ")));
    }
    conf
}

/// The run card: what was run against what, for how long, and how the server was
/// started and confined.
pub fn run_card(html: &mut String, report: &Report) {
    let run = &report.run;
    let s = &report.server;
    html.push_str("<section class=\"card\"><h2>Run</h2><dl class=\"kv\">");
    kv(html, "Profile", &format!("<b>{}</b>", escape(&run.profile)));
    kv(html, "Model", &escape(&run.model));
    kv(html, "Load shape", &escape(&run.shape));
    kv(
        html,
        "Target URL",
        &format!("<code>{}</code>", escape(&run.url)),
    );
    kv(
        html,
        "Client timeout",
        &escape(&fmt_ms(run.timeout_ms as f64)),
    );
    kv(
        html,
        "Connections",
        if run.new_connection_per_request {
            "a new connection per request"
        } else {
            "reused (keep-alive)"
        },
    );
    kv(html, "Caps", &escape(&caps(run)));
    kv(html, "Started", &escape(&report.started_at));
    kv(html, "Elapsed", &escape(&duration(run.elapsed_s)));
    match &run.server_command {
        Some(cmd) => kv(
            html,
            "Server command",
            &format!("<code>{}</code>", escape(&command_line(cmd))),
        ),
        None => kv(
            html,
            "Server",
            "<span class=\"muted\">already running (not started by the lab)</span>",
        ),
    }
    if s.spawned {
        kv(html, "Confinement", &confinement_html(s));
    }
    if let Some(f) = &run.orders_file {
        kv(html, "Orders file", &format!("<code>{}</code>", escape(f)));
    }
    html.push_str("</dl></section>");
}

fn row(html: &mut String, class: &str, label: &str, value: &str, extra: &str) {
    let _ = write!(
        html,
        "<tr class=\"{class}\"><th>{}</th><td class=\"n\">{}</td><td class=\"n muted\">{}</td></tr>",
        escape(label),
        escape(value),
        escape(extra)
    );
}

/// The counters card: the requests and how they failed, their latency, the rates, the
/// server.
pub fn summary_card(html: &mut String, report: &Report) {
    html.push_str("<section class=\"card\"><h2>Counters</h2><table class=\"counters\"><tbody>");
    count_rows(html, report);
    latency_rows(html, report);
    rate_rows(html, report);
    server_rows(html, report);
    html.push_str("</tbody></table></section>");
}

/// The requests: passed, failed, and each way of failing.
fn count_rows(html: &mut String, report: &Report) {
    let q = &report.requests;
    row(html, "", "Total tests", &int(q.total), "");
    row(
        html,
        "",
        "Passed tests (acknowledged)",
        &int(q.acknowledged),
        &pct(q.acknowledged, q.total),
    );
    row(
        html,
        if q.failed() > 0 { "bad" } else { "" },
        "Failed tests",
        &int(q.failed()),
        &pct(q.failed(), q.total),
    );
    let by_status: Vec<String> = q
        .by_status
        .iter()
        .map(|(k, v)| format!("{k} × {}", int(*v)))
        .collect();
    row(
        html,
        "sub",
        "HTTP error status",
        &int(q.failed_status),
        &by_status.join(", "),
    );
    row(
        html,
        "sub",
        &format!("timed out (> {})", fmt_ms(report.run.timeout_ms as f64)),
        &int(q.timed_out),
        &pct(q.timed_out, q.total),
    );
    row(
        html,
        "sub",
        "connection refused",
        &int(q.connect_errors),
        &pct(q.connect_errors, q.total),
    );
    row(
        html,
        "sub",
        "connection reset / other",
        &int(q.transport_errors),
        &pct(q.transport_errors, q.total),
    );
}

/// Test times: average, percentiles, and the acknowledged requests' own.
fn latency_rows(html: &mut String, report: &Report) {
    let l = &report.latency_ms;
    row(
        html,
        "sep",
        "Avg test time",
        &opt_ms(l.avg),
        &format!("min {}", opt_ms(l.min)),
    );
    row(
        html,
        "",
        "Test time p50 / p90",
        &format!("{} / {}", opt_ms(l.p50), opt_ms(l.p90)),
        "",
    );
    row(
        html,
        "",
        "Test time p99 / max",
        &format!("{} / {}", opt_ms(l.p99), opt_ms(l.max)),
        "",
    );
    row(
        html,
        "",
        "Acknowledged p50 / p99",
        &format!(
            "{} / {}",
            opt_ms(l.acknowledged_p50),
            opt_ms(l.acknowledged_p99)
        ),
        "",
    );
}

/// Completions and goodput per second.
fn rate_rows(html: &mut String, report: &Report) {
    row(
        html,
        "sep",
        "Tests/s",
        &rate(report.throughput.requests_per_s),
        "completed, any outcome",
    );
    row(
        html,
        "",
        "Goodput",
        &format!("{}/s", rate(report.throughput.acknowledged_per_s)),
        "acknowledged",
    );
}

/// The server's peaks against its limits, its crashes; or that the lab did not start it.
fn server_rows(html: &mut String, report: &Report) {
    let s = &report.server;
    if s.spawned {
        let mem_extra = match (s.peak_memory_bytes, s.memory_limit_bytes) {
            (Some(p), Some(l)) if l > 0 => {
                format!("of {} limit ({})", fmt_bytes(l as f64), pct(p, l))
            }
            (_, None) => "no limit".into(),
            _ => String::new(),
        };
        row(
            html,
            "sep",
            "Server peak memory",
            &opt_bytes(s.peak_memory_bytes),
            &mem_extra,
        );
        let cpu_extra = fin(s.cpu_limit)
            .map(|c| format!("limit {} CPU", trim(c, 2)))
            .unwrap_or_else(|| "no limit".into());
        row(
            html,
            "",
            "Server peak CPU",
            &fin(s.peak_cpu_percent)
                .map(|c| format!("{} %", trim(c, 0)))
                .unwrap_or_else(|| DASH.into()),
            &cpu_extra,
        );
        row(
            html,
            "",
            "Server CPU time",
            &fin(s.cpu_seconds)
                .map(|c| format!("{} s", trim(c, 1)))
                .unwrap_or_else(|| DASH.into()),
            &format!("peak threads {}", opt_int(s.peak_threads)),
        );
        row(
            html,
            if s.crashes > 0 { "bad" } else { "" },
            "Server crashes",
            &int(s.crashes),
            &plural(s.restarts, "restart"),
        );
    } else {
        let _ = write!(
            html,
            "<tr class=\"sep\"><th>Server</th><td colspan=\"2\" class=\"muted\">not started by the lab: memory, CPU and crashes were not observed</td></tr>"
        );
    }
}

pub fn reconciliation_card(html: &mut String, report: &Report) {
    let r = &report.reconciliation;
    html.push_str("<section class=\"card\"><h2>Reconciliation: what happened to every order</h2>");
    if !r.available {
        let _ = write!(
            html,
            "<div class=\"unavailable\"><b>Reconciliation unavailable.</b> {}<br><span class=\"muted\">Without the orders file \
             nobody can tell lost or ghost orders from the client's view alone: run with <code>--spawn-server</code> or give a \
             readable <code>--orders-file</code>.</span></div></section>",
            escape(
                r.unavailable_reason
                    .as_deref()
                    .unwrap_or("the orders file could not be read")
            )
        );
        return;
    }
    html.push_str(&reconciliation_bar(report).to_svg(false));
    let sent = report.requests.total;
    html.push_str(
        "<table><thead><tr><th>Class</th><th class=\"n\">Orders</th><th class=\"n\">of sent</th><th>Meaning</th></tr></thead><tbody>",
    );
    for (i, (name, color, v, meaning)) in reconciliation_classes(report).into_iter().enumerate() {
        let bad = i != 0 && i != 3 && v.unwrap_or(0) > 0;
        let _ = write!(
            html,
            "<tr class=\"{}{}\"><th><span class=\"sw\" style=\"background:{color}\"></span>{}</th><td class=\"n\">{}</td><td class=\"n muted\">{}</td><td>{}</td></tr>",
            if i == PARTITION { "sep" } else { "" },
            if bad { " bad" } else { "" },
            escape(name),
            opt_int(v),
            v.map(|v| pct(v, sent)).unwrap_or_default(),
            escape(meaning)
        );
    }
    html.push_str("</tbody></table><p class=\"muted\" style=\"margin:10px 0 0\">The first four classes partition the item codes sent; duplicates, unexpected orders and malformed lines are counted besides them.");
    if let Some(f) = &r.orders_file {
        let _ = write!(html, " Orders file: <code>{}</code>.", escape(f));
    }
    if let Some(s) = fin(r.settle_s) {
        let _ = write!(
            html,
            " Read after letting the server settle for {}.",
            escape(&duration(s))
        );
    }
    if let Some(q) = r.still_queued {
        let _ = write!(
            html,
            " Messaging: <b>{}</b> acknowledged order(s) not written are counted as <b>still queued</b>, not lost —              at most as many as messages were left ready in the queue when the drain deadline passed              (acknowledged = persisted + lost + still queued).",
            int(q)
        );
    }
    html.push_str("</p></section>");
}

pub fn charts_card(html: &mut String, report: &Report) {
    let x = time_axis(report);
    html.push_str("<section class=\"card\"><h2>Over time</h2>");
    let n = report.timeline.seconds.len();
    let _ = write!(
        html,
        "<p class=\"charthint\">One x axis for all charts: seconds since the load started. Hover a chart for the values at that time{}.</p>",
        if n > MAX_POINTS {
            "; long series are downsampled for drawing (lines with LTTB, which keeps peaks; stacked rates as averages)"
        } else {
            ""
        }
    );
    html.push_str(&throughput_chart(report, &x).to_svg(false));
    html.push_str(&latency_chart(report, &x).to_svg(false));
    if !report.latency_ms.note.is_empty() {
        let _ = write!(
            html,
            "<p class=\"note\">{}</p>",
            escape(&report.latency_ms.note)
        );
    }
    if report.timeline.server.is_empty() {
        let _ = write!(
            html,
            "<div class=\"unavailable\"><b>No server charts.</b> {}.</div>",
            escape(&no_server_note(report))
        );
    } else {
        html.push_str(&memory_chart(report, &x).to_svg(false));
        html.push_str(&cpu_chart(report, &x).to_svg(false));
    }
    if let Some(queue) = super::queue::chart(report, &x) {
        html.push_str(&queue.to_svg(false));
    }
    html.push_str("</section>");
}

pub fn steps_card(html: &mut String, report: &Report) {
    if report.steps.is_empty() {
        return;
    }
    html.push_str("<section class=\"card\"><h2>Steps</h2>");
    match report.knee_step.and_then(|k| report.steps.get(k)) {
        Some(k) => {
            let _ = write!(
                html,
                "<p class=\"muted\" style=\"margin-top:-4px\">The knee — the first step where p99 broke or throughput stopped growing — is step {} at {} users.</p>",
                k.index + 1,
                int(k.users)
            );
        }
        None => html.push_str("<p class=\"muted\" style=\"margin-top:-4px\">No knee: p99 held and throughput kept growing at every step.</p>"),
    }
    html.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Step</th><th class=\"n\">Users</th><th class=\"n\">From – to</th>\
         <th class=\"n\">Sent</th><th class=\"n\">Acknowledged</th><th class=\"n\">Failed</th><th class=\"n\">Timed out</th>\
         <th class=\"n\">Tests/s</th><th class=\"n\">Goodput/s</th><th class=\"n\">p50</th><th class=\"n\">p99</th><th></th></tr></thead><tbody>",
    );
    const MAX_ROWS: usize = 1000;
    for (i, s) in report.steps.iter().enumerate().take(MAX_ROWS) {
        let knee = s.knee || report.knee_step == Some(i);
        let _ = write!(
            html,
            "<tr class=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{} – {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            if knee { "knee" } else { "" },
            s.index + 1,
            int(s.users),
            escape(&at(s.start_s)),
            escape(&at(s.end_s)),
            int(s.sent),
            int(s.acknowledged),
            int(s.failed),
            int(s.timed_out),
            rate(s.requests_per_s),
            rate(s.acknowledged_per_s),
            opt_ms(s.p50_ms),
            opt_ms(s.p99_ms),
            if knee {
                "<span class=\"badge knee\">knee</span>"
            } else {
                ""
            }
        );
    }
    html.push_str("</tbody></table></div>");
    rows_left_out(html, report.steps.len(), MAX_ROWS, "more steps");
    html.push_str("</section>");
}

/// "… and N more (see report.json)." under a table cut at `shown` of `total` rows.
fn rows_left_out(html: &mut String, total: usize, shown: usize, what: &str) {
    if total > shown {
        let _ = write!(
            html,
            "<p class=\"muted\">… and {} {what} (see report.json).</p>",
            int((total - shown) as u64)
        );
    }
}

pub fn generator_card(html: &mut String, report: &Report) {
    let g = &report.generator;
    html.push_str("<section class=\"card\"><h2>Generator health</h2>");
    let _ = write!(
        html,
        "<p>{}</p>",
        if g.saturated {
            "<span class=\"badge fail\">saturated</span> the generator fell behind its schedule"
        } else {
            "<span class=\"badge pass\">kept its schedule</span>"
        }
    );
    html.push_str("<table><tbody>");
    row(
        html,
        "",
        "Send lag p50",
        &opt_ms(g.lag_p50_ms),
        "actual − intended send",
    );
    row(html, "", "Send lag p99", &opt_ms(g.lag_p99_ms), "");
    row(html, "", "Send lag max", &opt_ms(g.lag_max_ms), "");
    html.push_str("</tbody></table></section>");
}

fn threshold_value(v: Option<f64>) -> String {
    fin(v).map(|v| trim(v, 2)).unwrap_or_else(|| DASH.into())
}

pub fn thresholds_card(html: &mut String, report: &Report) {
    html.push_str("<section class=\"card\"><h2>Thresholds</h2>");
    if report.thresholds.is_empty() {
        html.push_str(
            "<p class=\"muted\">No thresholds were set (<code>--fail-on</code>).</p></section>",
        );
        return;
    }
    html.push_str("<table><thead><tr><th>Threshold</th><th class=\"n\">Value</th><th>Result</th></tr></thead><tbody>");
    for t in &report.thresholds {
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&t.expression),
            threshold_value(t.value),
            if t.passed {
                "<span class=\"badge pass\">pass</span>"
            } else {
                "<span class=\"badge fail\">fail</span>"
            }
        );
    }
    html.push_str("</tbody></table></section>");
}

pub fn crashes_card(html: &mut String, report: &Report) {
    let s = &report.server;
    if !s.spawned && s.crash_events.is_empty() {
        return;
    }
    html.push_str("<section class=\"card\"><h2>Crash events</h2>");
    if s.crash_events.is_empty() {
        html.push_str("<p class=\"muted\">The server did not crash.</p></section>");
        return;
    }
    html.push_str("<table><thead><tr><th class=\"n\">#</th><th class=\"n\">At</th><th>Cause</th><th>OOM kill</th></tr></thead><tbody>");
    const MAX_ROWS: usize = 200;
    for (i, e) in s.crash_events.iter().enumerate().take(MAX_ROWS) {
        let _ = write!(
            html,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            escape(&at(e.t_s)),
            escape(&e.cause),
            if e.oom_killed {
                "<span class=\"badge fail\">yes</span>"
            } else {
                "<span class=\"badge muted\">no</span>"
            }
        );
    }
    html.push_str("</tbody></table>");
    rows_left_out(html, s.crash_events.len(), MAX_ROWS, "more");
    html.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_for_a_shell() {
        assert_eq!(
            command_line(&["a".into(), "b c".into(), "it's".into()]),
            "a 'b c' 'it'\\''s'"
        );
    }
}
