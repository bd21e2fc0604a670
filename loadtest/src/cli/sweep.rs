//! `loadtest sweep`: an open-model run at each offered rate for each configuration, and
//! the capacity chart.

use std::path::Path;
use std::process::ExitCode;

use crate::compare::{Sweep, SweepPoint};
use crate::lab::{LabOptions, run_lab};

use super::args::{ProfileKind, SweepArgs, SweepConfig};
use super::common::{default_out, fail, runtime, usage_error};
use super::compare::configuration;

/// `loadtest sweep`: every configuration at every rate, one after the other, then
/// sweep.json, sweep.html and the table.
pub(super) fn sweep(args: SweepArgs) -> ExitCode {
    let out = args
        .run
        .out
        .clone()
        .unwrap_or_else(|| default_out("sweep-"));
    if args.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return usage_error("--rates must be positive numbers, e.g. --rates 2,5,10");
    }
    let Some(duration) = args.run.duration else {
        return usage_error("sweep needs --duration (seconds per point)");
    };
    let runs = match points(&args, &out) {
        Ok(runs) => runs,
        Err(e) => return usage_error(&e),
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let mut points = Vec::new();
            for (config, rate, o) in runs {
                let name = config.name();
                eprintln!("loadtest: === {name} at {rate}/s → {}", o.out_dir.display());
                let report = run_lab(o).await?;
                points.push(SweepPoint::from_report(name, rate, &report));
            }
            Ok::<_, anyhow::Error>(Sweep {
                schema_version: crate::report::SCHEMA_VERSION,
                duration_s: duration.as_secs_f64(),
                points,
            })
        })
    });
    let sweep = match result.and_then(|sweep| write(&sweep, &out).map(|()| sweep)) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    print!("{}", crate::compare::render_sweep_table(&sweep));
    println!(
        "\nreport: {}/sweep.html (also sweep.json and one directory per point)",
        out.display()
    );
    ExitCode::SUCCESS
}

/// Each point's lab options: the rate profile at each rate, for each configuration, in
/// `OUT/<config>-<rate>`. Checked before anything runs.
fn points(args: &SweepArgs, out: &Path) -> Result<Vec<(SweepConfig, f64, LabOptions)>, String> {
    let mut runs = Vec::new();
    for &rate in &args.rates {
        for &config in &args.configs {
            let mut run = args.run.clone();
            run.profile = ProfileKind::Rate;
            run.rate = Some(rate);
            let name = format!("{}-{rate}", config.name());
            let options = configuration(&run, config, out.join(&name))?.into_options()?;
            runs.push((config, rate, options));
        }
    }
    Ok(runs)
}

fn write(sweep: &Sweep, out: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let json = serde_json::to_string_pretty(sweep).context("cannot serialise the sweep")?;
    std::fs::write(out.join("sweep.json"), json + "\n").context("cannot write sweep.json")?;
    std::fs::write(
        out.join("sweep.html"),
        crate::compare::render_sweep_html(sweep),
    )
    .context("cannot write sweep.html")
}
