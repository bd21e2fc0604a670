//! Configuration: command-line flags, each also settable by an environment variable
//! (handy in a VM or a service manager). Defaults are the faithful system.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Parser, ValueEnum};
use purchasing_persistence::{DEFAULT_ALLOC_CHARS, DEFAULT_DELAY, DEFAULT_ORDERS_FILE, Workload};

/// Loopback by default: nothing outside this machine can reach a server started by
/// accident. Inside a VM, pass `--bind 0.0.0.0:8080` so the inventory side can call it.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// tokio's own default size of the blocking pool. Each order holds one of these
/// threads for its whole duration, as each held an IIS worker thread in the original.
pub const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

const DEFAULT_DELAY_MS: u64 = DEFAULT_DELAY.as_millis() as u64;

/// The purchasing API: receives stock-replenishment requests and writes purchase orders.
#[derive(Debug, Clone, Parser)]
#[command(name = "purchasing-api", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (the chosen address is printed).
    /// Use 0.0.0.0:8080 inside a VM so other machines can reach it.
    #[arg(long, env = "PURCHASING_BIND", default_value = DEFAULT_BIND, value_name = "ADDR")]
    pub bind: SocketAddr,

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

    /// Most threads the blocking pool may start, i.e. most orders worked on at once;
    /// further orders wait in the pool's queue.
    #[arg(
        long,
        env = "PURCHASING_MAX_BLOCKING_THREADS",
        default_value_t = DEFAULT_MAX_BLOCKING_THREADS,
        value_parser = clap::value_parser!(u32).range(1..=100_000).map(|n| n as usize),
        value_name = "N"
    )]
    pub max_blocking_threads: usize,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such
    /// as `purchasing_api=debug,info`.
    #[arg(
        long,
        env = "PURCHASING_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,

    /// Log line format on stderr.
    #[arg(long, env = "PURCHASING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Config {
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
    use super::*;

    #[test]
    fn defaults_are_the_faithful_system() {
        let config = Config::try_parse_from(["purchasing-api"]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.orders_file, PathBuf::from("PurchaseOrders.txt"));
        assert_eq!(config.workload(), Workload::default());
        assert_eq!(config.max_blocking_threads, 512);
    }

    #[test]
    fn flags_override_defaults() {
        let config = Config::try_parse_from([
            "purchasing-api",
            "--bind",
            "0.0.0.0:0",
            "--alloc-chars",
            "1000",
            "--delay-ms",
            "5",
            "--release-early",
            "--max-blocking-threads",
            "8",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(config.bind.to_string(), "0.0.0.0:0");
        assert_eq!(config.workload().alloc_chars, 1000);
        assert_eq!(config.workload().delay, Duration::from_millis(5));
        assert!(config.workload().release_early);
        assert_eq!(config.max_blocking_threads, 8);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_are_rejected() {
        for args in [
            &["purchasing-api", "--bind", "localhost"][..],
            &["purchasing-api", "--max-blocking-threads", "0"],
            &["purchasing-api", "--delay-ms", "-1"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
