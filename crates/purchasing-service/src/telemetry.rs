//! Logging: `tracing` events on stderr, as text or JSON, filtered by `--log`. Stdout is
//! kept for the one `listening on http://ADDR` line tools read.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `--log` and `--log-format`, declared once for both services (each words `--log`'s
/// example with its own crate name, see their configs).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LogFlags {
    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives.
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

impl LogFlags {
    /// Installs the global subscriber the flags describe (see [`init`]).
    pub fn init(&self) -> anyhow::Result<()> {
        init(&self.log, self.log_format)
    }
}

/// Installs the global subscriber. Fails (rather than silently logging nothing) when the
/// filter cannot be parsed.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log filter {filter:?}: {e}"))?;
    // Colours only for a person at a terminal; log files and pipes get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
