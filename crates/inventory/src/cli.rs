//! The `inventory` command line: argument definitions and what each command does.
//!
//! `main.rs` only parses the arguments and drives [`run`] on a runtime. The transport
//! (HTTP to the purchasing API, or AMQP to its queue) is chosen here, once; from then on
//! one loop sends the codes and one function prints each outcome, whatever the transport.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::amqp::DeliveryMode;
use crate::amqp_url::{AmqpUrls, PURCHASING_AMQP_URL};
use crate::base_url::BaseUrl;
use crate::retry::{MAX_ATTEMPTS_LIMIT, RetryPolicy};
use crate::stock_manager::{
    DEFAULT_TIMEOUT, DEFAULT_URL, Delivery, PURCHASING_API_URL, StockManager, new_request_id,
};

/// The most `--retries`: the policy's attempt limit, less the first attempt.
pub const MAX_RETRIES: u32 = MAX_ATTEMPTS_LIMIT - 1;

/// How to start the API, for the hint shown when it is not reachable.
const START_API_HINT: &str = "cargo run --release -p purchasing-api";

/// How to start a broker, for the hint shown when it is not reachable.
const START_BROKER_HINT: &str = "cargo run --release -p loadtest -- broker";

/// The exit status of a usage error, as clap's own.
const USAGE_ERROR: u8 = 2;

/// The inventory side of the RPC spike lab: asks the purchasing API to replenish stock.
#[derive(Debug, Parser)]
#[command(name = "inventory", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Request stock replenishment for each item code, one after another, in order.
    ///
    /// Over HTTP (the default) each code is a POST to the purchasing API; with --amqp-url
    /// each code is a message published to the queue the purchasing worker consumes.
    /// Prints one line per code (`ok` or `failed`, the code, its request id, the attempts
    /// when more than one, and why it failed). Exits with 0 when every request succeeded,
    /// 1 otherwise, 2 on a usage error.
    Request(RequestArgs),
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Base URL of the purchasing API (http:// only).
    ///
    /// Cannot be combined with --amqp-url, also when either comes from its environment
    /// variable.
    #[arg(
        long,
        value_name = "URL",
        env = PURCHASING_API_URL,
        default_value = DEFAULT_URL,
        value_parser = BaseUrl::parse,
        conflicts_with = "amqp_url",
    )]
    pub url: BaseUrl,

    /// Publish the orders to this RabbitMQ broker instead of calling the API (amqp:// only,
    /// e.g. amqp://guest:guest@127.0.0.1:5672/%2f, as `loadtest broker` prints it).
    ///
    /// Several brokers — the nodes of a cluster — as a comma-separated list, or the flag
    /// repeated (the lists add up, in order; the environment variable takes a comma list);
    /// a comma in a password is written %2C. The first reachable one is used, and when its
    /// connection is lost the next call goes on to the next one. One connection is opened
    /// for all the codes. Each code becomes one message on the queue
    /// stock-replenishment-requests, as --delivery describes; `ok` means the broker has it
    /// (reliable) or it was handed to the connection (faithful) — the order is written
    /// later, by the purchasing worker.
    #[arg(
        long,
        value_name = "URL",
        env = PURCHASING_AMQP_URL,
        action = clap::ArgAction::Append,
        value_parser = AmqpUrls::value_parser(),
    )]
    pub amqp_url: Vec<AmqpUrls>,

    /// How the orders travel through the queue (with --amqp-url).
    ///
    /// faithful: as the original — a non-durable queue, transient messages with nothing but
    /// the code, no publisher confirms; `ok` once the message is handed to the connection,
    /// so a broker restart or a crash loses it. The request id is printed but not sent.
    ///
    /// reliable: a durable queue (with a dead-letter queue), persistent messages with a
    /// message id and the request id, publisher confirms; `ok` once the broker has it on
    /// disk; a message unconfirmed when its connection is lost is published again, with
    /// the same message id, on the next broker. Both sides must use the same mode: a
    /// broker that has the queue from the other mode refuses it (the error says how to fix
    /// that).
    #[arg(
        long,
        value_name = "MODE",
        default_value_t = DeliveryMode::Faithful,
        value_parser = PossibleValuesParser::new(DeliveryMode::ALL.map(DeliveryMode::as_str))
            .try_map(|mode| mode.parse::<DeliveryMode>()),
        requires = "amqp_url",
    )]
    pub delivery: DeliveryMode,

    /// Seconds each code's request may take before giving up, retries and the waits
    /// between them included; fractions allowed (e.g. 0.5).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = Seconds(DEFAULT_TIMEOUT),
        value_parser = parse_timeout,
    )]
    pub timeout: Seconds,

    /// Extra attempts after a failed first one (0 = no retries, as the original; at most 9).
    ///
    /// With N > 0 each request carries an Idempotency-Key, kept across its retries so the
    /// order is placed at most once, and the time it has left (X-Request-Budget-Ms).
    /// Retried: 408, 409, 429, 500, 502, 503, 504, refused connections and broken
    /// exchanges; never a request the server called wrong (400, 404, 413, 422, …). Waits
    /// between attempts are random up to 0.1 s, 0.2 s, 0.4 s, … (at most 5 s), and at least
    /// the server's Retry-After; no wait runs past --timeout. A retry budget allows about
    /// one retry per ten requests once the first request's retries are spent.
    ///
    /// Over AMQP only with --delivery reliable: a retry publishes the message again with
    /// the same message id (the worker drops duplicates) after a refused connection, a
    /// timeout, a missing confirm, a nack, a returned message or a lost connection — never
    /// after a queue mismatch. A faithful message has no id, so retrying it could place an
    /// order twice: refused as a usage error.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RETRIES)),
    )]
    pub retries: u32,

    /// Item codes to order; the API decides which are valid.
    #[arg(value_name = "CODE", required = true)]
    pub codes: Vec<String>,
}

/// A duration given in (possibly fractional) seconds on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// Why a `--timeout` value was refused; clap prints it after the flag and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutError {
    #[error("not a number of seconds (e.g. 30 or 0.5)")]
    NotANumber,
    #[error("the timeout must be a number of seconds greater than 0 (e.g. 30 or 0.5)")]
    NotPositive,
    #[error("the timeout must be at least 1 nanosecond (e.g. 30 or 0.5)")]
    BelowOneNanosecond,
    #[error("the timeout is too large (e.g. 30 or 0.5)")]
    TooLarge,
}

/// Parses `--timeout`: a positive, finite number of seconds.
pub fn parse_timeout(text: &str) -> Result<Seconds, TimeoutError> {
    let secs: f64 = text.trim().parse().map_err(|_| TimeoutError::NotANumber)?;
    // Written so that NaN is refused too.
    if !secs.is_finite() || secs <= 0.0 {
        return Err(TimeoutError::NotPositive);
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) if !duration.is_zero() => Ok(Seconds(duration)),
        Ok(_) => Err(TimeoutError::BelowOneNanosecond),
        Err(_) => Err(TimeoutError::TooLarge),
    }
}

impl RequestArgs {
    /// Every `--amqp-url` given, as one list in order; `None` for HTTP.
    pub fn amqp_urls(&self) -> Option<AmqpUrls> {
        AmqpUrls::concat(&self.amqp_url)
    }

    /// The combinations clap cannot check: retries over AMQP need reliable delivery.
    pub fn check(&self) -> Result<(), clap::Error> {
        if !self.amqp_url.is_empty() && self.delivery == DeliveryMode::Faithful && self.retries > 0
        {
            let mut command = Cli::command();
            let request = command
                .find_subcommand_mut("request")
                .map(std::mem::take)
                .unwrap_or_default();
            return Err(request.bin_name("inventory request").error(
                clap::error::ErrorKind::ArgumentConflict,
                "--retries needs --delivery reliable over AMQP: a faithful message carries no \
                 message id, so a repeated publish could place the order twice (the original \
                 never retried)",
            ));
        }
        Ok(())
    }
}

/// Runs the parsed command and says how the process should exit.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Request(args) => request(args).await,
    }
}

/// `inventory request`: sends each code in turn, reports each outcome on stdout.
async fn request(args: RequestArgs) -> ExitCode {
    if let Err(usage) = args.check() {
        let _ = usage.print();
        return ExitCode::from(USAGE_ERROR);
    }
    let policy = (args.retries > 0).then(|| RetryPolicy::with_max_attempts(args.retries + 1));
    let amqp_urls = args.amqp_urls();
    let builder = match &amqp_urls {
        Some(urls) => StockManager::amqp_builder(urls.clone(), args.delivery),
        None => StockManager::builder(args.url.clone()),
    };
    let manager = match builder.timeout(args.timeout.0).retry_policy(policy).build() {
        Ok(manager) => manager,
        Err(error) => {
            // Writes to a closed stdout/stderr are ignored: the exit code still tells.
            let _ = writeln!(io::stderr(), "error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0usize;
    let mut could_not_connect = 0usize;
    // Ctrl-C between two codes or during one: every outcome known so far is printed
    // already; the code in flight is named, with what may have happened to it.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    for (sent, code) in args.codes.iter().enumerate() {
        let request_id = new_request_id();
        let delivery = tokio::select! {
            biased;
            _ = &mut interrupted => {
                let fate = if amqp_urls.is_some() { "may or may not be queued" }
                    else { "may or may not have been placed" };
                let _ = writeln!(io::stdout(), "{}", interrupted_line(code, &request_id, fate));
                let _ = writeln!(io::stderr(),
                    "interrupted: {} of {} codes not sent", args.codes.len() - sent - 1,
                    args.codes.len());
                return ExitCode::from(INTERRUPTED);
            }
            delivery = manager.replenish(code, &request_id) => delivery,
        };
        if let Err(error) = &delivery.result {
            failed += 1;
            if error.is_connect() {
                could_not_connect += 1;
            }
        }
        let _ = writeln!(
            io::stdout(),
            "{}",
            outcome_line(code, &request_id, &delivery)
        );
    }
    if failed > 0 && failed == could_not_connect {
        let hint = match &amqp_urls {
            Some(urls) if urls.len() == 1 => format!(
                "the RabbitMQ broker at {urls} is not reachable; start one with \
                 `{START_BROKER_HINT}` (it prints the URL to pass)"
            ),
            Some(urls) => format!(
                "none of the {} RabbitMQ brokers ({urls}) is reachable; start one with \
                 `{START_BROKER_HINT}` (it prints the URL to pass)",
                urls.len()
            ),
            None => format!(
                "the purchasing API at {} is not reachable; start it with `{START_API_HINT}`",
                args.url
            ),
        };
        let _ = writeln!(io::stderr(), "{hint}");
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The exit status after Ctrl-C: 128 + SIGINT, as a shell reports an interrupted command.
const INTERRUPTED: u8 = 130;

/// The line for the code in flight when Ctrl-C came: `interrupted  CODE  (request id
/// ID): FATE`.
fn interrupted_line(code: &str, request_id: &str, fate: &str) -> String {
    format!(
        "interrupted  {}  (request id {request_id}): {fate} (Ctrl-C came while it was being \
         sent)",
        printable(code)
    )
}

/// `code` with its control characters escaped, so that every outcome stays on one line.
fn printable(code: &str) -> String {
    code.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One line per code: `ok      CODE  (request id ID)` or
/// `failed  CODE  (request id ID): WHY`. After the id come, when they apply, the attempts
/// (`3 attempts`), a server replay (`replayed`), why a due retry was not made (`retry
/// budget spent`, `no time left to retry`) and a message sent again on a new connection
/// (`republished after a lost connection`). Control characters in the code are
/// escaped so that every outcome stays on its own line.
pub fn outcome_line(code: &str, request_id: &str, delivery: &Delivery) -> String {
    let shown = printable(code);
    let mut about = format!("request id {request_id}");
    if delivery.attempts > 1 {
        about.push_str(&format!(", {} attempts", delivery.attempts));
    }
    if delivery.replayed {
        about.push_str(", replayed");
    }
    if delivery.budget_denied {
        about.push_str(", retry budget spent");
    }
    if delivery.deadline_denied {
        about.push_str(", no time left to retry");
    }
    match delivery.republished {
        0 => {}
        1 => about.push_str(", republished after a lost connection"),
        n => about.push_str(&format!(", republished {n} times after lost connections")),
    }
    match &delivery.result {
        Ok(()) => format!("ok      {shown}  ({about})"),
        Err(error) => format!("failed  {shown}  ({about}): {error}"),
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;
    use crate::error::ReplenishmentError;

    fn parse(args: &[&str]) -> Result<RequestArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("inventory").chain(args.iter().copied()))?;
        let Command::Request(args) = cli.command;
        Ok(args)
    }

    /// Whether the environment would supply a URL flag (the tests of defaults and
    /// conflicts are skipped then: the variables rightly count).
    fn urls_in_environment() -> bool {
        std::env::var_os(PURCHASING_API_URL).is_some()
            || std::env::var_os(PURCHASING_AMQP_URL).is_some()
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeouts_accept_fractions() {
        assert_eq!(parse_timeout("30"), Ok(Seconds(Duration::from_secs(30))));
        assert_eq!(
            parse_timeout("0.5"),
            Ok(Seconds(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_timeout(" 2.25 "),
            Ok(Seconds(Duration::from_millis(2250)))
        );
    }

    #[test]
    fn timeouts_must_be_positive_finite_numbers() {
        for bad in [
            "0", "0.0", "-1", "-0.5", "NaN", "inf", "1e300", "1e-10", "", "ten", "5s",
        ] {
            let error = parse_timeout(bad).unwrap_err().to_string();
            assert!(error.ends_with("(e.g. 30 or 0.5)"), "{bad:?}: {error}");
        }
        for not_positive in ["0", "-1", "NaN", "inf"] {
            assert_eq!(
                parse_timeout(not_positive).unwrap_err().to_string(),
                "the timeout must be a number of seconds greater than 0 (e.g. 30 or 0.5)"
            );
        }
        assert_eq!(
            parse_timeout("ten").unwrap_err().to_string(),
            "not a number of seconds (e.g. 30 or 0.5)"
        );
    }

    #[test]
    fn the_default_timeout_prints_as_the_originals() {
        assert_eq!(Seconds(DEFAULT_TIMEOUT).to_string(), "30");
        assert_eq!(Seconds(Duration::from_millis(500)).to_string(), "0.5");
    }

    #[test]
    fn parses_codes_in_order_with_defaults() {
        // Skipped when a variable is set: the default would (rightly) come from it.
        if urls_in_environment() {
            return;
        }
        let args = parse(&["request", "b", "a", "b"]).unwrap();
        assert_eq!(args.codes, ["b", "a", "b"]);
        assert_eq!(args.url.as_str(), DEFAULT_URL);
        assert_eq!(args.timeout, Seconds(DEFAULT_TIMEOUT));
        assert_eq!(args.retries, 0, "retries are off by default");
        assert!(args.amqp_urls().is_none(), "HTTP by default");
        assert_eq!(args.delivery, DeliveryMode::Faithful);
    }

    #[test]
    fn amqp_takes_a_broker_url_and_a_delivery_mode() {
        if urls_in_environment() {
            return;
        }
        let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
        let args = parse(&["request", "--amqp-url", url, "A", "B"]).unwrap();
        assert_eq!(args.amqp_urls().unwrap().first().host(), "127.0.0.1");
        assert_eq!(args.delivery, DeliveryMode::Faithful, "faithful by default");
        let args = parse(&["request", "--amqp-url", url, "--delivery", "reliable", "A"]).unwrap();
        assert_eq!(args.delivery, DeliveryMode::Reliable);
        assert!(args.check().is_ok());
        let bad = parse(&["request", "--amqp-url", url, "--delivery", "durable", "A"]).unwrap_err();
        assert_eq!(bad.kind(), ErrorKind::InvalidValue);
        assert!(bad.to_string().contains("faithful, reliable"), "{bad}");
        let tls = parse(&["request", "--amqp-url", "amqps://broker", "A"]).unwrap_err();
        assert_eq!(tls.kind(), ErrorKind::ValueValidation);
        assert!(tls.to_string().contains("without TLS"), "{tls}");
    }

    #[test]
    fn amqp_url_takes_a_list_and_repeats_add_up_in_order() {
        if urls_in_environment() {
            return;
        }
        let ports = |args: &RequestArgs| -> Vec<u16> {
            args.amqp_urls().unwrap().iter().map(|u| u.port()).collect()
        };
        let (a, b, c) = ("amqp://h:5671", "amqp://h:5672", "amqp://h:5673");
        let listed = parse(&["request", "--amqp-url", &format!("{a}, {b}"), "X"]).unwrap();
        assert_eq!(ports(&listed), [5671, 5672]);
        let repeated = parse(&[
            "request",
            "--amqp-url",
            &format!("{a},{b}"),
            "--amqp-url",
            c,
            "X",
        ])
        .unwrap();
        assert_eq!(ports(&repeated), [5671, 5672, 5673]);
        let hole = parse(&["request", "--amqp-url", &format!("{a},,{b}"), "X"]).unwrap_err();
        assert_eq!(hole.kind(), ErrorKind::ValueValidation);
        assert!(
            hole.to_string().contains("empty element (2 of 3)"),
            "{hole}"
        );
    }

    #[test]
    fn url_and_amqp_url_exclude_each_other() {
        if urls_in_environment() {
            return;
        }
        let both = parse(&[
            "request",
            "--url",
            "http://vm:8080",
            "--amqp-url",
            "amqp://vm",
            "A",
        ])
        .unwrap_err();
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(both.exit_code(), 2);
        let delivery_alone = parse(&["request", "--delivery", "reliable", "A"]).unwrap_err();
        assert_eq!(delivery_alone.kind(), ErrorKind::MissingRequiredArgument);
        assert!(
            delivery_alone.to_string().contains("--amqp-url"),
            "{delivery_alone}"
        );
    }

    #[test]
    fn retries_over_amqp_need_reliable_delivery() {
        if urls_in_environment() {
            return;
        }
        let url = "amqp://vm";
        let faithful = parse(&["request", "--amqp-url", url, "--retries", "2", "A"]).unwrap();
        let usage = faithful.check().unwrap_err();
        assert_eq!(usage.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(usage.exit_code(), 2);
        let text = usage.to_string();
        assert!(
            text.contains("--retries needs --delivery reliable")
                && text.contains("inventory request"),
            "{text}"
        );
        let reliable = parse(&[
            "request",
            "--amqp-url",
            url,
            "--delivery",
            "reliable",
            "--retries",
            "2",
            "A",
        ])
        .unwrap();
        assert!(reliable.check().is_ok());
        let http = parse(&["request", "--retries", "2", "A"]).unwrap();
        assert!(http.check().is_ok(), "HTTP retries are unaffected");
    }

    #[test]
    fn retries_go_up_to_nine() {
        assert_eq!(
            parse(&["request", "--retries", "2", "x"]).unwrap().retries,
            2
        );
        assert_eq!(
            parse(&["request", "--retries", "9", "x"]).unwrap().retries,
            9
        );
        assert_eq!(
            parse(&["request", "--retries", "0", "x"]).unwrap().retries,
            0
        );
        for bad in ["10", "-1", "two", ""] {
            let flag = format!("--retries={bad}");
            let error = parse(&["request", &flag, "x"]).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad:?}: {error}");
        }
        let ten = parse(&["request", "--retries", "10", "x"]).unwrap_err();
        assert!(ten.to_string().contains("0..=9"), "{ten}");
    }

    #[test]
    fn flags_override_defaults() {
        let args = parse(&[
            "request",
            "--url",
            "http://vm:9000/",
            "--timeout",
            "0.25",
            "x",
        ])
        .unwrap();
        assert_eq!(args.url.as_str(), "http://vm:9000");
        assert_eq!(args.timeout, Seconds(Duration::from_millis(250)));
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        assert_eq!(
            parse(&["request"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        let https = parse(&["request", "--url", "https://vm", "x"]).unwrap_err();
        assert_eq!(https.kind(), ErrorKind::ValueValidation);
        assert!(https.to_string().contains("without TLS"), "{https}");
        let zero = parse(&["request", "--timeout", "0", "x"]).unwrap_err();
        assert_eq!(zero.kind(), ErrorKind::ValueValidation);
        assert_eq!(zero.exit_code(), 2);
    }

    fn delivery(result: Result<(), ReplenishmentError>, attempts: u32) -> Delivery {
        Delivery {
            result,
            attempts,
            budget_denied: false,
            deadline_denied: false,
            replayed: false,
            idempotency_key: None,
            last_attempt: std::time::Duration::ZERO,
            republished: 0,
        }
    }

    fn rejected(status: u16, detail: Option<&str>) -> Result<(), ReplenishmentError> {
        Err(ReplenishmentError::Rejected {
            status,
            title: None,
            detail: detail.map(str::to_owned),
        })
    }

    #[test]
    fn outcome_lines() {
        assert_eq!(
            outcome_line("123", "id-1", &delivery(Ok(()), 1)),
            "ok      123  (request id id-1)"
        );
        assert_eq!(
            outcome_line(
                "a\tb\nc",
                "id-2",
                &delivery(rejected(400, Some("control character")), 1)
            ),
            "failed  a\\tb\\nc  (request id id-2): the purchasing API rejected the request: \
             400 Bad Request: control character"
        );
    }

    #[test]
    fn outcome_lines_tell_how_retries_went() {
        assert_eq!(
            outcome_line("123", "id-1", &delivery(Ok(()), 2)),
            "ok      123  (request id id-1, 2 attempts)"
        );
        let replayed = Delivery {
            replayed: true,
            ..delivery(Ok(()), 3)
        };
        assert_eq!(
            outcome_line("123", "id-1", &replayed),
            "ok      123  (request id id-1, 3 attempts, replayed)"
        );
        let denied = Delivery {
            budget_denied: true,
            ..delivery(rejected(503, None), 1)
        };
        assert_eq!(
            outcome_line("123", "id-1", &denied),
            "failed  123  (request id id-1, retry budget spent): the purchasing API rejected \
             the request: 503 Service Unavailable"
        );
        let moved = Delivery {
            republished: 1,
            ..delivery(Ok(()), 1)
        };
        assert_eq!(
            outcome_line("123", "id-1", &moved),
            "ok      123  (request id id-1, republished after a lost connection)"
        );
        let late = Delivery {
            deadline_denied: true,
            ..delivery(rejected(503, None), 2)
        };
        assert_eq!(
            outcome_line("123", "id-1", &late),
            "failed  123  (request id id-1, 2 attempts, no time left to retry): the purchasing \
             API rejected the request: 503 Service Unavailable"
        );
    }
}
