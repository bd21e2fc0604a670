//! The summary printed at the end of a run: the original's counters, the reconciliation
//! and, for step profiles, one row per step with the knee marked.

use std::fmt::Write;

use super::Report;

/// Bytes in binary units, e.g. "1.9 GiB" (the one formatter; confinement messages use it too).
pub use super::format::format_bytes as bytes;

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

/// Milliseconds to 0.01: for what is well under a millisecond when healthy (the
/// generator's lag), where whole milliseconds would print 0 for every good run.
fn ms_fine(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The summary as text, block by block: the run, the requests and their latency, the
/// server, the orders (and the queue), the steps, the thresholds.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    render_run(&mut out, r);
    render_requests(&mut out, r);
    render_defences(&mut out, r);
    render_server(&mut out, r);
    render_orders(&mut out, r);
    if let Some(m) = &r.messaging {
        render_messaging(&mut out, r, m);
    }
    render_steps(&mut out, r);
    render_thresholds(&mut out, r);
    out
}

/// The run: its profile, model and shape; the target and how it was reached.
fn render_run(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "\n== loadtest: {} profile ({} model): {}",
        r.run.profile, r.run.model, r.run.shape
    );
    let _ = writeln!(
        out,
        "   target {}  timeout {:.1}s  {}  elapsed {:.1}s",
        r.run.url,
        r.run.timeout_ms as f64 / 1000.0,
        if r.run.new_connection_per_request {
            "new connection per request"
        } else {
            "connections reused"
        },
        r.run.elapsed_s
    );
    let _ = writeln!(out);
}

/// The requests: counts, latency and rates.
fn render_requests(out: &mut String, r: &Report) {
    let q = &r.requests;
    let l = &r.latency_ms;
    let _ = writeln!(
        out,
        "tests      total {}  passed {}  failed {}  (status {}, timed out {}, connect {}, reset/transport {})",
        q.total,
        q.acknowledged,
        q.failed(),
        q.failed_status,
        q.timed_out,
        q.connect_errors,
        q.transport_errors
    );
    if !q.by_status.is_empty() {
        let statuses: Vec<String> = q
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        let _ = writeln!(out, "           failed statuses: {}", statuses.join(", "));
    }
    let _ = writeln!(
        out,
        "test time  avg {} ms  p50 {}  p90 {}  p99 {}  max {} ms",
        ms(l.avg),
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.max)
    );
    let _ = writeln!(out, "           ({})", l.note);
    let _ = writeln!(
        out,
        "rate       {:.1} tests/s  goodput {:.1} acknowledged/s",
        r.throughput.requests_per_s, r.throughput.acknowledged_per_s
    );
}

/// What the defences did: how fast refusals were answered, the goodput's recovery after
/// a spike, the client's retries; and the generator's own lag.
fn render_defences(out: &mut String, r: &Report) {
    let l = &r.latency_ms;
    if l.shed_p99.is_some() {
        let _ = writeln!(
            out,
            "shed       503 answered in p50 {} ms, p99 {} ms",
            ms(l.shed_p50),
            ms(l.shed_p99)
        );
    }
    if let Some(pre) = r.throughput.pre_spike_acknowledged_per_s {
        let back = r.throughput.recovery_s.map_or_else(
            || "never back to 95 % of it".to_string(),
            |t| format!("back to ≥ 95 % of it {t:.0} s after the spike"),
        );
        let _ = writeln!(out, "spike      goodput before {pre:.1}/s, {back}");
    }
    let t = &r.retries;
    if t.enabled {
        let _ = writeln!(
            out,
            "retries    up to {} attempts: {:.2} attempts/request (max {}), retry budget denied {}, replays {}",
            t.max_attempts,
            t.attempts_per_request.unwrap_or(0.0),
            t.attempts_max,
            t.budget_denied,
            t.replayed
        );
    }
    let g = &r.generator;
    let cpu = match g.cpu_seconds {
        Some(s) if r.requests.total > 0 => format!(
            "  CPU {s:.1} s ({:.0} µs per request)",
            s * 1e6 / r.requests.total as f64
        ),
        Some(s) => format!("  CPU {s:.1} s"),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "generator  lag p50 {} ms  p99 {} ms  max {} ms{cpu}{}",
        ms_fine(g.lag_p50_ms),
        ms_fine(g.lag_p99_ms),
        ms_fine(g.lag_max_ms),
        if g.saturated {
            "  GENERATOR SATURATED: the offered load was lower than planned"
        } else {
            ""
        }
    );
}

/// The server's peaks, confinement, crashes and restarts, when the lab spawned it.
fn render_server(out: &mut String, r: &Report) {
    let s = &r.server;
    if s.spawned {
        let limit = s
            .memory_limit_bytes
            .map(|b| format!(" of {} limit", bytes(b)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "server     peak memory {}{}  peak CPU {}%  CPU time {}s  threads {}  confinement {}",
            s.peak_memory_bytes.map_or_else(|| "-".into(), bytes),
            limit,
            s.peak_cpu_percent
                .map_or_else(|| "-".into(), |c| format!("{c:.0}")),
            s.cpu_seconds
                .map_or_else(|| "-".into(), |c| format!("{c:.1}")),
            count(s.peak_threads),
            s.confinement
        );
        let _ = writeln!(
            out,
            "           crashes {}  restarts {}",
            s.crashes, s.restarts
        );
        for c in &s.crash_events {
            let _ = writeln!(out, "           ✗ {:>6.1}s  {}", c.t_s, c.cause);
        }
    } else {
        let _ = writeln!(
            out,
            "server     not spawned by the lab: no memory/CPU samples, crashes unknown"
        );
    }
}

/// The orders file reconciled against the acknowledgements.
fn render_orders(out: &mut String, r: &Report) {
    let c = &r.reconciliation;
    if c.available {
        let _ = writeln!(
            out,
            "orders     acknowledged & persisted {}  LOST {}  GHOST {}  failed & absent {}  \
             duplicates {}  unexpected {}  malformed lines {}",
            count(c.acknowledged_persisted),
            count(c.lost),
            count(c.ghost),
            count(c.failed_absent),
            count(c.duplicates),
            count(c.unexpected),
            count(c.malformed_lines)
        );
    } else {
        let _ = writeln!(
            out,
            "orders     not reconciled: {}",
            c.unavailable_reason.as_deref().unwrap_or("no orders file")
        );
    }
}

/// One row per step, the knee marked (step profiles only).
fn render_steps(out: &mut String, r: &Report) {
    if !r.steps.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "step  users   start    sent      ok  failed  timeout  tests/s  goodput/s   p50 ms   p99 ms"
        );
        for st in &r.steps {
            let _ = writeln!(
                out,
                "{:>4}  {:>5}  {:>5.0}s  {:>6}  {:>6}  {:>6}  {:>7}  {:>7.1}  {:>9.1}  {:>7}  {:>7}{}",
                st.index,
                st.users,
                st.start_s,
                st.sent,
                st.acknowledged,
                st.failed,
                st.timed_out,
                st.requests_per_s,
                st.acknowledged_per_s,
                ms(st.p50_ms),
                ms(st.p99_ms),
                if st.knee { "  ← knee" } else { "" }
            );
        }
    }
}

/// Each `--fail-on` threshold and its verdict.
fn render_thresholds(out: &mut String, r: &Report) {
    if !r.thresholds.is_empty() {
        let _ = writeln!(out);
        for t in &r.thresholds {
            let value = t
                .value
                .map_or_else(|| "not measured".into(), |v| format!("{v}"));
            let verdict = if t.passed { "ok    " } else { "FAILED" };
            let _ = writeln!(
                out,
                "threshold {verdict} fail-on {}  (value {value})",
                t.expression
            );
        }
    }
}

/// The messaging block: what "acknowledged" could not say (when the orders were
/// written), the queue, and the broker's faults.
fn render_messaging(out: &mut String, r: &Report, m: &super::MessagingReport) {
    let c = &r.reconciliation;
    if let Some(q) = c.still_queued {
        let _ = writeln!(
            out,
            "           still queued {q} (acknowledged, not written, still in the queue when the drain deadline passed)"
        );
    }
    let _ = writeln!(
        out,
        "messaging  delivery {}  publish p50 {} ms p99 {} ms{}  end-to-end p50 {} ms p99 {} ms ({} matched)",
        m.delivery,
        ms(m.publish_latency_ms.p50),
        ms(m.publish_latency_ms.p99),
        match m.connect_ms {
            Some(c) => format!(" (connected in {c:.0} ms before the load)"),
            None if r.run.new_connection_per_request => " (a connection per publish)".to_owned(),
            // A report written before the lab connected ahead of the load.
            None => String::new(),
        },
        ms(m.end_to_end_ms.p50),
        ms(m.end_to_end_ms.p99),
        m.end_to_end_matched
    );
    let drain = match m.drain_s {
        Some(s) => format!("drained in {s:.1}s"),
        None => format!("NOT drained within {:.0}s", m.drain_timeout_s),
    };
    let _ = writeln!(
        out,
        "queue      {drain}  drain rate {}  last order written at {}  max depth {}  still ready {}",
        m.drain_rate_per_s
            .map_or_else(|| "-".into(), |v| format!("{v:.1}/s")),
        m.last_written_s
            .map_or_else(|| "-".into(), |v| format!("{v:.1}s")),
        count(m.queue_depth_max),
        count(m.still_ready)
    );
    let _ = writeln!(
        out,
        "           redelivered {}  dead-lettered {}  lost by the worker {}  broker restarts {}",
        m.redelivered,
        m.dead_lettered,
        m.worker_lost,
        r.broker.as_ref().map_or(0, |b| b.restarts)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_support::sample_report;

    #[test]
    fn binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2 << 30), "2.0 GiB");
        assert_eq!(bytes(150_000_000), "143.1 MiB");
    }

    #[test]
    fn the_summary_carries_the_originals_counters_and_the_reconciliation() {
        let text = render(&sample_report());
        for part in [
            "total 100  passed 60  failed 40",
            "timed out 10",
            "p99 29000",
            "10.0 tests/s",
            "peak memory 2.0 GiB of 2.0 GiB limit",
            "crashes 1",
            "OOM-killed",
            "LOST 0  GHOST 3",
            "p99 4 ms",
            "1.05 attempts/request",
            "back to ≥ 95 % of it 2 s after",
        ] {
            assert!(text.contains(part), "{part:?} missing from:\n{text}");
        }
    }
}
