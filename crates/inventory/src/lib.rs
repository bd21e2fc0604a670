//! The inventory side of the RPC spike lab: the Rust counterpart of the original
//! `StockManager` — an HTTP client of the purchasing API, or a publisher to its queue — and
//! the `inventory` CLI around it.
//!
//! This crate owns the client half of the wire contract:
//!
//! * [`StockManager`] — one replenishment request per call: over HTTP
//!   (`POST /api/StockReplenishmentRequests`, form body `=CODE`, an `X-Request-Id`), with
//!   the original's 30 s timeout and, by default, its new TCP connection per call; or over
//!   AMQP ([`amqp`]), one message per order to the queue, faithful (the original's
//!   transient publish) or reliable (persistent, confirmed, identified by a `message_id`);
//! * [`ReplenishmentError`] — what went wrong, told apart the way an operator (and the load
//!   tester, through [`ReplenishmentError::kind`]) needs: no answer in time, nothing to
//!   connect to, a refusal by the server (with its RFC 9457 problem details), or a broken
//!   transport;
//! * [`RetryPolicy`] — opt-in retries (off by default, as in the original): few attempts,
//!   full-jitter backoff, `Retry-After`, a shared retry budget, one `Idempotency-Key` per
//!   logical request and the time left in `X-Request-Budget-Ms`; [`StockManager::replenish`]
//!   reports how a request went ([`Delivery`]);
//! * [`cli`] — the `inventory request` command.
//!
//! It links nothing of the server's or the worker's: item codes are validated by the
//! purchasing side, not here, so the client sends exactly what it is given and reports the
//! server's (or the broker's) verdict.

// No unsafe code here (safe client libraries only); kept that way by the compiler.
#![forbid(unsafe_code)]

pub mod amqp;
pub mod amqp_url;
pub mod base_url;
pub mod cli;
pub mod error;
pub mod retry;
pub mod stock_manager;
pub mod wire;

pub use amqp::DeliveryMode;
pub use amqp_url::{AmqpUrl, AmqpUrls, PURCHASING_AMQP_URL};
pub use base_url::BaseUrl;
pub use error::{AmqpStage, ConfigError, ReplenishmentError};
pub use retry::{RetryBudget, RetryPolicy};
pub use stock_manager::{
    DEFAULT_TIMEOUT, DEFAULT_URL, Delivery, PURCHASING_API_URL, StockManager, StockManagerBuilder,
    new_request_id,
};
