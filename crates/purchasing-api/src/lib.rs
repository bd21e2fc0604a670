//! The purchasing side's HTTP API: the Rust counterpart of the original ASP.NET Web API
//! `StockReplenishmentRequestsController`, in front of
//! [`purchasing_persistence::PurchaseOrderStore`].
//!
//! It maps HTTP to one store call and back, and holds no business rule of its own:
//! the item-code rule and the line format live in the persistence crate.
//!
//! * [`config`] — command-line flags and environment variables;
//! * [`app`] — the router: routes, case-insensitive paths, body limit, request ids;
//! * [`routes`] — the handlers; [`body`] — decoding the request body into an item code;
//! * [`problem`] — every error response, as RFC 9457 `application/problem+json`;
//! * [`server`] — binding, serving, graceful shutdown; [`telemetry`] — logging.

pub mod app;
pub mod body;
pub mod config;
pub mod problem;
pub mod routes;
pub mod server;
pub mod telemetry;

pub use app::{AppState, app};
pub use config::Config;
