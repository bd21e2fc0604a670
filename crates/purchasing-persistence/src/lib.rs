//! The purchasing side's persistence: the Rust counterpart of the original
//! `Enterprise.Purchasing.Persistence.PurchaseOrderStore`.
//!
//! This crate owns the facts that everyone else imports rather than restates:
//!
//! * [`ItemCode`] — what a valid item code is (a security boundary: codes land in a
//!   line-oriented file, so a newline inside one would forge an order);
//! * [`order_line`] — the exact line written per purchase order, and the parser that
//!   reads an orders file back (the load-test reconciliation uses it);
//! * [`Workload`] — the simulated expensive work per order and its defaults
//!   (150,000,000 characters held for 500 ms);
//! * [`idempotency`] — what an idempotency key is, the journal beside the orders file
//!   that remembers keys across restarts, and its recovery rule.
//!
//! [`PurchaseOrderStore::open`] with [`PurchaseOrderStore::submit_purchase_order`] is the
//! faithful store. Protections are opt-in and never change the orders file's format:
//!
//! * a deadline per submit ([`SubmitOptions::deadline`]): checked before the work and
//!   again just before the append, so an abandoned request leaves no ghost order;
//! * idempotency keys ([`StoreOptions::idempotency`], [`SubmitOptions::key`]): a keyed
//!   order is written at most once, also across restarts and crashes;
//! * durable acknowledgements ([`StoreOptions::durable`]): a success means the order is
//!   on disk, not only in the page cache.
//!
//! Always, also for the faithful store: the orders file must be a regular file, a failed
//! append leaves no partial line behind, and a partial last line found at start-up (a
//! crash or power loss mid-append) is removed, so the next order is never glued onto it.
//!
//! It depends on `std` only (plus an error derive): no async runtime, no HTTP. The store
//! blocks its calling thread exactly like the original's `Thread.Sleep`, so async callers
//! must run it on a blocking pool.

// No unsafe code here (std file APIs only); kept that way by the compiler.
#![forbid(unsafe_code)]

mod error;
mod files;
pub mod idempotency;
pub mod order_line;
mod store;
mod workload;

pub use error::{OpenMode, StoreError};
pub use files::RepairedTail;
pub use idempotency::{
    IDEMPOTENCY_KEY_EXPIRY, IdempotencyKey, InvalidIdempotencyKey, JournalRecovery,
};
// The rule lives in its own crate (the AMQP client checks codes with it too).
pub use item_code::{ItemCode, ItemCodeError, MAX_ITEM_CODE_CHARS};
pub use order_line::{
    LineError, MalformedLine, OrdersFile, for_each_line, format_line, parse_line, read_orders_file,
};
pub use store::{DEFAULT_ORDERS_FILE, PurchaseOrderStore, StoreOptions, SubmitOptions, Submitted};
pub use workload::{DEFAULT_ALLOC_CHARS, DEFAULT_DELAY, FillTiming, Workload};
