//! `purchasing-api`: parse the configuration, set up logging, run the server.

#![warn(clippy::undocumented_unsafe_blocks)]

use std::process::ExitCode;

use clap::Parser;
use purchasing_api::{Config, server};

fn main() -> ExitCode {
    let config = Config::parse();
    let result = config.logging.init().and_then(|()| server::run(config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: what failed, where, and (in the context) what to do.
            eprintln!("purchasing-api: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
