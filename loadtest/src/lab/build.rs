//! The report of a lab run from what it measured: [`build_report`] assembles it, and
//! [`write_report_files`] writes `report.json` and `report.html`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::options::LabOptions;
use crate::profile::RateProfile;
use crate::report::{self, Reconciliation, Report, RetryStats, RunInfo, ServerReport, Timeline};
use crate::runner::Load;
use crate::server::ServerObservations;
use crate::stats::{Aggregates, spike_recovery};

pub(super) fn build_report(
    options: &LabOptions,
    started_at: String,
    server_command: Option<Vec<String>>,
    a: Aggregates,
    observations: Option<ServerObservations>,
    reconciliation: Reconciliation,
) -> Report {
    let plan = &options.plan;
    let (model, shape) = match plan.load {
        Load::Closed { profile, think } => {
            let mut shape = profile.describe();
            if !think.is_zero() {
                shape.push_str(&format!(", think {}", humantime::format_duration(think)));
            }
            ("closed", shape)
        }
        Load::Open(profile) => ("open", profile.describe()),
    };
    let (server, server_samples) = match observations {
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
    };
    let retries = RetryStats {
        enabled: plan.client.retries > 0,
        max_attempts: plan.client.retries + 1,
        attempts_total: a.attempts.total,
        attempts_per_request: (a.counts.total > 0)
            .then(|| a.attempts.total as f64 / a.counts.total as f64),
        attempts_max: a.attempts.max,
        budget_denied: a.attempts.budget_denied,
        replayed: a.attempts.replayed,
    };
    let mut throughput = a.throughput;
    if let Load::Open(RateProfile {
        spike: Some(spike), ..
    }) = plan.load
    {
        let start = spike.start.as_secs_f64();
        let (pre, recovery) =
            spike_recovery(&a.seconds, start, start + spike.duration.as_secs_f64());
        throughput.pre_spike_acknowledged_per_s = pre;
        throughput.recovery_s = recovery;
    }
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
