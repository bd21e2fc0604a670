//! `loadtest compare`: the same load against each configuration (baseline and protected,
//! `--transports`' four styles, or `--scale-out`'s node counts), one side-by-side report.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::lab::{LabOptions, run_lab};
use crate::styles::{NamedRun, StylesComparison};
use crate::threshold::EXIT_THRESHOLD_FAILED;

use super::args::{RunArgs, SweepConfig, Transport};
use super::common::{default_out, fail, interruptible, runtime, threshold_exit, usage_error};

/// Client retries on the protected side of `compare` and `sweep` unless --retries says.
pub const DEFAULT_PROTECTED_RETRIES: u32 = 2;

/// A configuration's run arguments from one set: the baseline exactly as given with the
/// original client (no retries), the protected one with `--protect` added to the server
/// and the retry policy on the client, the messaging ones over AMQP with that delivery on
/// both sides (a private broker each unless --amqp-url; retries only as given, and only
/// reliable delivery may retry). HTTP configurations drop the messaging flags.
pub(super) fn configuration(
    args: &RunArgs,
    config: SweepConfig,
    out: PathBuf,
) -> Result<RunArgs, String> {
    if !args.spawn_server {
        return Err("compare and sweep start both servers themselves: add --spawn-server (and --cpus/--memory to confine them)".into());
    }
    if args.server_args.iter().any(|a| a == "--protect") {
        return Err(
            "leave --protect out of the server arguments: the protected side adds it".into(),
        );
    }
    if !args.faults.is_empty() || args.faults_file.is_some() {
        return Err("compare and sweep run each configuration without a fault plan: leave out --fault and --faults (use loadtest run for a run with faults)".into());
    }
    let mut run = args.clone();
    run.out = Some(out);
    let http = |run: &mut RunArgs| {
        run.transport = Transport::Http;
        run.spawn_broker = false;
        run.amqp_url = Vec::new();
        run.delivery = None;
        run.drain_timeout = None;
        run.kill_worker_every = None;
        run.restart_broker_at = None;
    };
    let amqp = |run: &mut RunArgs, delivery: inventory::DeliveryMode| {
        run.transport = Transport::Amqp;
        run.delivery = Some(delivery);
        run.spawn_broker = run.amqp_url.is_empty();
    };
    match config {
        SweepConfig::Baseline => {
            http(&mut run);
            run.retries = Some(0);
        }
        SweepConfig::Protected => {
            http(&mut run);
            run.retries = Some(args.retries.unwrap_or(DEFAULT_PROTECTED_RETRIES));
            run.server_args.push("--protect".into());
        }
        SweepConfig::MessagingFaithful => {
            amqp(&mut run, inventory::DeliveryMode::Faithful);
            run.retries = Some(0);
        }
        SweepConfig::MessagingReliable => {
            amqp(&mut run, inventory::DeliveryMode::Reliable);
            run.retries = Some(args.retries.unwrap_or(0));
        }
    }
    if config == SweepConfig::Baseline {
        // Thresholds gate the protected configuration; the baseline is expected to fail.
        run.fail_on.clear();
    }
    Ok(run)
}

pub(super) fn compare(args: RunArgs) -> ExitCode {
    let out = args.out.clone().unwrap_or_else(|| default_out("compare-"));
    let mut options = Vec::new();
    for config in [SweepConfig::Baseline, SweepConfig::Protected] {
        let dir = out.join(config.name());
        match configuration(&args, config, dir).and_then(RunArgs::into_options) {
            Ok(o) => options.push((config, o)),
            Err(e) => return usage_error(&e),
        }
    }
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let mut reports = Vec::new();
            for (config, o) in options {
                eprintln!(
                    "loadtest: === {} run → {}",
                    config.name(),
                    o.out_dir.display()
                );
                let report = run_lab(o).await?;
                print!("{}", crate::report::summary::render(&report));
                reports.push(report);
            }
            let protected = reports.pop().expect("two runs");
            let baseline = reports.pop().expect("two runs");
            Ok::<_, anyhow::Error>(crate::compare::Comparison::new(baseline, protected))
        })
    });
    let comparison = match result {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Err(e) = write_comparison(&comparison, &out) {
        return fail(&e);
    }
    print!("{}", crate::compare::render_table(&comparison));
    println!(
        "\nreport: {}/comparison.html (also comparison.json, baseline/, protected/)",
        out.display()
    );
    threshold_exit(&comparison.protected)
}

/// `compare --scale-out K,K,...`: the same run (the user's flags and server arguments)
/// with K nodes behind HAProxy for each K, one after the other, and one side-by-side
/// report, with the goodput of each K against the first.
pub(super) fn compare_scale_out(args: RunArgs, ks: &[u32]) -> ExitCode {
    if args.instances.is_some() {
        return usage_error(
            "compare --scale-out chooses --instances for each run; drop --instances",
        );
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out("scale-out-"));
    let mut runs = Vec::new();
    for &k in ks {
        let name = if k == 1 {
            "1 node".to_string()
        } else {
            format!("{k} nodes")
        };
        let mut run = args.clone();
        run.instances = Some(k);
        run.out = Some(out.join(format!("k{k}")));
        runs.push((name, run));
    }
    let options = match named_options(runs) {
        Ok(options) => options,
        Err(e) => return usage_error(&e),
    };
    let comparison = match run_side_by_side(options, &out, "Scale-out behind HAProxy") {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Some(first) = comparison.runs.first() {
        let base = first.report.throughput.acknowledged_per_s;
        for run in &comparison.runs[1..] {
            let goodput = run.report.throughput.acknowledged_per_s;
            // No ratio against nothing: a first run that acknowledged nothing (it crashed).
            let ratio = if base > 0.0 {
                format!("{:.2}×", goodput / base)
            } else {
                "no ratio (the first acknowledged nothing)".to_string()
            };
            println!(
                "goodput {} / {}: {ratio} ({goodput:.2}/s vs {base:.2}/s)",
                run.name, first.name
            );
        }
    }
    println!(
        "\nreport: {}/comparison.html (also comparison.json, one directory per K)",
        out.display()
    );
    any_threshold_failed(&comparison)
}

/// Each named run's options; the first refusal, prefixed with the run's name.
fn named_options(runs: Vec<(String, RunArgs)>) -> Result<Vec<(String, LabOptions)>, String> {
    (runs.into_iter())
        .map(|(name, run)| match run.into_options() {
            Ok(o) => Ok((name, o)),
            Err(e) => Err(format!("{name}: {e}")),
        })
        .collect()
}

/// The broker cluster `compare --at-scale` starts unless `--broker-nodes` says: the
/// smallest that survives the loss of a node.
const AT_SCALE_BROKER_NODES: u16 = 3;

/// `compare --at-scale K`: rpc-protected on K API nodes behind HAProxy, then
/// messaging-reliable with K workers on a RabbitMQ cluster, same load and node size, one
/// side-by-side report.
pub(super) fn compare_at_scale(args: RunArgs, k: u32) -> ExitCode {
    let out = args.out.clone().unwrap_or_else(|| default_out("at-scale-"));
    let options = match at_scale_runs(&args, k, &out).and_then(named_options) {
        Ok(options) => options,
        Err(e) => return usage_error(&e),
    };
    let comparison = match run_side_by_side(options, &out, "Both styles at scale") {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    println!(
        "\nreport: {}/comparison.html (also comparison.json, one directory per style)",
        out.display()
    );
    any_threshold_failed(&comparison)
}

/// The two named runs of `compare --at-scale K`, their output under `out`.
pub(super) fn at_scale_runs(
    args: &RunArgs,
    k: u32,
    out: &std::path::Path,
) -> Result<Vec<(String, RunArgs)>, String> {
    if args.instances.is_some() || args.workers.is_some() {
        return Err(
            "compare --at-scale chooses --instances and --workers for its runs; drop them".into(),
        );
    }
    let mut rpc = configuration(args, SweepConfig::Protected, out.join("rpc-protected"))?;
    rpc.instances = Some(k);
    let mut messaging = configuration(
        args,
        SweepConfig::MessagingReliable,
        out.join("messaging-reliable"),
    )?;
    messaging.workers = Some(k);
    let brokers = if messaging.spawn_broker {
        messaging.broker_nodes = match args.broker_nodes {
            1 => AT_SCALE_BROKER_NODES,
            n => n,
        };
        format!("{} brokers", messaging.broker_nodes)
    } else {
        "your broker".to_string()
    };
    Ok(vec![
        (format!("rpc-protected ×{k} (HAProxy)"), rpc),
        (format!("messaging-reliable ×{k} ({brokers})"), messaging),
    ])
}

/// `compare --transports`: the four configurations of [`SweepConfig::STYLES`] on the same
/// profile, one after the other, and one side-by-side report.
pub(super) fn compare_transports(args: RunArgs) -> ExitCode {
    let out = args.out.clone().unwrap_or_else(|| default_out("styles-"));
    let mut options = Vec::new();
    for config in SweepConfig::STYLES {
        let dir = out.join(config.style_name());
        match configuration(&args, config, dir).and_then(RunArgs::into_options) {
            Ok(o) => options.push((config.style_name().to_string(), o)),
            Err(e) => return usage_error(&format!("{}: {e}", config.style_name())),
        }
    }
    let comparison = match run_side_by_side(options, &out, "RPC vs messaging") {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    println!(
        "\nreport: {}/comparison.html (also comparison.json, one directory per configuration)",
        out.display()
    );
    any_threshold_failed(&comparison)
}

/// Runs each named configuration in turn (printing each run's summary), then writes
/// `comparison.json` and `comparison.html` (under `title`) to `out` and prints the
/// side-by-side table: what `compare --transports` and `compare --scale-out` share.
fn run_side_by_side(
    options: Vec<(String, LabOptions)>,
    out: &std::path::Path,
    title: &str,
) -> anyhow::Result<StylesComparison> {
    use anyhow::Context;
    let comparison = runtime()?.block_on(interruptible(async {
        let mut runs = Vec::new();
        for (name, o) in options {
            eprintln!("loadtest: === {name} run → {}", o.out_dir.display());
            let report = run_lab(o).await?;
            print!("{}", crate::report::summary::render(&report));
            runs.push(NamedRun { name, report });
        }
        Ok::<_, anyhow::Error>(StylesComparison::new(runs))
    }))?;
    let json =
        serde_json::to_string_pretty(&comparison).context("cannot serialise the comparison")?;
    std::fs::write(out.join("comparison.json"), json + "\n")
        .context("cannot write comparison.json")?;
    let html = crate::report::transports::render_html_titled(&comparison.named(), title);
    std::fs::write(out.join("comparison.html"), html).context("cannot write comparison.html")?;
    print!("{}", crate::styles::render_table(&comparison));
    Ok(comparison)
}

/// Exit 99 when a threshold failed in any of the runs.
fn any_threshold_failed(comparison: &StylesComparison) -> ExitCode {
    if comparison
        .runs
        .iter()
        .any(|r| r.report.thresholds.iter().any(|t| !t.passed))
    {
        ExitCode::from(EXIT_THRESHOLD_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

pub(super) fn write_comparison(
    c: &crate::compare::Comparison,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let json = serde_json::to_string_pretty(c).context("cannot serialise the comparison")?;
    std::fs::write(out.join("comparison.json"), json + "\n")
        .context("cannot write comparison.json")?;
    std::fs::write(out.join("comparison.html"), crate::compare::render_html(c))
        .context("cannot write comparison.html")?;
    Ok(())
}
