//! The `loadtest` command line: `run` (the lab), `confine` (run any command inside the
//! emulated VM), `report`, `compare`, `sweep`, and `broker` (a private RabbitMQ in the
//! foreground).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::lab::run_lab;

use common::{fail, interruptible, threshold_exit, usage_error};
use compare::{compare, compare_at_scale, compare_scale_out, compare_transports};
use options::{limits, seconds};
use rerender::rerender;
use sweep::sweep;
mod args;
mod common;
mod compare;
mod help;
mod network;
mod options;
mod rerender;
mod sweep;
#[cfg(test)]
mod tests;

pub use args::{
    BrokerArgs, CompareArgs, ConfineArgs, Connection, DEFAULT_DRAIN_TIMEOUT_S, ProfileKind,
    ReportArgs, RunArgs, SweepArgs, SweepConfig, Transport,
};
pub use compare::DEFAULT_PROTECTED_RETRIES;
pub use options::{BLOG_DURATION, BLOG_ITERATIONS};

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    about = "The spike lab: load the purchasing API like the original article, confine it like its VM, \
             account for every order, report with charts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test and write report.json, requests.csv and report.html.
    Run(Box<RunArgs>),
    /// Run any command confined to a CPU quota and a memory limit (a cgroup), e.g. the
    /// API, to try it by hand with curl.
    Confine(ConfineArgs),
    /// Render a finished run, comparison or sweep again from its JSON (report.json,
    /// comparison.json or sweep.json), and with --svg-dir one standalone SVG file per
    /// chart (e.g. to put a chart in a README).
    Report(ReportArgs),
    /// Run the same load twice — against the faithful baseline and against
    /// `purchasing-api --protect` with client retries — and write one side-by-side report;
    /// with --transports, four times: rpc, rpc-protected, messaging-faithful and
    /// messaging-reliable; with --at-scale K, both styles scaled out to K.
    Compare(Box<CompareArgs>),
    /// Find the capacity: an open-model run at each offered rate, against the baseline and
    /// the protected configuration, and a chart of goodput against offered load.
    Sweep(Box<SweepArgs>),
    /// Run a private RabbitMQ broker (Debian's rabbitmq-server) on free loopback ports until
    /// Ctrl-C or SIGTERM; prints its amqp:// URL as the only line on stdout, and on stderr
    /// the command line that runs rabbitmqctl against it.
    Broker(BrokerArgs),
}

/// Runs the command line; returns the process exit code (0, 1 failed, 2 bad usage, 99 a
/// `--fail-on` threshold).
pub fn main_with(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Confine(args) => confine(args),
        Command::Broker(args) => broker(args),
        Command::Compare(args) if args.run.network => {
            usage_error("--network works with `loadtest run` only (for now)")
        }
        Command::Sweep(args) if args.run.network => {
            usage_error("--network works with `loadtest run` only (for now)")
        }
        Command::Compare(args) => {
            let CompareArgs {
                transports,
                scale_out,
                at_scale,
                run,
            } = *args;
            if let Some(k) = at_scale {
                compare_at_scale(run, k)
            } else if transports {
                compare_transports(run)
            } else if !scale_out.is_empty() {
                compare_scale_out(run, &scale_out)
            } else {
                compare(run)
            }
        }
        Command::Sweep(args) => sweep(*args),
        Command::Report(args) => match rerender(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Run(args) => run(*args),
    }
}

/// `loadtest confine`: the command inside a cgroup, its exit code as ours.
fn confine(args: ConfineArgs) -> ExitCode {
    let limits = match limits(args.cpus, args.memory.as_deref()) {
        Ok(l) => l,
        Err(e) => return usage_error(&e),
    };
    match crate::confine::run_confined(&limits, &args.command) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

/// `loadtest broker`: a private broker in the foreground.
fn broker(args: BrokerArgs) -> ExitCode {
    let ready_timeout = match seconds(args.ready_timeout, "--ready-timeout") {
        Ok(t) => t,
        Err(e) => return usage_error(&e),
    };
    let options = crate::broker::BrokerOptions {
        ready_timeout,
        data_dir: args.keep_data,
        ..crate::broker::BrokerOptions::default()
    };
    match crate::broker::run_foreground(options, args.nodes.into()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// `loadtest run`: one run of the lab, its summary, and the threshold's exit code.
fn run(args: RunArgs) -> ExitCode {
    let mut options = match args.into_options() {
        Ok(o) => o,
        Err(e) => return usage_error(&e),
    };
    // Before the runtime, so that its threads are born in the client's namespace; dropped
    // after it (declared first), so that no host is left in a namespace being removed.
    let _client_side = match network::build(&mut options) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let runtime = match common::runtime() {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let out_dir = options.out_dir.clone();
    match runtime.block_on(interruptible(run_lab(options))) {
        Ok(report) => {
            print!("{}", crate::report::summary::render(&report));
            println!(
                "\nreport: {}/report.html (also report.json, requests.csv)",
                out_dir.display()
            );
            threshold_exit(&report)
        }
        Err(e) => fail(&e),
    }
}
