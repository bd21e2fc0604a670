//! `purchasing-worker`: parse the configuration, set up logging, run the worker.

#![warn(clippy::undocumented_unsafe_blocks)]

use std::process::ExitCode;

use clap::Parser;
use purchasing_worker::{Config, worker};

fn main() -> ExitCode {
    let config = Config::parse();
    let result = config.logging.init().and_then(|()| worker::run(config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: what failed, where, and (in the context) what to do.
            eprintln!("purchasing-worker: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
