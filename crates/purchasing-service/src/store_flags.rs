//! The store's flags, declared once for both services: where the orders go, the simulated
//! work each order does, and whether an order waits for the disk. Both binaries flatten
//! [`StoreFlags`] into their configuration, so a flag means the same, reads the same
//! environment variable and has the same default on both sides of a comparison: one
//! environment configures the API and the worker alike.
//!
//! Where a service says more about a flag than the common meaning (the API's `--durable`
//! is about its 201, the worker's about its ack), it words the help itself with clap's
//! `mut_arg` on the flag's id (the field's name); the name, variable, default and parser
//! stay here.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use purchasing_persistence::{DEFAULT_ALLOC_CHARS, DEFAULT_DELAY, DEFAULT_ORDERS_FILE, Workload};

/// `--delay-ms`'s default, the faithful 500 ms, in the unit the flag takes.
const DEFAULT_DELAY_MS: u64 = DEFAULT_DELAY.as_millis() as u64;

/// `--orders-file`, the workload (`--alloc-chars`, `--delay-ms`, `--release-early`) and
/// `--durable`. Defaults are the faithful system.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StoreFlags {
    /// File the purchase orders are appended to, one line each. Created if missing; its
    /// directory must exist.
    #[arg(long, env = "PURCHASING_ORDERS_FILE", default_value = DEFAULT_ORDERS_FILE, value_name = "PATH")]
    pub orders_file: PathBuf,

    /// Characters of the string each order allocates, fills and holds (1 byte each).
    /// The faithful 150,000,000 is 150 MB per order in progress; tests use 1000.
    #[arg(long, env = "PURCHASING_ALLOC_CHARS", default_value_t = DEFAULT_ALLOC_CHARS, value_name = "N")]
    pub alloc_chars: usize,

    /// Milliseconds each order blocks its worker thread (the original's Thread.Sleep).
    #[arg(long, env = "PURCHASING_DELAY_MS", default_value_t = DEFAULT_DELAY_MS, value_name = "MS")]
    pub delay_ms: u64,

    /// Free each order's string right after filling it instead of holding it through the
    /// sleep (mimics a garbage collector reclaiming it early; the default holds it).
    #[arg(long, env = "PURCHASING_RELEASE_EARLY")]
    pub release_early: bool,

    /// Sync the orders file (and the idempotency journal) before an order counts as done.
    /// Costs a disk flush per order.
    // Optional rather than a plain switch: the API's --protect turns it on unless it is
    // given (`--durable=false` wins). `--durable` alone means true; `=BOOL` takes the
    // spellings people use in environment files (yes/no, 1/0, on/off).
    #[arg(
        long,
        env = "PURCHASING_DURABLE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub durable: Option<bool>,
}

impl StoreFlags {
    /// The simulated work each order does.
    pub fn workload(&self) -> Workload {
        Workload {
            alloc_chars: self.alloc_chars,
            delay: Duration::from_millis(self.delay_ms),
            release_early: self.release_early,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Both {
        #[command(flatten)]
        store: StoreFlags,
    }

    fn parse(args: &[&str]) -> Result<StoreFlags, clap::Error> {
        let argv = std::iter::once("test").chain(args.iter().copied());
        Both::try_parse_from(argv).map(|both| both.store)
    }

    #[test]
    fn defaults_are_the_faithful_store() {
        let flags = parse(&[]).unwrap();
        assert_eq!(flags.orders_file, PathBuf::from(DEFAULT_ORDERS_FILE));
        assert_eq!(flags.workload(), Workload::default());
        assert_eq!(flags.durable, None);
    }

    #[test]
    fn durable_alone_is_true_and_takes_a_boolish_value() {
        assert_eq!(parse(&["--durable"]).unwrap().durable, Some(true));
        assert_eq!(parse(&["--durable=no"]).unwrap().durable, Some(false));
        assert!(parse(&["--durable=perhaps"]).is_err());
        let flags = parse(&["--alloc-chars", "7", "--delay-ms", "3", "--release-early"]).unwrap();
        assert_eq!(
            flags.workload(),
            Workload {
                alloc_chars: 7,
                delay: Duration::from_millis(3),
                release_early: true,
            }
        );
    }
}
