//! Deadlines: an order is worked on only if it can finish while its client still waits.
//!
//! The client sends its remaining time budget in `X-Request-Budget-Ms` (relative
//! milliseconds, so clocks need not agree — the same idea as gRPC's `grpc-timeout` and
//! Envoy's `x-envoy-expected-rq-timeout-ms`). The deadline is
//! `arrival + min(budget, --max-request-ms)`, or `arrival + --max-request-ms` without
//! the header. It is checked three times, each time before anything is recorded:
//!
//! 1. on arrival (here): a budget that cannot cover the estimated work (delay +
//!    allocation) is answered 504 at once;
//! 2. after waiting in the admission queue ([`crate::admission`]), for the same reason;
//! 3. by the store, before the work starts and again just before the append
//!    ([`purchasing_persistence::SubmitOptions::deadline`]).
//!
//! So a client that gave up leaves no ghost order behind: work it no longer waits for is
//! either never started or never recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::{Metrics, Stage};
use crate::problem::Problem;

/// The client's remaining time budget, in whole milliseconds.
pub const BUDGET_HEADER: HeaderName =
    HeaderName::from_static(wire_contract::http::REQUEST_BUDGET_HEADER);

/// The header as people spell it, for messages (header names are case-insensitive).
const BUDGET_HEADER_TEXT: &str = "X-Request-Budget-Ms";

/// Longest deadline honoured, whatever `--max-request-ms` says: keeps `Instant`
/// arithmetic far from overflow. Nobody waits a day for an HTTP answer.
const LONGEST: Duration = Duration::from_secs(24 * 60 * 60);

/// The instant by which a request must be answered; a request extension set by
/// [`enforce`], read by admission control and passed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// Time left at `now` once `work` is done; zero when it cannot be done in time.
    pub fn room_after(self, work: Duration, now: Instant) -> Duration {
        self.0.saturating_duration_since(now).saturating_sub(work)
    }

    /// True when `work` started at `now` would end after the deadline.
    pub fn cannot_fit(self, work: Duration, now: Instant) -> bool {
        now + work > self.0
    }
}

/// The deadline policy: shared state of the [`enforce`] layer.
#[derive(Debug)]
pub struct Deadlines {
    max: Duration,
    work_estimate: Duration,
    metrics: Arc<Metrics>,
}

impl Deadlines {
    pub fn new(max: Duration, work_estimate: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            max: max.min(LONGEST),
            work_estimate,
            metrics,
        }
    }
}

/// Parses `X-Request-Budget-Ms`: whole milliseconds, digits only. Any number of digits
/// is accepted: one too large for 64 bits means "longer than the server allows", like
/// every number above `--max-request-ms` (the server's maximum applies either way).
pub fn parse_budget(value: &[u8]) -> Result<Duration, Problem> {
    std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .map(|v| v.parse::<u64>().unwrap_or(u64::MAX))
        .map(Duration::from_millis)
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "the {BUDGET_HEADER_TEXT} header must be the whole number of milliseconds the \
                 client will still wait, such as 5000"
            ))
        })
}

/// The 504 for an order whose deadline cannot be met; counts it.
pub fn reject(metrics: &Metrics, stage: Stage, detail: String) -> Response {
    metrics.deadline_rejected(stage);
    Problem::new(StatusCode::GATEWAY_TIMEOUT, detail).into_response()
}

fn cannot_be_met(deadline: Deadline, work: Duration, now: Instant) -> String {
    format!(
        "the request's deadline cannot be met: {} ms left, an order takes about {} ms; \
         nothing was recorded. Retry with a larger {BUDGET_HEADER_TEXT}, or later",
        deadline.0.saturating_duration_since(now).as_millis(),
        work.as_millis(),
    )
}

/// The deadline layer of the orders route: sets [`Deadline`], refuses at once what
/// cannot finish in time, 400 for a malformed budget.
pub async fn enforce(
    State(deadlines): State<Arc<Deadlines>>,
    mut request: Request,
    next: Next,
) -> Response {
    let arrival = Instant::now();
    let mut budgets = request.headers().get_all(&BUDGET_HEADER).iter();
    let budget = match (budgets.next(), budgets.next()) {
        (None, _) => deadlines.max,
        (Some(value), None) => match parse_budget(value.as_bytes()) {
            Ok(budget) => budget.min(deadlines.max),
            Err(problem) => return problem.into_response(),
        },
        (Some(_), Some(_)) => {
            return Problem::bad_request(format!("send at most one {BUDGET_HEADER_TEXT} header"))
                .into_response();
        }
    };
    let deadline = Deadline(arrival + budget);
    if deadline.cannot_fit(deadlines.work_estimate, arrival) {
        let detail = cannot_be_met(deadline, deadlines.work_estimate, arrival);
        return reject(&deadlines.metrics, Stage::Arrival, detail);
    }
    request.extensions_mut().insert(deadline);
    next.run(request).await
}

/// The check after waiting for an admission slot: the 504's detail when the deadline can
/// no longer be met (the caller answers it with [`reject`]).
pub fn unmeetable_after_wait(deadline: Deadline, work_estimate: Duration) -> Option<String> {
    let now = Instant::now();
    deadline
        .cannot_fit(work_estimate, now)
        .then(|| cannot_be_met(deadline, work_estimate, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_whole_milliseconds() {
        assert_eq!(parse_budget(b"5000").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_budget(b" 0 ").unwrap(), Duration::ZERO);
        // Past 64 bits is no error: like u64::MAX itself, it is "more than the server
        // allows", and the server's maximum applies.
        let most = Duration::from_millis(u64::MAX);
        assert_eq!(parse_budget(b"18446744073709551615").unwrap(), most);
        assert_eq!(parse_budget(b"18446744073709551616").unwrap(), most);
        assert_eq!(parse_budget(b"99999999999999999999999").unwrap(), most);
        for bad in [&b""[..], b"-1", b"1.5", b"5s", b"+5", b"\xff"] {
            let problem = parse_budget(bad).unwrap_err();
            assert_eq!(problem.status, StatusCode::BAD_REQUEST);
            assert!(problem.detail.contains("X-Request-Budget-Ms"));
        }
    }

    #[test]
    fn room_and_fit() {
        let now = Instant::now();
        let deadline = Deadline(now + Duration::from_millis(100));
        assert!(deadline.cannot_fit(Duration::from_millis(101), now));
        assert!(!deadline.cannot_fit(Duration::from_millis(100), now));
        assert_eq!(
            deadline.room_after(Duration::from_millis(30), now),
            Duration::from_millis(70)
        );
        assert_eq!(
            deadline.room_after(Duration::from_millis(300), now),
            Duration::ZERO
        );
    }
}
