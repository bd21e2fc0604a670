//! `loadtest sweep`: an open-model run at each offered rate for each configuration, and
//! the capacity chart.

use std::process::ExitCode;

use crate::lab::run_lab;

use super::args::{ProfileKind, RunArgs, SweepArgs};
use super::common::{default_out, fail, runtime, usage_error};
use super::compare::configuration;

pub(super) fn sweep(args: SweepArgs) -> ExitCode {
    use crate::compare::{Sweep, SweepPoint};
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
    let mut runs = Vec::new();
    for &rate in &args.rates {
        for &config in &args.configs {
            let mut run = args.run.clone();
            run.profile = ProfileKind::Rate;
            run.rate = Some(rate);
            let name = format!("{}-{rate}", config.name());
            match configuration(&run, config, out.join(&name)).and_then(RunArgs::into_options) {
                Ok(o) => runs.push((config, rate, o)),
                Err(e) => return usage_error(&e),
            }
        }
    }
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
    let sweep = match result {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let written = (|| -> anyhow::Result<()> {
        use anyhow::Context;
        let json = serde_json::to_string_pretty(&sweep).context("cannot serialise the sweep")?;
        std::fs::write(out.join("sweep.json"), json + "\n").context("cannot write sweep.json")?;
        std::fs::write(
            out.join("sweep.html"),
            crate::compare::render_sweep_html(&sweep),
        )
        .context("cannot write sweep.html")?;
        Ok(())
    })();
    if let Err(e) = written {
        return fail(&e);
    }
    print!("{}", crate::compare::render_sweep_table(&sweep));
    println!(
        "\nreport: {}/sweep.html (also sweep.json and one directory per point)",
        out.display()
    );
    ExitCode::SUCCESS
}
