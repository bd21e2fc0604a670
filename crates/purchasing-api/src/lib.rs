//! The purchasing side's HTTP API: the Rust counterpart of the original ASP.NET Web API
//! `StockReplenishmentRequestsController`, in front of
//! [`purchasing_persistence::PurchaseOrderStore`].
//!
//! It maps HTTP to one store call and back, and holds no business rule of its own:
//! the item-code rule and the line format live in the persistence crate.
//!
//! * [`config`] — command-line flags and environment variables;
//! * [`app`] — the router: routes, case-insensitive paths, body limit;
//! * [`request_log`] — request ids, a span and a log line per request, panics as 500s
//!   (tower-http's layers);
//! * [`state`] — the protections in force and what the handlers share;
//! * [`routes`] — the handlers; [`body`] — decoding the request body into an item code;
//! * [`problem`] — every error response, as RFC 9457 `application/problem+json`;
//! * [`server`] — starting and stopping, connections served by the accept loop both
//!   services share (`purchasing_service::listener`: read timeouts, a connection cap,
//!   bounded graceful shutdown); [`connection`] — `Connection: close` when a response
//!   ends the connection; [`telemetry`] — logging (shared with the worker);
//! * [`metrics`] — `GET /metrics` in the Prometheus text format;
//! * [`work_pool`] — the threads that do the orders' work (allocate, sleep, write).
//!
//! Opt-in protections beyond the original (all off by default; `--protect` turns on the
//! recommended set), each a module composed in [`app`]:
//!
//! * [`admission`] — at most N orders in progress, a short queue, fast 503s;
//! * [`limits`] — the memory and CPU limits the process runs under, and `auto` sizing;
//! * [`deadline`] — the client's time budget: no work for requests that cannot finish;
//! * [`idempotency`] — the `Idempotency-Key` header (the keys are kept by the store).

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod admission;
pub mod agent;
pub mod app;
pub mod body;
pub mod config;
pub mod connection;
pub mod deadline;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod priority;
pub mod problem;
pub mod request_log;
pub mod routes;
pub mod server;
pub mod state;
pub use purchasing_service::telemetry;
pub mod work_pool;

pub use app::app;
pub use config::Config;
pub use state::{AppState, Protections};
