//! The opt-in retry policy: how many attempts a logical request may take, how long to wait
//! between them, which failures deserve another attempt, and the budget that stops retries
//! from multiplying a spike.
//!
//! Off by default: the original client never retried, and the faithful baseline must not
//! either. Under a policy every attempt of one logical request carries the same
//! `Idempotency-Key`, so the server can tell a retry from a new order and a retried `POST`
//! cannot place the order twice (see [`crate::wire`] for the headers).
//!
//! Why each piece (after the SRE book's chapter "Handling Overload"):
//!
//! * **Few attempts** ([`DEFAULT_MAX_ATTEMPTS`]): every retry is more load on a server that
//!   is probably failing because of load.
//! * **Full jitter**: the wait before retry *n* is drawn uniformly from
//!   `[0, min(max_delay, base_delay · 2ⁿ⁻¹)]`, so clients that failed together do not come
//!   back together. (tower's `ExponentialBackoff` is *not* full jitter: it adds a random
//!   amount on top of the exponential delay, so every client waits at least the
//!   exponential part and the wave stays synchronized.)
//! * **`Retry-After`** is a floor: the server knows better when it will have room.
//! * **A retry budget** ([`RetryBudget`]): a token bucket shared by every clone of a
//!   manager. Each logical request deposits [`DEFAULT_BUDGET_RATIO`] of a token, each retry
//!   withdraws one, so retries stay ≈ 10 % of requests and the worst-case amplification of
//!   a spike is ≈ 1.1× instead of 3×.
//! * **The deadline**: the manager's timeout bounds the whole logical request, retries and
//!   waits included; no wait runs past it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{ConfigError, ReplenishmentError};

/// Attempts per logical request when not told otherwise, the first included (SRE book:
/// at most 3).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The most attempts a policy may allow. Beyond this a "retry" is a load generator.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// The backoff's base: the ceiling of the first retry's random wait.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);

/// The backoff's cap: no random wait is drawn from a wider range than this.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(5);

/// Tokens each logical request deposits in the retry budget: retries ≤ 10 % of requests.
pub const DEFAULT_BUDGET_RATIO: f64 = 0.1;

/// The most tokens the budget holds. A long calm period saves up at most this many retries
/// for the next burst of failures, so a spike is amplified by at most
/// `1 + ratio` plus this constant, never by a factor.
pub const DEFAULT_BUDGET_MAX_TOKENS: f64 = 10.0;

/// The least the deadline header gives away for the answer's way back (and the client's
/// own scheduling under load), however short the remaining time…
const MIN_BUDGET_MARGIN: Duration = Duration::from_millis(50);

/// …and the share of the remaining time it gives away when that is larger (1/20 = 5 %).
const BUDGET_MARGIN_DIVISOR: u32 = 20;

/// The least time a retry must have left after its wait. With less it could only time out
/// or be refused as already spent: load on the server for nothing. (The server still judges
/// whether the budget it is given covers its work.)
pub const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(100);

/// The statuses worth another attempt with the same idempotency key:
///
/// * 408 Request Timeout, 503 Service Unavailable (shed), 504 Gateway Timeout (deadline),
///   429 Too Many Requests, 502 Bad Gateway — the server or a proxy had no room or no
///   time; the request itself is fine.
/// * 409 Conflict — under an idempotency key this means "the same key is still in
///   progress": asking again later gets the first attempt's outcome replayed.
/// * 500 Internal Server Error — retried because every attempt carries the idempotency key:
///   if the first attempt's outcome was recorded, the retry replays it (at worst the same
///   500 again, for one token of the budget); if it was not, nothing was written and the
///   retry is a clean second try. Without the key a retried 500 could double an order, but
///   the policy never sends a request without it.
///
/// Never retried: any other status, in particular 400/404/405/413/415/422 (the request
/// itself is wrong and will be wrong again), 501/505, and 3xx.
pub const RETRYABLE_STATUSES: [u16; 7] = [408, 409, 429, 500, 502, 503, 504];

/// How a `StockManager` retries; see the module documentation for the reasoning.
///
/// Plain settings, checked when the manager is built
/// (`StockManagerBuilder::build`). The shared state (the budget's tokens) lives
/// in a [`RetryBudget`], not here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per logical request, the first included: `1..=`[`MAX_ATTEMPTS_LIMIT`].
    /// 1 sends the idempotency and deadline headers but never retries.
    /// Default [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// The ceiling of the first retry's random wait; each further retry doubles it.
    /// Default [`DEFAULT_BASE_DELAY`].
    pub base_delay: Duration,
    /// No ceiling grows beyond this. Default [`DEFAULT_MAX_DELAY`].
    pub max_delay: Duration,
    /// Tokens each logical request deposits in the budget, `0.0..=1.0`; a retry costs one.
    /// Default [`DEFAULT_BUDGET_RATIO`].
    pub budget_ratio: f64,
    /// The budget's capacity, `0.0..=1000.0` tokens. Default [`DEFAULT_BUDGET_MAX_TOKENS`].
    pub budget_max_tokens: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            budget_ratio: DEFAULT_BUDGET_RATIO,
            budget_max_tokens: DEFAULT_BUDGET_MAX_TOKENS,
        }
    }
}

impl RetryPolicy {
    /// The default policy with `max_attempts` attempts (the first included).
    pub fn with_max_attempts(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        }
    }

    /// Refuses settings that cannot work, saying which and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| Err(ConfigError::InvalidRetryPolicy { reason });
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&self.max_attempts) {
            return invalid(format!(
                "max_attempts is {}; it must be between 1 and {MAX_ATTEMPTS_LIMIT}",
                self.max_attempts
            ));
        }
        if self.base_delay > self.max_delay {
            return invalid(format!(
                "base_delay {:?} is larger than max_delay {:?}",
                self.base_delay, self.max_delay
            ));
        }
        if !(0.0..=1.0).contains(&self.budget_ratio) {
            return invalid(format!(
                "budget_ratio is {}; it must be between 0 and 1",
                self.budget_ratio
            ));
        }
        if !(0.0..=1000.0).contains(&self.budget_max_tokens) {
            return invalid(format!(
                "budget_max_tokens is {}; it must be between 0 and 1000",
                self.budget_max_tokens
            ));
        }
        Ok(())
    }

    /// The ceiling of the random wait before retry number `retry` (1 = the second
    /// attempt): `min(max_delay, base_delay · 2^(retry − 1))`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }

    /// Full jitter: a wait drawn uniformly from `[0, backoff_ceiling(retry)]`.
    pub(crate) fn backoff(&self, retry: u32, jitter: &mut Jitter) -> Duration {
        let ceiling = self.backoff_ceiling(retry).as_nanos();
        // The ceiling is at most max_delay, far below u64::MAX nanoseconds (584 years).
        let ceiling = u64::try_from(ceiling).unwrap_or(u64::MAX - 1);
        Duration::from_nanos(jitter.next_u64() % (ceiling + 1))
    }

    /// The tokens a fresh budget starts with: one logical request's worth of retries
    /// (`max_attempts − 1`, at most the capacity). Enough that a single failing request —
    /// say the CLI's only one — can use its whole policy, and a constant, so a spike of N
    /// requests still makes at most `N · (1 + ratio) + max_attempts − 1` attempts.
    pub fn initial_budget_tokens(&self) -> f64 {
        f64::from(self.max_attempts.saturating_sub(1)).min(self.budget_max_tokens)
    }
}

/// Whether `error` deserves another attempt (time, attempts and budget permitting).
///
/// Retried: the statuses in [`RETRYABLE_STATUSES`]; connect errors (nothing was sent);
/// transport failures such as a reset mid-exchange (the order's fate is unknown, and the
/// idempotency key makes asking again safe); a timed-out attempt — which in practice ends
/// the request anyway, because each attempt may use all the time that remains. Never: a
/// request id that cannot be sent (nothing will change on a second try).
///
/// Over AMQP (reliable delivery only: every attempt republishes with the same
/// `message_id`, which the worker deduplicates): retried are a failed connect, a timeout,
/// a missing confirm, a nack, a returned message (the next attempt declares the queue
/// again) and a lost connection (the next attempt reconnects). Never: a code the rule
/// refuses (it is refused again), a login or virtual host the broker refused, a queue declared
/// with the other mode's properties, or a channel the broker closed for a reason of its
/// own (permissions, a missing virtual host) — they fail the same way again.
pub fn is_retryable(error: &ReplenishmentError) -> bool {
    match error {
        ReplenishmentError::Rejected { status, .. } => RETRYABLE_STATUSES.contains(status),
        ReplenishmentError::Connect { .. }
        | ReplenishmentError::Transport { .. }
        | ReplenishmentError::TimedOut { .. } => true,
        ReplenishmentError::InvalidRequestId { .. }
        | ReplenishmentError::InvalidItemCode { .. }
        | ReplenishmentError::AmqpRefused { .. } => false,
        ReplenishmentError::AmqpConnect { .. }
        | ReplenishmentError::AmqpUnreachable { .. }
        | ReplenishmentError::AmqpTimedOut { .. }
        | ReplenishmentError::ConfirmTimedOut { .. }
        | ReplenishmentError::Nacked
        | ReplenishmentError::Returned { .. }
        | ReplenishmentError::ConnectionLost { .. } => true,
        ReplenishmentError::QueueMismatch { .. } | ReplenishmentError::ChannelClosed { .. } => {
            false
        }
    }
}

/// The value of the deadline header for an attempt with `remaining` time: what remains
/// minus a margin for the answer to travel back and be read — the larger of 50 ms and 5 %,
/// but never more than half of what remains. A server that works to this budget answers
/// before the client gives up instead of finishing work nobody waits for.
pub fn request_budget(remaining: Duration) -> Duration {
    let margin = (remaining / BUDGET_MARGIN_DIVISOR)
        .max(MIN_BUDGET_MARGIN)
        .min(remaining / 2);
    remaining - margin
}

/// Whether `left` — the time that would remain after the wait — is enough for another
/// attempt (see [`MIN_ATTEMPT_TIME`]).
pub(crate) fn worth_another_attempt(left: Duration) -> bool {
    left >= MIN_ATTEMPT_TIME
}

/// Thousandths of a token: integer arithmetic, so ten deposits of 0.1 make exactly one
/// token (in `f64` they make 0.999…, and the tenth request would earn nothing).
const MILLI: u64 = 1000;

/// The retry budget: a token bucket shared by every clone of the `StockManager`
/// it was built for, and by any manager given the same budget
/// (`StockManagerBuilder::retry_budget`) — e.g. the load tester's virtual users,
/// each with its own connection but one budget between them.
///
/// Each logical request deposits `budget_ratio` tokens (up to `budget_max_tokens`); each
/// retry withdraws one; with less than one token there is no retry and the request returns
/// its last error (reported as `Delivery::budget_denied`). Over any run,
/// retries ≤ initial tokens + ratio × requests.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    inner: Arc<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// The tokens now, in thousandths.
    milli_tokens: AtomicU64,
    /// What one logical request deposits, in thousandths.
    deposit: u64,
    /// The capacity, in thousandths.
    capacity: u64,
}

impl RetryBudget {
    /// A budget for `policy`, starting with [`RetryPolicy::initial_budget_tokens`].
    pub fn new(policy: &RetryPolicy) -> Self {
        let milli = |tokens: f64| (tokens.clamp(0.0, 1000.0) * MILLI as f64).round() as u64;
        RetryBudget {
            inner: Arc::new(Bucket {
                milli_tokens: AtomicU64::new(milli(policy.initial_budget_tokens())),
                deposit: milli(policy.budget_ratio),
                capacity: milli(policy.budget_max_tokens),
            }),
        }
    }

    /// The tokens in the bucket now (each pays for one retry).
    pub fn tokens(&self) -> f64 {
        self.inner.milli_tokens.load(Ordering::Relaxed) as f64 / MILLI as f64
    }

    /// A logical request starts: earn its share of a retry.
    pub(crate) fn deposit(&self) {
        let bucket = &self.inner;
        // The closure always returns Some, so the update cannot fail.
        let _ = bucket
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                Some(now.saturating_add(bucket.deposit).min(bucket.capacity))
            });
    }

    /// Takes one token for a retry; `false` (and nothing taken) when there is less than one.
    pub(crate) fn try_withdraw(&self) -> bool {
        self.inner
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                now.checked_sub(MILLI)
            })
            .is_ok()
    }
}

/// A small xorshift64* generator for the backoff's jitter: statistical quality is ample for
/// spreading waits, and it spares the crate a `rand` dependency. Seeded per logical request
/// from a v4 UUID (the OS's randomness), or from a fixed seed in tests.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn from_seed(seed: u64) -> Self {
        // Zero is xorshift's one fixed point; any other constant would do.
        Jitter(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    pub(crate) fn from_entropy() -> Self {
        let bits = uuid::Uuid::new_v4().as_u128();
        Self::from_seed((bits as u64) ^ ((bits >> 64) as u64))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> ReplenishmentError {
        ReplenishmentError::Rejected {
            status,
            title: None,
            detail: None,
        }
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts, 3);
        assert_eq!(policy.base_delay, Duration::from_millis(100));
        assert_eq!(policy.max_delay, Duration::from_secs(5));
        assert_eq!(policy.budget_ratio, 0.1);
        assert_eq!(policy.budget_max_tokens, 10.0);
        assert_eq!(policy.initial_budget_tokens(), 2.0);
        assert!(policy.validate().is_ok());
        assert_eq!(RetryPolicy::with_max_attempts(7).max_attempts, 7);
    }

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<u128> = (1..=9)
            .map(|n| policy.backoff_ceiling(n).as_millis())
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        // No overflow however far it is pushed.
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn full_jitter_draws_cover_zero_to_the_ceiling_and_never_more() {
        let policy = RetryPolicy::default();
        let mut jitter = Jitter::from_seed(42);
        for retry in 1..=9 {
            let ceiling = policy.backoff_ceiling(retry);
            let draws: Vec<Duration> = (0..2000)
                .map(|_| policy.backoff(retry, &mut jitter))
                .collect();
            assert!(draws.iter().all(|d| *d <= ceiling), "retry {retry}");
            // Full jitter, not "exponential plus a little": waits near zero and near the
            // ceiling both occur.
            let low = draws.iter().filter(|d| **d < ceiling / 10).count();
            let high = draws.iter().filter(|d| **d > ceiling * 9 / 10).count();
            assert!(
                low > 100 && high > 100,
                "retry {retry}: {low} low, {high} high"
            );
            let mean = draws.iter().sum::<Duration>() / 2000;
            assert!(
                mean > ceiling * 2 / 5 && mean < ceiling * 3 / 5,
                "retry {retry}: mean {mean:?} of ceiling {ceiling:?}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_waits() {
        let policy = RetryPolicy::default();
        let waits = |seed| {
            let mut jitter = Jitter::from_seed(seed);
            (1..=3)
                .map(|n| policy.backoff(n, &mut jitter))
                .collect::<Vec<_>>()
        };
        assert_eq!(waits(7), waits(7));
        assert_ne!(waits(7), waits(8));
        assert_ne!(Jitter::from_seed(0).next_u64(), 0);
    }

    #[test]
    fn a_zero_base_means_no_wait() {
        let policy = RetryPolicy {
            base_delay: Duration::ZERO,
            ..RetryPolicy::default()
        };
        let mut jitter = Jitter::from_seed(1);
        assert_eq!(policy.backoff(3, &mut jitter), Duration::ZERO);
    }

    #[test]
    fn unusable_settings_are_refused_with_the_reason() {
        let reason = |policy: RetryPolicy| policy.validate().unwrap_err().to_string();
        assert!(reason(RetryPolicy::with_max_attempts(0)).contains("between 1 and 10"));
        assert!(reason(RetryPolicy::with_max_attempts(11)).contains("between 1 and 10"));
        assert!(RetryPolicy::with_max_attempts(1).validate().is_ok());
        assert!(RetryPolicy::with_max_attempts(10).validate().is_ok());
        assert!(
            reason(RetryPolicy {
                base_delay: Duration::from_secs(6),
                ..RetryPolicy::default()
            })
            .contains("larger than max_delay")
        );
        for ratio in [-0.1, 1.5, f64::NAN] {
            let policy = RetryPolicy {
                budget_ratio: ratio,
                ..RetryPolicy::default()
            };
            assert!(reason(policy).contains("budget_ratio"), "{ratio}");
        }
        let policy = RetryPolicy {
            budget_max_tokens: f64::INFINITY,
            ..RetryPolicy::default()
        };
        assert!(reason(policy).contains("budget_max_tokens"));
    }

    #[test]
    fn what_is_retried_and_what_is_not() {
        for status in [408, 409, 429, 500, 502, 503, 504] {
            assert!(is_retryable(&rejected(status)), "{status}");
        }
        for status in [302, 400, 401, 403, 404, 405, 413, 415, 422, 501, 505] {
            assert!(!is_retryable(&rejected(status)), "{status}");
        }
        assert!(is_retryable(&ReplenishmentError::TimedOut {
            after: Duration::from_secs(1)
        }));
        assert!(!is_retryable(&ReplenishmentError::InvalidRequestId {
            request_id: "a\nb".into(),
            why: crate::error::NOT_A_HEADER_VALUE,
        }));
        assert!(is_retryable(&ReplenishmentError::Nacked));
        assert!(is_retryable(&ReplenishmentError::ConfirmTimedOut {
            after: Duration::from_secs(1)
        }));
        assert!(!is_retryable(&ReplenishmentError::QueueMismatch {
            wanted: wire_contract::amqp::Delivery::Reliable,
            argument: None,
            broker_said: String::new(),
        }));
        // Connect and Transport carry the real socket or HTTP error; the socket tests in
        // stock_manager retry them.
    }

    #[test]
    fn the_budget_header_leaves_a_margin_for_the_way_back() {
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(request_budget(ms(30_000)), ms(28_500)); // 5 %
        assert_eq!(request_budget(ms(1_000)), ms(950)); // 50 ms = 5 %
        assert_eq!(request_budget(ms(500)), ms(450)); // at least 50 ms
        assert_eq!(request_budget(ms(60)), ms(30)); // at most half
        assert_eq!(request_budget(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_budget_earns_a_tenth_per_request_and_pays_one_per_retry() {
        let budget = RetryBudget::new(&RetryPolicy::default());
        assert_eq!(budget.tokens(), 2.0);
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw(), "empty");
        for _ in 0..9 {
            budget.deposit();
        }
        assert!(!budget.try_withdraw(), "0.9 tokens pay for nothing");
        budget.deposit();
        assert_eq!(budget.tokens(), 1.0, "exactly one, no rounding loss");
        assert!(budget.try_withdraw());
        assert_eq!(budget.tokens(), 0.0);
    }

    #[test]
    fn the_budget_is_capped_and_shared_by_clones() {
        let budget = RetryBudget::new(&RetryPolicy::default());
        let clone = budget.clone();
        for _ in 0..1000 {
            clone.deposit();
        }
        assert_eq!(budget.tokens(), 10.0);
        let withdrawn = (0..20).filter(|_| clone.try_withdraw()).count();
        assert_eq!(withdrawn, 10);
        assert_eq!(budget.tokens(), 0.0);
    }

    #[test]
    fn a_single_attempt_policy_starts_with_no_retries_to_spend() {
        let policy = RetryPolicy::with_max_attempts(1);
        assert_eq!(RetryBudget::new(&policy).tokens(), 0.0);
        let small = RetryPolicy {
            max_attempts: 10,
            budget_max_tokens: 4.0,
            ..RetryPolicy::default()
        };
        assert_eq!(RetryBudget::new(&small).tokens(), 4.0);
    }
}
