//! Configuration: command-line flags, each also settable by an environment variable.
//! Defaults are the original's queue handler (`--delivery faithful`: auto-ack, one message
//! at a time, no prefetch limit) with the faithful workload.
//!
//! The store flags (`--orders-file`, `--alloc-chars`, `--delay-ms`, `--release-early`,
//! `--durable`: one declaration, `purchasing_service::store_flags`, flattened here and in
//! the API's config; and `--max-concurrent-fills`) mean exactly what they mean for
//! `purchasing-api` and read the same environment variables, so one environment
//! configures both sides of a comparison alike. The worker's own knobs read
//! `PURCHASING_WORKER_*` where a shared name would be ambiguous (its HTTP address), and
//! `PURCHASING_AMQP_URL` / `PURCHASING_DELIVERY` where both ends of the queue must agree.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use amqp_link::AmqpUrls;
use clap::Parser;
use purchasing_persistence::{StoreOptions, Workload};
use purchasing_service::store_flags::StoreFlags;
use purchasing_service::telemetry::LogFlags;
use wire_contract::amqp::Delivery;

/// The broker a developer runs locally with its default user: the original pointed both
/// sides at one broker the same way (a fixed address, the default credentials).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Loopback and port 0: the probe endpoints must not be reachable from elsewhere by
/// accident, and two workers on one machine (competing consumers) must both start. The
/// real address is printed on stdout.
pub const DEFAULT_HTTP_BIND: &str = "127.0.0.1:0";

/// Largest prefetch accepted. Every prefetched message is worked on at once, each on a
/// thread of the blocking pool: past a thousand orders in flight a limit protects
/// nothing (the capacity crate's cap on an automatic limit, for the same reason).
pub const MAX_PREFETCH: u16 = capacity::MAX_AUTO_IN_FLIGHT as u16;

// The store flags' help as the worker words it (the flags themselves are
// [`StoreFlags`]'s, shared with the API): competing workers share one file, a worker's
// order holds a thread of the blocking pool rather than a request's, and what
// `--durable` delays here is the acknowledgement.
const ORDERS_FILE_HELP: &str = "File the purchase orders are appended to, one line each. Created \
     if missing; its directory must exist. Several workers (and APIs) may share it";
const DELAY_HELP: &str = "Milliseconds each order blocks its thread (the original's Thread.Sleep)";
const DURABLE_HELP: &str = "Sync the orders file (and in reliable mode the idempotency journal) \
     before an order counts as done — in reliable mode, before the message is acknowledged. \
     Without it an acknowledged order is in the page cache: it survives a crash of the worker, \
     not a power loss";

/// `--log`'s help, with this crate's name in the example directive.
const LOG_HELP: &str = "Log filter: a level (error, warn, info, debug, trace) or tracing \
     directives such as `purchasing_worker=debug,info`";

/// The purchasing queue handler: consumes stock-replenishment messages from RabbitMQ and
/// writes one purchase order per message through the same store as the HTTP API.
#[derive(Debug, Clone, Parser)]
#[command(name = "purchasing-worker", version, about, long_about = None)]
#[command(mut_arg("orders_file", |arg| arg.help(ORDERS_FILE_HELP)))]
#[command(mut_arg("delay_ms", |arg| arg.help(DELAY_HELP)))]
#[command(mut_arg("durable", |arg| arg.help(DURABLE_HELP)))]
#[command(mut_arg("log", |arg| arg.help(LOG_HELP)))]
pub struct Config {
    /// The broker, as an AMQP URI (amqp://USER:PASSWORD@HOST:PORT/VHOST, the default
    /// virtual host spelled %2f); several — the nodes of a cluster — comma-separated or
    /// with the flag repeated (a comma in a password is written %2C). The worker consumes
    /// from one at a time, in order; when its connection is lost it goes on to the next.
    /// If every broker is down the worker keeps trying, round the list.
    // hide_env_values: --help would otherwise print the password from the environment.
    // value_parser: clap's own errors repeat the raw value, password included; this one
    // words its error with the password hidden (and keeps an IPv6 host, which lapin's
    // parser would turn into localhost). Append: repeated flags add up (`amqp_urls`).
    #[arg(long, env = "PURCHASING_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true,
          action = clap::ArgAction::Append, value_parser = AmqpUrls::value_parser(), value_name = "URL")]
    pub amqp_url: Vec<AmqpUrls>,

    /// How messages travel: `faithful` (the original: a transient queue, auto-ack, one
    /// message at a time, no prefetch limit; a crash loses what was pushed) or `reliable`
    /// (a durable queue with a dead-letter queue, manual ack after the order is written,
    /// a prefetch, deduplication by message id). The publisher must use the same mode.
    #[arg(long, env = "PURCHASING_DELIVERY", default_value = "faithful",
          value_parser = Delivery::from_str, value_name = "faithful|reliable")]
    pub delivery: Delivery,

    /// Reliable mode: most unacknowledged messages the broker hands this worker, all
    /// worked on at once (`auto`: as many orders as fit in the memory limit) [default:
    /// auto]. Faithful mode has no prefetch limit, as the original.
    #[arg(long, env = "PURCHASING_PREFETCH", value_name = "auto|N")]
    pub prefetch: Option<PrefetchSetting>,

    /// Address of the small HTTP server for /health and /metrics. Port 0 picks a free
    /// port; the chosen address is printed on stdout.
    #[arg(long, env = "PURCHASING_WORKER_HTTP_BIND", default_value = DEFAULT_HTTP_BIND, value_name = "ADDR")]
    pub http_bind: SocketAddr,

    /// `--orders-file`, the workload and `--durable`, as the API has them.
    #[command(flatten)]
    pub store: StoreFlags,

    /// At most N orders fill their string at the same time (`auto`: one per CPU; `off`:
    /// no limit); the others wait their turn, their sleeps still overlapping.
    // Only meaningful with a prefetch above the CPUs: k fills at once under a CPU quota
    // each take k times as long (see the store's `max_concurrent_fills`).
    #[arg(
        long,
        env = "PURCHASING_MAX_CONCURRENT_FILLS",
        default_value = "off",
        value_name = "N|auto|off"
    )]
    pub max_concurrent_fills: FillsSetting,

    /// Fault injection (reliable mode): wait MS after an order is written before
    /// acknowledging its message. Widens the window in which a crash leaves an order
    /// written but unacknowledged, to show that its redelivery is replayed, not written
    /// twice. 0 acknowledges at once.
    #[arg(
        long,
        env = "PURCHASING_WORKER_ACK_DELAY_MS",
        default_value_t = 0,
        value_name = "MS"
    )]
    pub ack_delay_ms: u64,

    /// `--log` and `--log-format`, as the API has them.
    #[command(flatten)]
    pub logging: LogFlags,
}

/// `--prefetch`: `auto` or a number of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefetchSetting {
    Auto,
    Fixed(u16),
}

/// A flag's value that is not what the flag takes; the message says what it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("{0:?} is not a prefetch: use `auto` or a number of messages from 1 to {MAX_PREFETCH}")]
    Prefetch(String),
    #[error("{0:?} is not a limit: use a number of orders (1 or more), `auto` or `off`")]
    Limit(String),
}

impl FromStr for PrefetchSetting {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            n => match n.parse::<u16>() {
                Ok(n) if (1..=MAX_PREFETCH).contains(&n) => Ok(Self::Fixed(n)),
                _ => Err(InvalidValue::Prefetch(s.to_owned())),
            },
        }
    }
}

/// `--max-concurrent-fills`: a number, `auto` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillsSetting {
    Off,
    Auto,
    Fixed(usize),
}

impl FromStr for FillsSetting {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            n => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Self::Fixed(n)),
                _ => Err(InvalidValue::Limit(s.to_owned())),
            },
        }
    }
}

/// A combination of flags that would silently do nothing; the message says what to
/// change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlagConflict {
    #[error(
        "--prefetch needs --delivery reliable: the faithful handler has no prefetch limit, as \
         the original (the broker pushes as fast as it can)"
    )]
    PrefetchNeedsReliable,
    #[error(
        "--ack-delay-ms needs --delivery reliable: the faithful handler acknowledges nothing \
         (auto-ack)"
    )]
    AckDelayNeedsReliable,
}

pub use purchasing_service::telemetry::LogFormat;

/// [`DEFAULT_AMQP_URL`] as a list (a constant, checked by the tests).
fn default_urls() -> AmqpUrls {
    AmqpUrls::parse(DEFAULT_AMQP_URL).expect("the default broker URL parses")
}

/// What the flags ask for, checked for combinations that would silently do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `--delivery`: which queues, which acknowledgements.
    pub delivery: Delivery,
    /// `Some` in reliable mode only (`auto` when not given).
    pub prefetch: Option<PrefetchSetting>,
    /// The store's protections: idempotency on in reliable mode (the message id is the
    /// key), durable as asked; the fill gate is resolved at start-up.
    pub store: StoreOptions,
    /// `--max-concurrent-fills`, resolved at start-up (`auto` needs the CPU count).
    pub fills: FillsSetting,
    /// `--ack-delay-ms` (zero unless fault injection was asked for).
    pub ack_delay: Duration,
}

impl Config {
    pub fn workload(&self) -> Workload {
        self.store.workload()
    }

    /// Every `--amqp-url` as one list, in order (the default when none was given).
    pub fn amqp_urls(&self) -> AmqpUrls {
        AmqpUrls::concat(&self.amqp_url).unwrap_or_else(default_urls)
    }

    /// Resolves the flags. Fails, with a message for the person at the terminal, on
    /// combinations that would silently do nothing.
    pub fn settings(&self) -> Result<Settings, FlagConflict> {
        let reliable = self.delivery == Delivery::Reliable;
        if !reliable && self.prefetch.is_some() {
            return Err(FlagConflict::PrefetchNeedsReliable);
        }
        if !reliable && self.ack_delay_ms > 0 {
            return Err(FlagConflict::AckDelayNeedsReliable);
        }
        Ok(Settings {
            delivery: self.delivery,
            prefetch: reliable.then(|| self.prefetch.unwrap_or(PrefetchSetting::Auto)),
            store: StoreOptions {
                durable: self.store.durable.unwrap_or(false),
                idempotency: reliable,
                max_concurrent_fills: None,
            },
            fills: self.max_concurrent_fills,
            ack_delay: Duration::from_millis(self.ack_delay_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["purchasing-worker"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_original_handler() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.amqp_urls(), default_urls());
        assert_eq!(
            config.amqp_urls().to_string(),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(config.http_bind.to_string(), "127.0.0.1:0");
        assert_eq!(config.workload(), Workload::default());
        let settings = config.settings().unwrap();
        assert_eq!(settings.delivery, Delivery::Faithful);
        assert_eq!(settings.prefetch, None);
        assert_eq!(settings.store, StoreOptions::default());
        assert_eq!(settings.fills, FillsSetting::Off);
        assert_eq!(settings.ack_delay, Duration::ZERO);
    }

    #[test]
    fn reliable_keys_orders_and_sizes_its_prefetch() {
        let settings = parse(&["--delivery", "reliable"])
            .unwrap()
            .settings()
            .unwrap();
        assert_eq!(settings.prefetch, Some(PrefetchSetting::Auto));
        assert!(settings.store.idempotency && !settings.store.durable);

        let settings = parse(&["--delivery", "reliable", "--prefetch", "8", "--durable"])
            .unwrap()
            .settings()
            .unwrap();
        assert_eq!(settings.prefetch, Some(PrefetchSetting::Fixed(8)));
        assert!(settings.store.durable);
    }

    #[test]
    fn options_that_would_do_nothing_are_refused() {
        let err = parse(&["--prefetch", "4"]).unwrap().settings().unwrap_err();
        assert_eq!(err, FlagConflict::PrefetchNeedsReliable);
        assert!(err.to_string().contains("--delivery reliable"), "{err}");
        let err = parse(&["--ack-delay-ms", "5"])
            .unwrap()
            .settings()
            .unwrap_err();
        assert_eq!(err, FlagConflict::AckDelayNeedsReliable);
        assert!(err.to_string().contains("--delivery reliable"), "{err}");
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        for (args, says) in [
            (&["--prefetch", "0"][..], "from 1 to 1024"),
            (&["--prefetch", "5000"], "from 1 to 1024"),
            (&["--prefetch", "many"], "not a prefetch"),
            (&["--delivery", "durable"], "faithful"),
            (&["--amqp-url", "http://x"], "must start with amqp://"),
            (&["--amqp-url", "amqps://h/%2f"], "without TLS"),
            (&["--max-concurrent-fills", "0"], "not a limit"),
            (&["--http-bind", "localhost"], "invalid socket address"),
            (&["--durable=perhaps"], "invalid value"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_password_stays_out_of_errors_and_the_ipv6_host_is_kept() {
        for bad in [
            "amqp://guest:s3cret@h:99999/%2f",
            "amqp://guest:s3cret@h/%2f?heartbeat=x",
            "amqp://guest:pa/s3cret@h/%2f",
            "amqps://guest:s3cret@h/%2f",
        ] {
            let err = parse(&["--amqp-url", bad]).unwrap_err();
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
        let config = parse(&["--amqp-url", "amqp://guest:s3cret@[fd00::7]:5999/%2f"]).unwrap();
        assert_eq!(config.amqp_urls().first().host(), "fd00::7");
        assert_eq!(
            config.amqp_urls().to_string(),
            "amqp://guest:***@[fd00::7]:5999/%2f"
        );
    }

    #[test]
    fn several_brokers_come_as_a_list_or_a_repeated_flag() {
        let (a, b, c) = ("amqp://h:5671", "amqp://h:5672", "amqp://[::1]:5673");
        let ports =
            |config: Config| -> Vec<u16> { config.amqp_urls().iter().map(|u| u.port()).collect() };
        let listed = parse(&["--amqp-url", &format!("{a} , {b},{c}")]).unwrap();
        assert_eq!(ports(listed), [5671, 5672, 5673]);
        let repeated = parse(&["--amqp-url", &format!("{a},{b}"), "--amqp-url", c]).unwrap();
        assert_eq!(ports(repeated), [5671, 5672, 5673]);
        let err = parse(&["--amqp-url", &format!("amqp://u:s3cret@h,,{b}")]).unwrap_err();
        assert!(
            err.contains("empty element (2 of 3)") && !err.contains("s3cret"),
            "{err}"
        );
    }
}
