//! Configuration: command-line flags, each also settable by an environment variable
//! (handy in a VM or a service manager). Defaults are the faithful system.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::body::{BodyTimeouts, DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_BODY_TIMEOUT};
use clap::Parser;
use clap::builder::{BoolishValueParser, TypedValueParser as _};
use purchasing_persistence::{StoreOptions, Workload};
use purchasing_service::store_flags::StoreFlags;
use purchasing_service::telemetry::LogFlags;

/// Loopback by default: nothing outside this machine can reach a server started by
/// accident. Inside a VM, pass `--bind 0.0.0.0:8080` so the inventory side can call it.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// tokio's own default size of the blocking pool. Each order holds one of these
/// threads for its whole duration, as each held an IIS worker thread in the original.
pub const DEFAULT_MAX_BLOCKING_THREADS: usize = 512;

/// How long a queued order waits for a slot before it is refused. Short on purpose: the
/// queue only absorbs the jitter of arrivals (a slot frees every `work / N`); a long wait
/// just moves the overload into the client's timeout, where it costs more than a 503.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(250);

/// `--protect`'s longest request: 10 s is about 17 faithful orders back to back, far above
/// a healthy order's 0.6 s, and below the 100 s that clients such as `HttpClient` wait by
/// default — so the server gives up before the client does and writes no ghost order.
pub const PROTECT_MAX_REQUEST: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's headers, by default. Also how long an
/// idle keep-alive connection is kept: waiting for the next request is waiting for its
/// headers. Real clients send their headers in one packet; 10 s covers a slow network
/// many times over while a silent connection is gone before it can pile up with others.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a graceful shutdown may take, by default: room for orders in progress to
/// finish (0.6 s each unloaded, at most `--max-request-ms` with deadlines) and for
/// clients to read their answers; then what is left is closed.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// Most connections served at once, by default (further clients wait in the kernel's
/// accept queue). Lowered at start-up to what the open-files limit allows.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// `--durable` as the API means it (the flag itself is [`StoreFlags::durable`]; with
/// `--protect` it is on unless given).
// Without it a 201 means "in the page cache": a power cut or a VM reset can lose
// acknowledged orders.
const DURABLE_HELP: &str = "Make 201 mean \"on disk\": sync the orders file (and the idempotency \
     journal) before answering. Costs a disk flush per order";

/// `--log`'s help, with this crate's name in the example directive.
const LOG_HELP: &str = "Log filter: a level (error, warn, info, debug, trace) or tracing \
     directives such as `purchasing_api=debug,info`";

/// The purchasing API: receives stock-replenishment requests and writes purchase orders.
#[derive(Debug, Clone, Parser)]
#[command(name = "purchasing-api", version, about, long_about = None)]
#[command(mut_arg("durable", |arg| arg.help(DURABLE_HELP)))]
#[command(mut_arg("log", |arg| arg.help(LOG_HELP)))]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port (the chosen address is printed).
    /// Use 0.0.0.0:8080 inside a VM so other machines can reach it.
    #[arg(long, env = "PURCHASING_BIND", default_value = DEFAULT_BIND, value_name = "ADDR")]
    pub bind: SocketAddr,

    /// `--orders-file`, the workload and `--durable`, as the worker has them.
    #[command(flatten)]
    pub store: StoreFlags,

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

    /// Longest time, in ms, a client may take to send a request's headers; also how long
    /// an idle keep-alive connection is kept. The connection is closed after it.
    #[arg(long, env = "PURCHASING_HEADER_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    pub header_timeout_ms: u64,

    /// Longest pause, in ms, between two pieces of a request body; the request then gets
    /// 408 and the connection is closed.
    #[arg(long, env = "PURCHASING_BODY_IDLE_TIMEOUT_MS", default_value_t = DEFAULT_BODY_IDLE_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    pub body_idle_timeout_ms: u64,

    /// Longest time, in ms, to receive a whole request body; the request then gets 408
    /// and the connection is closed.
    #[arg(long, env = "PURCHASING_BODY_TIMEOUT_MS", default_value_t = DEFAULT_BODY_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "MS")]
    pub body_timeout_ms: u64,

    /// Longest graceful shutdown, in ms, after SIGTERM or Ctrl-C: connections still open
    /// then are closed. Orders already being written still finish before the process
    /// exits, so every acknowledged order is in the file.
    #[arg(long, env = "PURCHASING_SHUTDOWN_TIMEOUT_MS", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT.as_millis() as u64,
          value_name = "MS")]
    pub shutdown_timeout_ms: u64,

    /// Answer HAProxy's agent check on this TCP address (e.g. 127.0.0.1:9100): every
    /// connection gets one line, `maxconn:N`, N = the orders this node admits at once now
    /// (the adaptive limit where it stands; without admission control, the connection
    /// cap), so a balancer in front never sends more than the node takes. Off by default.
    #[arg(long, env = "PURCHASING_HAPROXY_AGENT_BIND", value_name = "ADDR")]
    pub haproxy_agent_bind: Option<std::net::SocketAddr>,

    /// Most connections served at once; further clients wait in the kernel's accept
    /// queue. Lowered at start-up to what the open-files limit allows.
    #[arg(long, env = "PURCHASING_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize), value_name = "N")]
    pub max_connections: usize,

    /// `--log` and `--log-format`, as the worker has them.
    #[command(flatten)]
    pub logging: LogFlags,

    // Protections beyond the original (all off by default, so that without these flags
    // the server is the faithful system). Each is explained where it is built: admission
    // in `admission`, deadlines in `deadline`, sizing in `limits`.
    /// Turn on the recommended protections: `--max-in-flight adaptive`, a queue as long as
    /// the limit with a 250 ms wait, `--max-concurrent-fills auto`, `--prioritize-work`,
    /// `--max-request-ms 10000`, `--idempotency` and `--durable`. Any of them given
    /// explicitly still wins (e.g. `--protect --durable=false`).
    // One switch, because the protections only work as a set: shedding without deadlines
    // still does work for clients that left; retries without idempotency duplicate orders.
    #[arg(long, env = "PURCHASING_PROTECT")]
    pub protect: bool,

    /// Admission control: at most N orders in progress at once in this process
    /// (`adaptive`: starts as `auto` and moves at run time with the wait for the CPU,
    /// never above what fits in memory — the default with --protect, needs the fill gate;
    /// `auto`: as many as the memory limit and the CPUs allow, sized once at start-up;
    /// `off`: no limit). Orders beyond N wait in a short queue, then get 503 with
    /// Retry-After, without any work done.
    // The faithful server accepts everything and dies of the 150 MB per order; a limit
    // turns that crash into fast, retryable refusals of the excess.
    #[arg(
        long,
        env = "PURCHASING_MAX_IN_FLIGHT",
        value_name = "N|adaptive|auto|off"
    )]
    pub max_in_flight: Option<MaxInFlight>,

    /// At most N of the orders in progress fill their string at the same time (`auto`:
    /// one per CPU of the quota; `off`: no limit); the others wait their turn, their
    /// sleeps still overlapping. Off by default; auto with --protect.
    // Filling is the CPU-heavy part of an order. With a CPU quota, k fills at once each
    // take k times as long (and page faults of many threads contend), so every admitted
    // order gets slower as the load grows; one fill per CPU keeps each at its unloaded cost.
    #[arg(
        long,
        env = "PURCHASING_MAX_CONCURRENT_FILLS",
        value_name = "N|auto|off"
    )]
    pub max_concurrent_fills: Option<MaxInFlight>,

    /// Orders that may wait for a slot when all N are taken [default: N]. 0 refuses at
    /// once. Needs admission control (`--max-in-flight` or `--protect`).
    // A small queue keeps the slots busy between one order finishing and the next
    // arriving; a long one only adds latency and holds connections.
    #[arg(long, env = "PURCHASING_QUEUE", value_name = "N")]
    pub queue: Option<usize>,

    /// Longest an order waits in the queue before it is refused with 503 [default: 250].
    /// Needs admission control.
    #[arg(long, env = "PURCHASING_QUEUE_TIMEOUT_MS", value_name = "MS")]
    pub queue_timeout_ms: Option<u64>,

    /// Deadlines: the longest a request may take, in ms (`off`: none). Turns on the
    /// client's `X-Request-Budget-Ms` header (ignored without this flag); an order whose
    /// deadline cannot be met gets 504 and nothing is recorded.
    // Work finished after the client gave up is a ghost order: paid for, never
    // acknowledged, often retried. A deadline lets the server refuse it instead.
    #[arg(long, env = "PURCHASING_MAX_REQUEST_MS", value_name = "MS|off")]
    pub max_request_ms: Option<MaxRequest>,

    /// Honour the `Idempotency-Key` header (ignored without this flag): a repeated key
    /// replays the first outcome and writes no second order, also after a restart. Keys
    /// are kept in a journal beside the orders file.
    // What makes a client's retry of a POST safe: without it a retry after a lost
    // response writes the order twice.
    #[arg(
        long,
        env = "PURCHASING_IDEMPOTENCY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub idempotency: Option<bool>,

    /// Give admitted orders the CPU first: the server's control path — accepting, 503s,
    /// /health, /metrics — runs at a lower priority (nice 5) than the orders' work, so a
    /// flood of refused requests cannot starve the orders that were let in. Off by
    /// default; on with --protect. (`--idle-priority-work` is an old name for it.)
    // Clients that resend the moment they are refused make as many requests as the
    // server has CPU to refuse; at equal priority that is most of the CPU (see
    // `crate::priority` for the measurements).
    #[arg(
        long,
        alias = "idle-priority-work",
        env = "PURCHASING_PRIORITIZE_WORK",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub prioritize_work: Option<bool>,
}

/// `--max-in-flight` (and `--max-concurrent-fills`): a number, `auto` or `off` — and, for
/// `--max-in-flight` only, `adaptive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxInFlight {
    #[default]
    Off,
    Auto,
    Adaptive,
    Fixed(usize),
}

/// A flag's value that is not what the flag takes; the message says what it takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("{0:?} is not a limit: use a number of orders (1 or more), `auto` or `off`")]
    Limit(String),
    #[error("{0:?} is not a duration: use milliseconds (1 or more) or `off`")]
    Duration(String),
}

impl FromStr for MaxInFlight {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "adaptive" => Ok(Self::Adaptive),
            "off" => Ok(Self::Off),
            n => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Self::Fixed(n)),
                _ => Err(InvalidValue::Limit(s.to_owned())),
            },
        }
    }
}

/// `--max-request-ms`: milliseconds or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRequest {
    Off,
    Millis(u64),
}

impl FromStr for MaxRequest {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        match s.trim() {
            "off" => Ok(Self::Off),
            n => match n.parse::<u64>() {
                Ok(ms) if ms >= 1 => Ok(Self::Millis(ms)),
                _ => Err(InvalidValue::Duration(s.to_owned())),
            },
        }
    }
}

/// A combination of protection flags that would silently do nothing; the message says
/// what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlagConflict {
    #[error(
        "--queue and --queue-timeout-ms need admission control: add --max-in-flight N (or \
         auto), or --protect"
    )]
    QueueWithoutAdmission,
    #[error(
        "--max-in-flight adaptive steers by the wait at the fill gate, so it needs one: drop \
         --max-concurrent-fills off (or give it auto or a number)"
    )]
    AdaptiveWithoutFillGate,
    #[error("--max-concurrent-fills takes a number, auto or off; adaptive is for --max-in-flight")]
    AdaptiveFills,
}

/// How many orders admission control lets in; `auto` is resolved at start-up, when the
/// process can measure its limits (see [`crate::limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightLimit {
    Auto,
    /// Starts where `Auto` would, then follows the queue for the CPU.
    Adaptive,
    Fixed(usize),
}

/// Admission control as the flags ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSettings {
    pub max_in_flight: InFlightLimit,
    /// `None`: as long as the resolved limit.
    pub queue: Option<usize>,
    pub queue_timeout: Duration,
}

/// The protections the flags ask for, with `--protect`'s defaults filled in and explicit
/// flags winning. `None` / `false` everywhere is the faithful system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtectionSettings {
    pub admission: Option<AdmissionSettings>,
    /// `--max-concurrent-fills`, resolved against `--protect` (`Off` when neither).
    pub fills: MaxInFlight,
    /// Orders' work ahead of the control path (`--prioritize-work`).
    pub prioritize_work: bool,
    /// The server-side maximum time of a request; `Some` turns deadlines on.
    pub max_request: Option<Duration>,
    pub store: StoreOptions,
}

impl ProtectionSettings {
    /// True when any protection that needs the work-time estimate is on.
    pub fn needs_work_estimate(&self) -> bool {
        self.admission.is_some() || self.max_request.is_some()
    }
}

pub use purchasing_service::telemetry::LogFormat;

impl Config {
    pub fn body_timeouts(&self) -> BodyTimeouts {
        BodyTimeouts {
            idle: Duration::from_millis(self.body_idle_timeout_ms),
            total: Duration::from_millis(self.body_timeout_ms),
        }
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    pub fn workload(&self) -> Workload {
        self.store.workload()
    }

    /// Resolves the protection flags. Fails, with a message for the person at the
    /// terminal, on combinations that would silently do nothing.
    pub fn protections(&self) -> Result<ProtectionSettings, FlagConflict> {
        let protect = self.protect;
        let max_in_flight = self.max_in_flight.unwrap_or(if protect {
            MaxInFlight::Adaptive
        } else {
            MaxInFlight::Off
        });
        let admission = match max_in_flight {
            MaxInFlight::Off => {
                if self.queue.is_some() || self.queue_timeout_ms.is_some() {
                    return Err(FlagConflict::QueueWithoutAdmission);
                }
                None
            }
            MaxInFlight::Auto | MaxInFlight::Adaptive | MaxInFlight::Fixed(_) => {
                Some(AdmissionSettings {
                    max_in_flight: match max_in_flight {
                        MaxInFlight::Fixed(n) => InFlightLimit::Fixed(n),
                        MaxInFlight::Adaptive => InFlightLimit::Adaptive,
                        _ => InFlightLimit::Auto,
                    },
                    queue: self.queue,
                    queue_timeout: self
                        .queue_timeout_ms
                        .map_or(DEFAULT_QUEUE_TIMEOUT, Duration::from_millis),
                })
            }
        };
        let max_request = match self.max_request_ms {
            Some(MaxRequest::Millis(ms)) => Some(Duration::from_millis(ms)),
            Some(MaxRequest::Off) => None,
            None => protect.then_some(PROTECT_MAX_REQUEST),
        };
        let fills = self.max_concurrent_fills.unwrap_or(
            if protect || max_in_flight == MaxInFlight::Adaptive {
                MaxInFlight::Auto
            } else {
                MaxInFlight::Off
            },
        );
        match (max_in_flight, fills) {
            (MaxInFlight::Adaptive, MaxInFlight::Off) => {
                return Err(FlagConflict::AdaptiveWithoutFillGate);
            }
            (_, MaxInFlight::Adaptive) => {
                return Err(FlagConflict::AdaptiveFills);
            }
            _ => {}
        }
        Ok(ProtectionSettings {
            admission,
            fills,
            prioritize_work: self.prioritize_work.unwrap_or(protect),
            max_request,
            store: StoreOptions {
                durable: self.store.durable.unwrap_or(protect),
                idempotency: self.idempotency.unwrap_or(protect),
                max_concurrent_fills: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn defaults_are_the_faithful_system() {
        let config = Config::try_parse_from(["purchasing-api"]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(
            config.store.orders_file,
            PathBuf::from("PurchaseOrders.txt")
        );
        assert_eq!(config.workload(), Workload::default());
        assert_eq!(config.max_blocking_threads, 512);
        // No protection at all: the faithful system.
        assert_eq!(config.protections().unwrap(), ProtectionSettings::default());
    }

    fn protections(args: &[&str]) -> Result<ProtectionSettings, String> {
        let mut argv = vec!["purchasing-api"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .protections()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn protect_gates_the_fills_and_idles_the_work_unless_told_otherwise() {
        let p = protections(&["--protect"]).unwrap();
        assert_eq!(p.fills, MaxInFlight::Auto);
        assert!(p.prioritize_work);
        let p = protections(&[
            "--protect",
            "--max-in-flight",
            "auto",
            "--max-concurrent-fills",
            "off",
            "--prioritize-work=false",
        ])
        .unwrap();
        assert_eq!(p.fills, MaxInFlight::Off);
        assert!(!p.prioritize_work);
        let p = protections(&["--max-concurrent-fills", "2"]).unwrap();
        assert_eq!(p.fills, MaxInFlight::Fixed(2));
        assert!(
            p.admission.is_none(),
            "the gate alone adds no admission control"
        );
        assert!(protections(&["--max-concurrent-fills", "0"]).is_err());
    }

    #[test]
    fn protect_turns_on_the_recommended_set() {
        let p = protections(&["--protect"]).unwrap();
        assert_eq!(
            p.admission,
            Some(AdmissionSettings {
                max_in_flight: InFlightLimit::Adaptive,
                queue: None,
                queue_timeout: Duration::from_millis(250),
            })
        );
        assert_eq!(p.max_request, Some(Duration::from_secs(10)));
        assert_eq!(
            p.store,
            StoreOptions {
                durable: true,
                idempotency: true,
                max_concurrent_fills: None,
            }
        );
    }

    #[test]
    fn explicit_flags_override_protect() {
        let p = protections(&[
            "--protect",
            "--max-in-flight",
            "4",
            "--queue",
            "0",
            "--queue-timeout-ms",
            "50",
            "--max-request-ms",
            "off",
            "--durable=false",
        ])
        .unwrap();
        let admission = p.admission.unwrap();
        assert_eq!(admission.max_in_flight, InFlightLimit::Fixed(4));
        assert_eq!(admission.queue, Some(0));
        assert_eq!(admission.queue_timeout, Duration::from_millis(50));
        assert_eq!(p.max_request, None);
        assert!(!p.store.durable);
        assert!(p.store.idempotency);

        let p = protections(&["--protect", "--max-in-flight", "off"]).unwrap();
        assert_eq!(p.admission, None);
        let p = protections(&["--protect", "--max-in-flight", "auto"]).unwrap();
        assert_eq!(p.admission.unwrap().max_in_flight, InFlightLimit::Auto);
    }

    #[test]
    fn adaptive_needs_and_brings_the_fill_gate() {
        let p = protections(&["--max-in-flight", "adaptive"]).unwrap();
        assert_eq!(p.admission.unwrap().max_in_flight, InFlightLimit::Adaptive);
        assert_eq!(p.fills, MaxInFlight::Auto);
        let err = protections(&["--protect", "--max-concurrent-fills", "off"]).unwrap_err();
        assert!(err.contains("fill gate"), "{err}");
        assert!(protections(&["--max-concurrent-fills", "adaptive"]).is_err());
    }

    #[test]
    fn each_protection_alone() {
        let p = protections(&["--max-in-flight", "2"]).unwrap();
        assert_eq!(p.admission.unwrap().max_in_flight, InFlightLimit::Fixed(2));
        assert_eq!(p.max_request, None);
        assert_eq!(p.store, StoreOptions::default());

        let p = protections(&["--max-request-ms", "300"]).unwrap();
        assert_eq!(p.admission, None);
        assert_eq!(p.max_request, Some(Duration::from_millis(300)));

        let p = protections(&["--idempotency", "--durable"]).unwrap();
        assert_eq!(
            p.store,
            StoreOptions {
                durable: true,
                idempotency: true,
                max_concurrent_fills: None,
            }
        );
        assert_eq!(p.admission, None);
    }

    #[test]
    fn queue_without_admission_is_refused() {
        let err = protections(&["--queue", "3"]).unwrap_err();
        assert!(err.contains("--max-in-flight"), "{err}");
        assert!(protections(&["--queue-timeout-ms", "3"]).is_err());
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
        assert_eq!(config.logging.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_are_rejected() {
        for args in [
            &["purchasing-api", "--bind", "localhost"][..],
            &["purchasing-api", "--max-blocking-threads", "0"],
            &["purchasing-api", "--delay-ms", "-1"],
            &["purchasing-api", "--max-in-flight", "0"],
            &["purchasing-api", "--max-in-flight", "many"],
            &["purchasing-api", "--max-request-ms", "0"],
            &["purchasing-api", "--durable=perhaps"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
