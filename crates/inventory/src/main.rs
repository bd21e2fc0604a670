//! The `inventory` binary: parses the command line and runs it (see `inventory::cli`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use inventory::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match runtime() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// One thread is enough: the CLI sends its requests one after another.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")
}
