//! Several servers seen as one, for the report's `server` object: K API nodes behind
//! HAProxy, or K workers on one queue. Per-server figures are reported beside it (the
//! `balancer` object's nodes, `messaging.workers`).

use crate::report::CrashEvent;

use super::ServerObservations;

impl ServerObservations {
    /// Every server's crashes (named by host), restarts, CPU seconds summed, the highest
    /// peak memory; the first server's samples (the memory and CPU charts show the first
    /// host). `what`: how the confinement text names them ("nodes behind HAProxy");
    /// `lab`: who runs on the lab's cores ("the lab and HAProxy run on").
    pub fn merge(
        names: &[String],
        observations: Vec<ServerObservations>,
        what: &str,
        lab: &str,
    ) -> ServerObservations {
        let mut merged = observations.first().cloned().unwrap_or_default();
        merged.crashes = (names.iter().zip(&observations))
            .flat_map(|(name, o)| {
                o.crashes.iter().map(move |c| CrashEvent {
                    t_s: c.t_s,
                    cause: format!("{name}: {}", c.cause),
                    oom_killed: c.oom_killed,
                })
            })
            .collect();
        merged.crashes.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        merged.restarts = observations.iter().map(|o| o.restarts).sum();
        merged.cpu_seconds = observations.iter().map(|o| o.cpu_seconds).sum();
        merged.peak_memory_bytes = observations
            .iter()
            .filter_map(|o| o.peak_memory_bytes)
            .max();
        merged.stopped_cleanly = observations.iter().all(|o| o.stopped_cleanly);
        merged.confinement = confinement(names, &observations, what, lab);
        merged
    }
}

/// "K <what>: api0 <its confinement>, …; <lab> <cores>".
fn confinement(
    names: &[String],
    observations: &[ServerObservations],
    what: &str,
    lab: &str,
) -> String {
    // Each server's text ends with where the lab ran after that server started; the last
    // one is where it stayed.
    const LAB_PART: &str = "; the lab runs on ";
    let lab = observations
        .last()
        .and_then(|o| o.confinement.split_once(LAB_PART))
        .map(|(_, cores)| format!("; {lab} {cores}"))
        .unwrap_or_default();
    let each = (names.iter().zip(observations))
        .map(|(n, o)| {
            let own = o.confinement.split(LAB_PART).next().unwrap_or_default();
            format!("{n} {own}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("{} {what}: {each}{lab}", names.len())
}
