//! The messaging half on the report page: a card with what the queue did (publish and
//! end-to-end latency, the drain, redeliveries, dead letters, broker restarts) and the
//! queue-depth chart drawn beside the server's memory and CPU charts, on the same time
//! axis. Only for `--transport amqp` runs; HTTP reports are unchanged.

use std::fmt::Write;

use super::axes::{Axis, TimeAxis, Unit};
use super::downsampling::{MAX_POINTS, bucket_ranges, segments};
use super::format::{escape, trim};
use super::time_chart::{HoverBand, LineSeries, Marker, TimeChart};
use super::{MessagingReport, Percentiles, QueueSample, Report};

const C_READY: &str = "#2f6db5";
const C_AT_WORKER: &str = "#e07b00";
const C_OUTSTANDING: &str = "#6b7280";
const C_DEAD: &str = "#c0392b";
const C_RESTART: &str = "#7c3aed";
const C_REDELIVERED: &str = "#0f766e";

fn opt(v: Option<f64>, unit: &str) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "—".into(), |v| format!("{} {unit}", trim(v, 1)))
}

/// One row of the messaging card: what, its value, what it means.
type Row = (&'static str, String, &'static str);

/// The messaging card (nothing for HTTP runs): the latencies, the drain, the faults.
pub fn card(html: &mut String, report: &Report) {
    let Some(m) = &report.messaging else { return };
    html.push_str("<section class=\"card\"><h2>The queue (messaging)</h2><table><tbody>");
    let rows = latency_rows(report, m)
        .into_iter()
        .chain(drain_rows(m))
        .chain(fault_rows(report, m));
    for (k, v, meaning) in rows {
        let _ = write!(
            html,
            "<tr><th>{}</th><td class=\"n\">{}</td><td class=\"muted\">{}</td></tr>",
            escape(k),
            escape(&v),
            escape(meaning)
        );
    }
    html.push_str("</tbody></table></section>");
}

/// "p50 / p99", in milliseconds.
fn p50_p99(p: &Percentiles) -> String {
    format!("{} / {}", opt(p.p50, "ms"), opt(p.p99, "ms"))
}

fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| v.to_string())
}

/// The delivery mode, the publish and end-to-end latencies, and the connection.
fn latency_rows(report: &Report, m: &MessagingReport) -> Vec<Row> {
    vec![
        (
            "delivery",
            m.delivery.clone(),
            "both sides: publisher and worker",
        ),
        (
            "publish latency p50 / p99",
            p50_p99(&m.publish_latency_ms),
            "until the publish returned (faithful) or the broker confirmed it (reliable)",
        ),
        (
            "connection",
            match m.connect_ms {
                Some(c) => format!("opened in {} before the load", opt(Some(c), "ms")),
                None if report.run.new_connection_per_request => "one per publish".to_owned(),
                // A report written before the lab connected ahead of the load.
                None => "one, opened by the first publish".to_owned(),
            },
            "one connection opened before the clock starts, as a long-running publisher does at \
             start-up; or, as the original, one per publish, whose handshake is then part of its latency",
        ),
        (
            "end-to-end p50 / p99",
            p50_p99(&m.end_to_end_ms),
            "from the publish's start to its line in the orders file, as the lab saw it (±25 ms)",
        ),
    ]
}

/// The drain after the load, and what the queue held.
fn drain_rows(m: &MessagingReport) -> Vec<Row> {
    vec![
        (
            "drain",
            match m.drain_s {
                Some(s) => format!("{} s", trim(s, 1)),
                None => format!("not within {} s", trim(m.drain_timeout_s, 0)),
            },
            "from the load's end until the queue was empty and everything written",
        ),
        (
            "drain rate",
            opt(m.drain_rate_per_s, "orders/s"),
            "orders written per second while the queue was not empty after the load",
        ),
        (
            "last order written",
            opt(m.last_written_s, "s"),
            "since the load started",
        ),
        (
            "max queue depth",
            count(m.queue_depth_max),
            "ready in the queue plus held by the worker, at any sample",
        ),
        (
            "still ready at the end",
            count(m.still_ready),
            "messages left in the queue: acknowledged orders up to this many are still queued, not lost",
        ),
    ]
}

/// Redeliveries, dead letters, the worker's losses and the broker's restarts.
fn fault_rows(report: &Report, m: &MessagingReport) -> Vec<Row> {
    let mut rows = vec![
        (
            "redelivered",
            m.redelivered.to_string(),
            "deliveries the broker flagged redelivered",
        ),
        (
            "dead-lettered",
            m.dead_lettered.to_string(),
            "messages in the dead-letter queue",
        ),
        (
            "lost by the worker",
            m.worker_lost.to_string(),
            "faithful: auto-acknowledged, never written (the worker's own count)",
        ),
    ];
    if let Some(b) = &report.broker {
        rows.push((
            "broker restarts",
            b.restarts.to_string(),
            "injected (--restart-broker-at)",
        ));
    }
    rows
}

/// The queue-depth chart, when the run sampled a queue: the depths on the left axis,
/// the redeliveries so far on the right, the broker's restarts marked.
pub fn chart(report: &Report, x: &TimeAxis) -> Option<TimeChart> {
    let m: &MessagingReport = report.messaging.as_ref()?;
    let samples: Vec<&QueueSample> = report
        .timeline
        .queue
        .iter()
        .filter(|s| s.t_s.is_finite())
        .collect();
    if samples.is_empty() {
        return None;
    }
    let mut lines = depth_lines(&samples);
    // Redeliveries so far on the right axis: each rise is a worker's death (or a lost
    // connection) handing its unacknowledged messages back.
    let redelivered_max = samples.iter().map(|s| s.redelivered).max().unwrap_or(0);
    let right = (redelivered_max > 0).then(|| {
        let mut l = line(
            &samples,
            "redelivered (so far, right axis)",
            C_REDELIVERED,
            Some("1 3"),
            &|s| Some(s.redelivered),
        );
        l.right_axis = true;
        lines.push(l);
        Axis::linear("redelivered", redelivered_max as f64 * 1.1, Unit::Count)
    });
    let max = samples
        .iter()
        .flat_map(|s| [s.ready, s.at_worker, Some(s.outstanding), s.dead_lettered])
        .flatten()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let markers = restart_markers(report);
    let marker_legend = if markers.is_empty() {
        Vec::new()
    } else {
        vec![("broker restart".to_string(), C_RESTART, true)]
    };
    Some(TimeChart {
        title: format!("Queue depth ({} delivery)", m.delivery),
        height: 280.0,
        x: x.clone(),
        left: Axis::linear("messages", max * 1.1, Unit::Count),
        right,
        area: None,
        lines,
        rules: Vec::new(),
        markers,
        marker_legend,
        hover: hover(&samples),
        note: None,
    })
}

/// One of the queue's series as a line on the left axis, broken where samples are more
/// than 2 s apart.
fn line(
    samples: &[&QueueSample],
    name: &str,
    color: &'static str,
    dash: Option<&'static str>,
    f: &dyn Fn(&QueueSample) -> Option<u64>,
) -> LineSeries {
    let points = samples.iter().map(|s| (s.t_s, f(s).map(|v| v as f64)));
    LineSeries::new(name, color, dash, segments(points, Some(2.0), MAX_POINTS))
}

/// Ready, held by the worker, acknowledged but not written; dead-lettered when any were.
fn depth_lines(samples: &[&QueueSample]) -> Vec<LineSeries> {
    let mut lines = vec![
        line(samples, "ready in the queue", C_READY, None, &|s| s.ready),
        line(samples, "held by the worker", C_AT_WORKER, None, &|s| {
            s.at_worker
        }),
        line(
            samples,
            "acknowledged, not written yet",
            C_OUTSTANDING,
            Some("5 3"),
            &|s| Some(s.outstanding),
        ),
    ];
    if samples.iter().any(|s| s.dead_lettered.unwrap_or(0) > 0) {
        lines.push(line(samples, "dead-lettered", C_DEAD, Some("2 2"), &|s| {
            s.dead_lettered
        }));
    }
    lines
}

/// A marker at each restart of the broker, its cause as the tooltip.
fn restart_markers(report: &Report) -> Vec<Marker> {
    report
        .broker
        .iter()
        .flat_map(|b| &b.restart_events)
        .filter(|e| e.t_s.is_finite())
        .map(|e| Marker {
            x: e.t_s,
            label: "broker restart".into(),
            tooltip: e.cause.clone(),
            color: C_RESTART,
            dashed: true,
        })
        .collect()
}

/// Up to 60 hover columns, each with the queue's figures at its last sample.
fn hover(samples: &[&QueueSample]) -> Vec<HoverBand> {
    bucket_ranges(samples.len(), 60)
        .into_iter()
        .map(|r| {
            let s = samples[r.end - 1];
            let x0 = samples[r.start].t_s;
            let x1 = samples.get(r.end).map_or(s.t_s + 0.25, |n| n.t_s);
            HoverBand {
                x0,
                x1,
                text: format!(
                    "t = {} s\nready {} · held {} · not written {}\nwritten {} · redelivered {}",
                    trim(s.t_s, 1),
                    count(s.ready),
                    count(s.at_worker),
                    s.outstanding,
                    s.written,
                    s.redelivered
                ),
            }
        })
        .collect()
}

/// The queue chart's place for a run that sampled no queue: the note says why it is empty.
pub fn no_queue_chart(x: &TimeAxis) -> TimeChart {
    TimeChart {
        title: "Queue depth".into(),
        height: 280.0,
        x: x.clone(),
        left: Axis::linear("messages", 1.0, Unit::Count),
        right: None,
        area: None,
        lines: Vec::new(),
        rules: Vec::new(),
        markers: Vec::new(),
        marker_legend: Vec::new(),
        hover: Vec::new(),
        note: Some("no queue: not a messaging run (--transport amqp)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_support::sample_report;
    use crate::{BrokerReport, CrashEvent, MessagingReport};

    #[test]
    fn a_messaging_report_gets_its_card_and_chart_and_an_http_one_does_not() {
        let http = sample_report();
        let page = crate::html::render(&http);
        assert!(!page.contains("Queue depth") && !page.contains("The queue (messaging)"));

        let mut r = sample_report();
        r.run.transport = "amqp".into();
        r.messaging = Some(MessagingReport {
            delivery: "reliable".into(),
            drain_s: Some(3.5),
            redelivered: 7,
            ..Default::default()
        });
        r.broker = Some(BrokerReport {
            spawned: true,
            restarts: 1,
            restart_events: vec![CrashEvent {
                t_s: 2.0,
                cause: "injected: <restart>".into(),
                oom_killed: false,
            }],
            nodes: Vec::new(),
        });
        r.timeline.queue = (0..20)
            .map(|i| QueueSample {
                t_s: i as f64 * 0.25,
                ready: Some(20 - i),
                at_worker: Some(2),
                outstanding: 22 - i,
                written: i,
                redelivered: i / 4,
                dead_lettered: Some(0),
            })
            .collect();
        let page = crate::html::render(&r);
        assert!(
            page.contains("Queue depth (reliable delivery)"),
            "the chart"
        );
        assert!(page.contains("The queue (messaging)"), "the card");
        assert!(page.contains("redelivered (so far, right axis)"));
        assert!(
            page.contains("injected: &lt;restart&gt;"),
            "escaped marker text"
        );
        assert!(!page.contains("<restart>"));
    }

    #[test]
    fn the_card_and_the_summary_say_how_the_publisher_connected() {
        let mut r = sample_report();
        r.run.transport = "amqp".into();
        let with = |r: &mut Report, connect_ms: Option<f64>, per_publish: bool| {
            r.run.new_connection_per_request = per_publish;
            r.messaging = Some(MessagingReport {
                delivery: "reliable".into(),
                connect_ms,
                ..Default::default()
            });
            (crate::html::render(r), crate::summary::render(r))
        };
        let (page, summary) = with(&mut r, Some(12.5), false);
        assert!(page.contains("opened in 12.5 ms before the load"), "{page}");
        assert!(
            summary.contains("(connected in 12 ms before the load)"),
            "{summary}"
        );
        let (page, summary) = with(&mut r, None, true);
        assert!(page.contains("one per publish"));
        assert!(summary.contains("(a connection per publish)"), "{summary}");
        // A report from before the lab connected ahead: no claim either way.
        let (page, summary) = with(&mut r, None, false);
        assert!(page.contains("one, opened by the first publish"));
        assert!(
            summary.contains("publish p50 - ms p99 - ms  end-to-end"),
            "{summary}"
        );
    }
}
