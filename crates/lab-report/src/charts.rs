//! The report's charts, by name ([`Chart`]), each available inline for the page or as a
//! standalone SVG document (for the README), all on one time axis ([`time_axis`]) with the
//! crash and knee markers ([`super::markers`]) that every time chart carries.

use super::Report;
use super::axes::TimeAxis;
use super::format::fin;
use super::queue;
use super::reconciliation::reconciliation_bar;
use super::request_charts::{latency_chart, throughput_chart};
use super::server_charts::{cpu_chart, memory_chart, server_samples};

/// The charts of the report, each available as a standalone SVG document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Chart {
    /// Users (or offered rate) and completed requests per second by outcome.
    Throughput,
    /// Latency percentiles p50/p90/p99 per second.
    Latency,
    /// Server memory with the limit line.
    Memory,
    /// Server CPU in % of one CPU.
    Cpu,
    /// The reconciliation as a horizontal stacked bar.
    Reconciliation,
    /// Messaging runs: the queue's depth over time (ready, held by the worker, not yet
    /// written), redeliveries and broker restarts.
    Queue,
}

impl Chart {
    pub const ALL: [Chart; 6] = [
        Chart::Throughput,
        Chart::Latency,
        Chart::Memory,
        Chart::Cpu,
        Chart::Reconciliation,
        Chart::Queue,
    ];

    /// The charts `report` has: all but the queue's for a run that sampled no queue (an
    /// HTTP run), so `loadtest report --svg-dir` writes no empty queue chart.
    pub fn of(report: &Report) -> Vec<Chart> {
        let has_queue = queue::chart(report, &time_axis(report)).is_some();
        Chart::ALL
            .into_iter()
            .filter(|c| *c != Chart::Queue || has_queue)
            .collect()
    }

    /// A file name for the chart, e.g. `throughput.svg`.
    pub fn file_name(self) -> &'static str {
        match self {
            Chart::Throughput => "throughput.svg",
            Chart::Latency => "latency.svg",
            Chart::Memory => "memory.svg",
            Chart::Cpu => "cpu.svg",
            Chart::Reconciliation => "reconciliation.svg",
            Chart::Queue => "queue.svg",
        }
    }
}

/// One chart as a standalone SVG document (with its `xmlns`), e.g. to commit next to the
/// README.
pub fn render_chart_svg(report: &Report, chart: Chart) -> String {
    let x = time_axis(report);
    match chart {
        Chart::Throughput => throughput_chart(report, &x).to_svg(true),
        Chart::Latency => latency_chart(report, &x).to_svg(true),
        Chart::Memory => memory_chart(report, &x).to_svg(true),
        Chart::Cpu => cpu_chart(report, &x).to_svg(true),
        Chart::Reconciliation => reconciliation_bar(report).to_svg(true),
        Chart::Queue => queue::chart(report, &x)
            .unwrap_or_else(|| queue::no_queue_chart(&x))
            .to_svg(true),
    }
}

/// The x axis every time chart shares: from the load start to the last thing recorded.
pub fn time_axis(report: &Report) -> TimeAxis {
    let mut max = fin(Some(report.run.elapsed_s)).unwrap_or(0.0);
    if let Some(last) = report.timeline.seconds.last() {
        max = max.max(last.t_s as f64 + 1.0);
    }
    if let Some(t) = server_samples(report).last() {
        max = max.max(t.t_s);
    }
    for e in &report.server.crash_events {
        if e.t_s.is_finite() {
            max = max.max(e.t_s);
        }
    }
    TimeAxis::new(max.max(1.0))
}
