//! The purchasing side's queue handler: the Rust counterpart of the original's
//! `Enterprise.Purchasing.QueueHandler`, the messaging half of the article series.
//!
//! It consumes [`wire_contract::amqp::QUEUE`] on RabbitMQ and, for every message, calls
//! the same [`purchasing_persistence::PurchaseOrderStore`] as the HTTP API — the same
//! work, the same line, the same file, no copy of its logic. Two delivery modes
//! (`--delivery`), the same two the publisher has:
//!
//! * `faithful` (default) — the original: auto-ack, one message at a time, no prefetch
//!   limit; fast, and a crash loses whatever the broker had pushed;
//! * `reliable` — manual ack after the order is written, a prefetch sized from the
//!   node's memory, deduplication by message id through the store's idempotency journal,
//!   poison messages dead-lettered, reconnects with backoff.
//!
//! Beside the queue, a small HTTP server answers `GET /health` and `GET /metrics` so the
//! lab (and any supervisor) can see whether the worker consumes and what it did.
//!
//! Modules, each with one job: [`config`] (flags), [`telemetry`] (logging), [`sizing`]
//! (the automatic prefetch), [`handling`] (what to do with a message, as plain values),
//! [`session`] (one broker connection: consume, ack, leave), [`backoff`] (reconnect
//! pauses), [`shutdown`] (signals, the services' shared latch), [`state`] (what the consumer and the HTTP side
//! share), [`metrics`] and [`http`] (the probes), [`worker`] (the process's lifecycle).
//!
//! Depends on the store, the capacity rule and the wire contract — never on the API or
//! the inventory client: a server never links a client, nor another server.

#![warn(clippy::undocumented_unsafe_blocks)]

pub mod backoff;
pub mod config;
pub mod handling;
pub mod http;
pub mod metrics;
pub mod session;
pub use purchasing_service::shutdown;
pub mod sizing;
pub mod state;
pub use purchasing_service::telemetry;
pub mod worker;

pub use config::Config;
