//! `loadtest`: parse the command line and run the lab.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    loadtest::cli::main_with(loadtest::cli::Cli::parse())
}
