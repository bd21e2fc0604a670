//! What became of one logical request, and of one attempt at it.

use std::time::Duration;

use crate::error::ReplenishmentError;

/// What became of one logical request (`StockManager::replenish`): the result, and how
/// it was reached.
#[derive(Debug)]
pub struct Delivery {
    /// Success, or the last attempt's error (of the same kinds as without retries).
    pub result: Result<(), ReplenishmentError>,
    /// HTTP requests (or AMQP publishes) made for it: always 1 without a retry policy,
    /// `1..=max_attempts` under one, 0 when nothing could be sent (a request id that is not
    /// a valid header value).
    pub attempts: u32,
    /// A retry was due (a retryable failure, attempts and time left) but the retry budget
    /// had no token for it, so the last error was returned.
    pub budget_denied: bool,
    /// A retry was due but the wait before it (backoff, at least `Retry-After`) would have
    /// run past the deadline or left too little time for another attempt, so the last
    /// error was returned at once instead of after a pointless wait. (Also set when the
    /// last attempt itself ran into the deadline and timed out.)
    pub deadline_denied: bool,
    /// The final answer carried `Idempotent-Replayed: true`: the server answered from the
    /// outcome of an earlier attempt with the same key (e.g. one whose answer was lost)
    /// instead of placing the order again.
    pub replayed: bool,
    /// The logical request's idempotency key, the same on every attempt: over HTTP the
    /// `Idempotency-Key` (on the wire it is quoted), sent only under a retry policy; over
    /// AMQP with reliable delivery the message's `message_id`, always set. `None` otherwise,
    /// or when nothing was sent.
    pub idempotency_key: Option<uuid::Uuid>,
    /// How long the final attempt took, from sending to its answer (or failure): the
    /// server's own response time, without the backoff waits between attempts. Over AMQP
    /// the publish latency: connecting when needed, publishing and (reliable) the confirm.
    pub last_attempt: Duration,
    /// AMQP, reliable delivery: how often the message was published again, with the same
    /// `message_id`, on a new connection (another node when there are several) because the
    /// one it went out on was lost before the broker confirmed it — summed over the
    /// attempts. Not counted in `attempts`: the caller asked for nothing. 0 otherwise.
    pub republished: u32,
}

impl Delivery {
    pub(super) fn nothing_sent(error: ReplenishmentError) -> Self {
        Delivery {
            result: Err(error),
            attempts: 0,
            budget_denied: false,
            deadline_denied: false,
            replayed: false,
            idempotency_key: None,
            last_attempt: Duration::ZERO,
            republished: 0,
        }
    }
}

/// The answer to one attempt, with what the retry loop needs from its headers.
pub(super) struct Answer {
    pub(super) result: Result<(), ReplenishmentError>,
    /// The server's `Retry-After`, on a refusal.
    pub(super) retry_after: Option<Duration>,
    pub(super) replayed: bool,
    /// Republished after a lost connection (see [`Delivery::republished`]).
    pub(super) republished: u32,
}

impl Answer {
    /// An attempt's outcome that carried no `Retry-After` and was no replay.
    pub(super) fn plain(result: Result<(), ReplenishmentError>) -> Self {
        Answer {
            result,
            retry_after: None,
            replayed: false,
            republished: 0,
        }
    }
}
