//! [`StockManager`]: the original `StockManager.RequestStockReplenishment`, over HTTP or —
//! the article series' messaging variant — over AMQP (see [`crate::amqp`]); and, opt-in,
//! with retries made safe by an idempotency key (see [`crate::retry`]).
//!
//! One type for both transports, so a caller (the CLI, the load tester) builds the manager
//! for the transport it was given and then makes the same call, gets the same
//! [`Delivery`] story and the same error type back.
//!
//! One job per file: the settings (`builder`), the manager and its request loop
//! (`manager`), the transports it sends an attempt over (`transport`, with the HTTP
//! exchange in `http` and the AMQP publisher in [`crate::amqp`]), and what a request came
//! to (`delivery`). Each imports only the ones listed after it.

mod builder;
mod delivery;
mod http;
mod manager;
#[cfg(test)]
mod tests;
mod transport;

pub use builder::StockManagerBuilder;
pub use delivery::Delivery;
pub use manager::{DEFAULT_TIMEOUT, DEFAULT_URL, PURCHASING_API_URL, StockManager, new_request_id};
