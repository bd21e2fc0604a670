//! One lab run as a pipeline of phases, each in a module of its own:
//!
//! 1. **deploy** ([`deploy`]): the broker, then the API or worker (one, or K nodes behind
//!    HAProxy), or nothing for a remote target; the orders file marked.
//! 2. **load and fault plan** ([`load`]): the client built, the clock started, the load
//!    driven and recorded ([`recorder`]) while the fault plan runs and the watchers sample
//!    the queue ([`queue`]) and the balancer.
//! 3. **drain and settle** ([`settle`]): the queue drained, the fault plan stopped, the
//!    servers stopped so their in-flight orders reach the file.
//! 4. **check** ([`check`]): every order reconciled against the file.
//! 5. **report** ([`build`]): `report.json` and `report.html` (the CSV was streamed).
//! 6. **teardown** ([`deploy::Deployment::teardown`]): the broker stopped. Every host is
//!    owned by a guard that stops it when dropped, so an error or Ctrl-C half-way leaves
//!    nothing behind either.

use anyhow::Context;

use crate::report::Report;

mod build;
mod check;
mod deploy;
mod hosts;
mod load;
mod options;
mod queue;
mod recorder;
mod settle;

pub use build::write_report_files;
pub use options::{LabNetwork, LabOptions, SAMPLE_EVERY, Target};

/// Runs the lab and writes `report.json`, `requests.csv` and `report.html` to
/// `out_dir`. Returns the report (thresholds evaluated).
pub async fn run_lab(mut options: LabOptions) -> anyhow::Result<Report> {
    let out_dir = options.out_dir.clone();
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the output directory {}", out_dir.display()))?;
    let mut deployment = deploy::deploy(&mut options).await?;
    let mut loaded = load::run_load(&options, &mut deployment).await?;
    let settled = settle::drain_and_settle(&options, &mut deployment, &mut loaded).await?;
    let messaging = match (&options.messaging, loaded.queue.take()) {
        (Some(m), Some(queue)) => {
            let measured = queue::Measured {
                aggregates: &loaded.aggregates,
                published: &loaded.sent.published,
                connect_ms: loaded.connect_ms,
                load_end: loaded.load_end,
                drained: settled.drained.clone(),
            };
            Some(queue.finish(m, measured).await)
        }
        _ => None,
    };
    let reconciliation = check::check_orders(
        &loaded.sent.codes,
        deployment.orders_file.as_deref(),
        std::mem::replace(&mut deployment.mark, Ok(None)),
        messaging.as_ref().map(|m| m.report.still_ready),
        settled.duration,
    );
    let report = build::build_report(
        &options,
        &deployment,
        loaded,
        settled,
        messaging,
        reconciliation,
    );
    write_report_files(&report, &out_dir)?;
    deployment.teardown().await;
    Ok(report)
}
