//! The wire contract between the inventory side and the purchasing side: every name both
//! ends must spell the same way, defined once. The client (`inventory`), the HTTP API
//! (`purchasing-api`) and the queue worker (`purchasing-worker`) import these; none
//! restates them.
//!
//! What is *not* here: the item-code rule and the orders file's line format belong to the
//! store (`purchasing-persistence`), which validates and writes; the wire only carries the
//! code as text.
//!
//! std only: no HTTP or AMQP types, so depending on the contract never drags a client or a
//! server library along.

pub mod amqp;
pub mod http;
