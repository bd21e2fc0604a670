//! The manager: what it holds, what it tells about itself, and one logical request with
//! its retries.

use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use super::delivery::Delivery;
use super::transport::Transport;
use crate::amqp::DeliveryMode;
use crate::amqp_url::AmqpUrls;
use crate::base_url::BaseUrl;
use crate::error::{NOT_A_HEADER_VALUE, ReplenishmentError};
use crate::retry::{self, Jitter, RetryBudget, RetryPolicy};
use crate::wire;

/// Where the purchasing API listens unless told otherwise (its own default bind address).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Name of the environment variable that overrides [`DEFAULT_URL`] in the CLI (and in any
/// tool that wants the same convention).
pub const PURCHASING_API_URL: &str = "PURCHASING_API_URL";

/// The original's `HttpClient.Timeout`: how long one call may take in total.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh request id (a UUID v4), as sent in `X-Request-Id`.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Asks the purchasing side to replenish stock: over HTTP one `POST` per item code to the
/// purchasing API ([`StockManager::builder`]); over AMQP one message per item code to the
/// queue the purchasing worker consumes ([`StockManager::amqp_builder`]).
///
/// By default exactly as the original: one attempt, no retry. With a [`RetryPolicy`]
/// (`StockManagerBuilder::retry_policy`) a failed attempt may be followed by others,
/// every one carrying the same idempotency key — over HTTP the `Idempotency-Key` header and
/// the time left (`X-Request-Budget-Ms`), over AMQP (reliable delivery only) the same
/// `message_id`.
///
/// Cheap to clone (the HTTP client and the AMQP session inside are reference-counted), so
/// concurrent callers can share one; clones share the retry budget and, over AMQP, the
/// connection too.
#[derive(Debug, Clone)]
pub struct StockManager {
    /// What carries the request: the HTTP client or the AMQP publisher.
    pub(super) transport: Transport,
    /// The total deadline of one call (over HTTP connect, send, answer; over AMQP connect,
    /// declare, publish, confirm; under a retry policy all its attempts and waits);
    /// reported in the timeout errors.
    pub(super) timeout: Duration,
    /// Whether every call opens its own connection, as the original did.
    pub(super) new_connection_per_request: bool,
    /// The retry policy and its budget when retries are on. `None` (the default) sends each
    /// request exactly once and without the idempotency and deadline headers: the faithful
    /// baseline.
    pub(super) retry: Option<Retry>,
}

/// A retry policy in force, with the budget it draws on.
#[derive(Debug, Clone)]
pub(super) struct Retry {
    pub(super) policy: RetryPolicy,
    /// Shared by every clone of the manager (it is an `Arc` inside).
    pub(super) budget: RetryBudget,
}

impl StockManager {
    /// The purchasing API's URL, when the manager talks HTTP.
    pub fn base_url(&self) -> Option<&BaseUrl> {
        match &self.transport {
            Transport::Http(http) => Some(&http.base_url),
            Transport::Amqp(_) => None,
        }
    }

    /// The brokers' URLs, in the order they are tried, when the manager publishes over
    /// AMQP.
    pub fn amqp_urls(&self) -> Option<&AmqpUrls> {
        match &self.transport {
            Transport::Http(_) => None,
            Transport::Amqp(publisher) => Some(publisher.urls()),
        }
    }

    /// The delivery mode, when the manager publishes over AMQP.
    pub fn delivery_mode(&self) -> Option<DeliveryMode> {
        match &self.transport {
            Transport::Http(_) => None,
            Transport::Amqp(publisher) => Some(publisher.mode()),
        }
    }

    /// Where the orders go, for people: the API's URL or the brokers' (comma-separated,
    /// passwords hidden).
    pub fn target(&self) -> String {
        match &self.transport {
            Transport::Http(http) => http.base_url.to_string(),
            Transport::Amqp(publisher) => publisher.urls().to_string(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new_connection_per_request(&self) -> bool {
        self.new_connection_per_request
    }

    /// The retry policy, when retries are on.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry.as_ref().map(|r| &r.policy)
    }

    /// The retry budget this manager (and its clones) draw on, when retries are on.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.retry.as_ref().map(|r| &r.budget)
    }

    /// Opens the connection to the broker now, so the first orders do not wait for the
    /// handshake (TCP, AMQP, a channel, confirms, the queue declarations — tens of
    /// milliseconds, during which every caller of a fresh manager queues behind it). A
    /// long-running publisher calls this at start-up; the first publish opens the
    /// connection anyway if nobody did.
    ///
    /// Does nothing over HTTP (the pool connects per request in flight, a cheap TCP
    /// connect on the same network) and when every request opens its own connection
    /// ([`StockManagerBuilder::new_connection_per_request`](crate::StockManagerBuilder::new_connection_per_request)),
    /// where the handshake is part of each call as in the original. Bounded by the
    /// manager's timeout.
    pub async fn connect(&self) -> Result<(), ReplenishmentError> {
        match &self.transport {
            Transport::Http(_) => Ok(()),
            Transport::Amqp(publisher) => {
                publisher
                    .open_session(Instant::now() + self.timeout, self.timeout)
                    .await
            }
        }
    }

    /// Requests replenishment of `item_code` under a fresh request id.
    ///
    /// Like the original, it succeeds on any 2xx (the API answers 201 Created) and fails on
    /// everything else. The item code is sent as given: the server judges it.
    pub async fn request_stock_replenishment(
        &self,
        item_code: &str,
    ) -> Result<(), ReplenishmentError> {
        self.request_stock_replenishment_with_id(item_code, &new_request_id())
            .await
    }

    /// Same as [`StockManager::request_stock_replenishment`], under the caller's
    /// `request_id` (sent as `X-Request-Id`), so the caller can record and correlate it.
    /// Under a retry policy this is [`StockManager::replenish`]'s result.
    pub async fn request_stock_replenishment_with_id(
        &self,
        item_code: &str,
        request_id: &str,
    ) -> Result<(), ReplenishmentError> {
        self.replenish(item_code, request_id).await.result
    }

    /// One logical request for `item_code` under `request_id`, with the story of how it
    /// went: how many attempts, whether a retry was refused by the budget or the deadline,
    /// whether the server replayed an earlier outcome.
    ///
    /// Without a retry policy: one attempt, exactly the original's request.
    ///
    /// Under a policy, every attempt carries the same `X-Request-Id`, the same
    /// `Idempotency-Key` (a fresh v4 UUID per call) and `X-Request-Budget-Ms`, the time
    /// left of the manager's timeout minus a margin. The timeout bounds the whole call —
    /// attempts and waits — and each attempt may use all the time left. After a failure
    /// that [`retry::is_retryable`] accepts, while attempts remain, the call waits
    /// (full-jitter backoff, plus the server's `Retry-After` if any) and tries again — unless
    /// the wait would leave no time for another attempt, or the retry budget has no token;
    /// then it returns the last error at once.
    ///
    /// Over AMQP the same holds with a publish for an HTTP request: the request id goes in
    /// the message (reliable mode; a faithful message carries nothing but the code), the
    /// idempotency key is the `message_id` — one per call, always set in reliable mode — and
    /// retries are allowed in reliable mode only (`StockManagerBuilder::build`).
    pub async fn replenish(&self, item_code: &str, request_id: &str) -> Delivery {
        // One rule for request ids whatever the transport, so an id that correlates over
        // one correlates over the other.
        let Ok(id) = HeaderValue::from_str(request_id) else {
            return Delivery::nothing_sent(ReplenishmentError::InvalidRequestId {
                request_id: request_id.to_owned(),
                why: NOT_A_HEADER_VALUE,
            });
        };
        let message_id =
            (self.delivery_mode() == Some(DeliveryMode::Reliable)).then(uuid::Uuid::new_v4);
        let Some(retry) = &self.retry else {
            let sent = Instant::now();
            let answer = self
                .transport
                .attempt(item_code, &id, message_id.as_ref(), None, self.timeout)
                .await;
            return Delivery {
                result: answer.result,
                attempts: 1,
                budget_denied: false,
                deadline_denied: false,
                replayed: answer.replayed,
                idempotency_key: message_id,
                last_attempt: sent.elapsed(),
                republished: answer.republished,
            };
        };
        let deadline = Instant::now() + self.timeout;
        let key = message_id.unwrap_or_else(uuid::Uuid::new_v4);
        let key_value = HeaderValue::from_str(&wire::idempotency_key_value(&key))
            .expect("a quoted UUID is a valid header value");
        retry.budget.deposit();
        let mut delivery = Delivery {
            result: Ok(()),
            attempts: 0,
            budget_denied: false,
            deadline_denied: false,
            replayed: false,
            idempotency_key: Some(key),
            last_attempt: Duration::ZERO,
            republished: 0,
        };
        // Drawn from the OS's randomness only if a retry is actually considered.
        let mut jitter = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let sent = Instant::now();
            let answer = self
                .transport
                .attempt(
                    item_code,
                    &id,
                    Some(&key),
                    Some((&key_value, remaining)),
                    self.timeout,
                )
                .await;
            delivery.last_attempt = sent.elapsed();
            delivery.attempts += 1;
            delivery.replayed = answer.replayed;
            delivery.republished += answer.republished;
            delivery.result = answer.result;
            let Err(error) = &delivery.result else {
                return delivery;
            };
            if !retry::is_retryable(error) || delivery.attempts >= retry.policy.max_attempts {
                return delivery;
            }
            // Retry-After is a floor; the jitter on top keeps the clients that one shedding
            // told "1 second" from all coming back in the same instant.
            let jitter = jitter.get_or_insert_with(Jitter::from_entropy);
            let wait = retry
                .policy
                .backoff(delivery.attempts, jitter)
                .saturating_add(answer.retry_after.unwrap_or_default());
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !retry::worth_another_attempt(remaining.saturating_sub(wait)) {
                delivery.deadline_denied = true;
                return delivery;
            }
            // Checked last, so a token is spent only on a retry that is really made.
            if !retry.budget.try_withdraw() {
                delivery.budget_denied = true;
                return delivery;
            }
            tokio::time::sleep(wait).await;
        }
    }
}
