//! The report of a lab run from what it measured: [`build_report`] assembles it from every
//! phase's findings, and [`write_report_files`] writes `report.json` and `report.html`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::deploy::Deployment;
use super::load::Loaded;
use super::options::LabOptions;
use super::queue::{MessagingOutcome, broker_report, worker_reports};
use super::settle::Settled;
use crate::cluster::Watcher;
use crate::profile::RateProfile;
use crate::report::SecondRow;
use crate::report::{self, Reconciliation, Report, RetryStats, RunInfo, ServerReport, Timeline};
use crate::runner::Load;
use crate::server::ServerObservations;
use crate::stats::{Aggregates, spike_recovery};
use crate::threshold;

/// The report from what each phase found, thresholds evaluated.
pub(super) fn build_report(
    options: &LabOptions,
    deployment: &Deployment,
    loaded: Loaded,
    settled: Settled,
    messaging: Option<MessagingOutcome>,
    reconciliation: Reconciliation,
) -> Report {
    let mut report = base_report(
        options,
        loaded.started_at,
        deployment.server_command.clone(),
        loaded.aggregates,
        settled.observations,
        reconciliation,
    );
    report.balancer = (settled.balancer).or_else(|| loaded.watcher.map(Watcher::finish));
    report.topology = Some(loaded.topology);
    report.faults = settled.faults;
    if let Some(m) = messaging {
        report.run.transport = "amqp".into();
        if let Some((url, _)) = &options.plan.client.amqp {
            report.run.url = url.to_string();
        }
        let workers = worker_reports(&settled.per_server, &m.written_by_worker);
        report.messaging = Some(report::MessagingReport {
            workers,
            ..m.report
        });
        report.broker =
            (!deployment.brokers.is_empty()).then(|| broker_report(&deployment.brokers));
        report.timeline.queue = m.samples;
    }
    report.thresholds = threshold::evaluate(&report, &options.thresholds);
    report
}

/// The report's HTTP-side objects: the run, the requests, the server.
fn base_report(
    options: &LabOptions,
    started_at: String,
    server_command: Option<Vec<String>>,
    a: Aggregates,
    observations: Option<ServerObservations>,
    reconciliation: Reconciliation,
) -> Report {
    let plan = &options.plan;
    let (model, shape) = load_shape(plan.load);
    let (server, server_samples) = server_report(observations);
    let retries = retry_stats(plan.client.retries, &a);
    let mut throughput = a.throughput;
    (
        throughput.pre_spike_acknowledged_per_s,
        throughput.recovery_s,
    ) = spike_figures(plan.load, &a.seconds).unwrap_or_default();
    Report {
        schema_version: report::SCHEMA_VERSION,
        tool: format!("loadtest {}", env!("CARGO_PKG_VERSION")),
        started_at,
        run: RunInfo {
            profile: options.profile_name.clone(),
            model: model.into(),
            shape,
            url: plan.client.base_url.to_string(),
            timeout_ms: plan.client.timeout.as_millis() as u64,
            new_connection_per_request: plan.client.new_connection_per_request,
            iterations_cap: plan.iterations,
            duration_cap_s: plan.duration.map(|d| d.as_secs_f64()),
            elapsed_s: a.elapsed.as_secs_f64(),
            transport: "http".into(),
            server_command,
            orders_file: reconciliation.orders_file.clone(),
        },
        requests: a.counts,
        latency_ms: a.latency,
        throughput,
        generator: a.generator,
        steps: a.steps,
        knee_step: a.knee_step,
        reconciliation,
        server,
        timeline: Timeline {
            seconds: a.seconds,
            server: server_samples,
            queue: Vec::new(),
        },
        thresholds: Vec::new(),
        retries,
        messaging: None,
        broker: None,
        balancer: None,
        topology: None,
        faults: Vec::new(),
    }
}

/// The report's `run.model` and `run.shape`.
fn load_shape(load: Load) -> (&'static str, String) {
    match load {
        Load::Closed { profile, think } => {
            let mut shape = profile.describe();
            if !think.is_zero() {
                shape.push_str(&format!(", think {}", humantime::format_duration(think)));
            }
            ("closed", shape)
        }
        Load::Open(profile) => ("open", profile.describe()),
    }
}

/// An open-model spike's before-the-spike rate and recovery time, from the per-second rows.
fn spike_figures(load: Load, seconds: &[SecondRow]) -> Option<(Option<f64>, Option<f64>)> {
    let Load::Open(RateProfile {
        spike: Some(spike), ..
    }) = load
    else {
        return None;
    };
    let start = spike.start.as_secs_f64();
    Some(spike_recovery(
        seconds,
        start,
        start + spike.duration.as_secs_f64(),
    ))
}

/// The report's `server` object and its samples: what the lab saw of the servers it
/// spawned, or "unknown" for a remote one.
fn server_report(
    observations: Option<ServerObservations>,
) -> (ServerReport, Vec<report::ServerSample>) {
    match observations {
        Some(o) => (
            ServerReport {
                spawned: true,
                crashes: o.crashes.len() as u64,
                restarts: o.restarts,
                peak_memory_bytes: o.peak_memory_bytes,
                memory_limit_bytes: o.memory_limit_bytes,
                cpu_limit: o.cpu_limit,
                peak_cpu_percent: peak_cpu_percent(&o.samples, CPU_PEAK_WINDOW),
                cpu_seconds: o.cpu_seconds,
                peak_threads: o.samples.iter().filter_map(|s| s.threads).max(),
                confinement: o.confinement.clone(),
                crash_events: o.crashes.clone(),
            },
            o.samples,
        ),
        None => (
            ServerReport {
                confinement: "unknown (not spawned by the lab)".into(),
                ..Default::default()
            },
            Vec::new(),
        ),
    }
}

/// The report's `retries` object: `retries` is `--retries`.
fn retry_stats(retries: u32, a: &Aggregates) -> RetryStats {
    RetryStats {
        enabled: retries > 0,
        max_attempts: retries + 1,
        attempts_total: a.attempts.total,
        attempts_per_request: (a.counts.total > 0)
            .then(|| a.attempts.total as f64 / a.counts.total as f64),
        attempts_max: a.attempts.max,
        budget_denied: a.attempts.budget_denied,
        replayed: a.attempts.replayed,
    }
}

/// The window CPU use is averaged over before taking its peak. A CPU quota is enforced
/// per 100 ms period, so single 250 ms samples alias between 80 % and 120 % of a 1-CPU
/// limit; over a second the figure is what the limit really allows.
const CPU_PEAK_WINDOW: Duration = Duration::from_secs(1);

/// Highest average CPU use over any run of consecutive samples spanning `window`.
fn peak_cpu_percent(samples: &[report::ServerSample], window: Duration) -> Option<f64> {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| s.cpu_percent.map(|c| (s.t_s, c)))
        .collect();
    let mut peak: Option<f64> = None;
    for start in 0..points.len() {
        let mut sum = 0.0;
        for (n, &(t, cpu)) in points[start..].iter().enumerate() {
            sum += cpu;
            if t - points[start].0 >= window.as_secs_f64() - 1e-9 {
                let mean = sum / (n + 1) as f64;
                peak = Some(peak.map_or(mean, |p: f64| p.max(mean)));
                break;
            }
        }
    }
    // A run shorter than the window: its overall mean.
    peak.or_else(|| {
        (!points.is_empty()).then(|| points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64)
    })
}

/// Writes `report.json` and `report.html` (the CSV was streamed during the run).
pub fn write_report_files(report: &Report, dir: &Path) -> anyhow::Result<()> {
    let json_path = dir.join("report.json");
    let json = serde_json::to_string_pretty(report).context("cannot serialise the report")?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, report::html::render(report))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, cpu: f64) -> report::ServerSample {
        report::ServerSample {
            t_s,
            cpu_percent: Some(cpu),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_peak_is_averaged_over_a_second() {
        // A 1-CPU quota seen through 250 ms samples: 120, 80, 120, 80, ...
        let samples: Vec<_> = (0..12)
            .map(|i| sample(i as f64 * 0.25, if i % 2 == 0 { 120.0 } else { 80.0 }))
            .collect();
        let peak = peak_cpu_percent(&samples, CPU_PEAK_WINDOW).unwrap();
        assert!((100.0..=104.0).contains(&peak), "{peak}");
        assert_eq!(
            peak_cpu_percent(&[sample(0.0, 50.0)], CPU_PEAK_WINDOW),
            Some(50.0)
        );
        assert_eq!(peak_cpu_percent(&[], CPU_PEAK_WINDOW), None);
    }
}
