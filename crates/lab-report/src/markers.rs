//! The vertical markers every time chart carries: the server's crashes (each with its
//! cause in the tooltip), the faults the plan injected, and, on the request charts, the
//! knee of a step profile.

use super::Report;
use super::format::{at, int, opt_ms, rate};
use super::time_chart::Marker;

pub const C_CRASH: &str = "#d0021b";
pub const C_KNEE: &str = "#a16207";
pub const C_FAULT: &str = "#7c3aed";

/// Vertical markers for crashes and the knee, shared by the time charts.
pub fn markers(
    report: &Report,
    with_knee: bool,
) -> (Vec<Marker>, Vec<(String, &'static str, bool)>) {
    let mut out = Vec::new();
    let mut legend = Vec::new();
    if with_knee && let Some(step) = report.knee_step.and_then(|k| report.steps.get(k)) {
        out.push(Marker {
            x: step.start_s,
            label: format!("knee: {} users", step.users),
            tooltip: format!(
                "knee at {}: step {} with {} users (p99 {}, {} tests/s)",
                at(step.start_s),
                step.index + 1,
                step.users,
                opt_ms(step.p99_ms),
                rate(step.requests_per_s)
            ),
            color: C_KNEE,
            dashed: true,
        });
        legend.push(("knee".to_string(), C_KNEE, true));
    }
    // Hundreds of crash lines say "crashing all the time" as well as thousands do; beyond
    // a few, labels would only hide each other (each line keeps its tooltip).
    let events = &report.server.crash_events;
    let labelled = events.len() <= MAX_LABELLED_CRASHES;
    for (i, e) in events.iter().enumerate().take(500) {
        if !e.t_s.is_finite() {
            continue;
        }
        let label = if !labelled {
            String::new()
        } else if e.oom_killed {
            format!("crash {} · OOM", i + 1)
        } else {
            format!("crash {}", i + 1)
        };
        out.push(Marker {
            x: e.t_s,
            label,
            tooltip: format!("crash {} at {}: {}", i + 1, at(e.t_s), e.cause),
            color: C_CRASH,
            dashed: false,
        });
    }
    match events.len() {
        0 => {}
        1 => legend.push(("crash".to_string(), C_CRASH, false)),
        n => legend.push((format!("crashes ({})", int(n as u64)), C_CRASH, false)),
    }
    fault_markers(report, &mut out, &mut legend);
    (out, legend)
}

/// One dashed line per injected fault, labelled while there are few.
fn fault_markers(
    report: &Report,
    out: &mut Vec<Marker>,
    legend: &mut Vec<(String, &'static str, bool)>,
) {
    let faults = &report.faults;
    let labelled = faults.len() <= MAX_LABELLED_CRASHES;
    for f in faults.iter().filter(|f| f.at_s.is_finite()).take(500) {
        out.push(Marker {
            x: f.at_s,
            label: if labelled {
                format!("{} {}", f.action, f.target)
            } else {
                String::new()
            },
            tooltip: format!(
                "fault at {}: {} {}: {}",
                at(f.at_s),
                f.action,
                f.target,
                f.detail
            ),
            color: C_FAULT,
            dashed: true,
        });
    }
    match faults.len() {
        0 => {}
        1 => legend.push(("fault".to_string(), C_FAULT, true)),
        n => legend.push((format!("faults ({})", int(n as u64)), C_FAULT, true)),
    }
}

/// Crash lines beyond this many are drawn without a label.
pub const MAX_LABELLED_CRASHES: usize = 6;
