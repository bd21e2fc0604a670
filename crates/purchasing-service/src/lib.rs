//! What the purchasing API and the purchasing worker are as services, defined once, so
//! the worker holds up like the API and a fix lands in both:
//!
//! * [`listener`] — the protected accept loop: a header timeout on every connection, a
//!   cap on open connections (lowered to what the open-files limit allows, which is first
//!   raised to its hard limit), a pause instead of a spin when `accept` runs out of file
//!   descriptors, and a bounded graceful shutdown; and [`listener::bind`] with a hint for
//!   the common failures, [`listener::announce`] for the one line on stdout.
//! * [`telemetry`] — logging on stderr, as text or JSON, filtered by `--log`; its flags
//!   ([`telemetry::LogFlags`]).
//! * [`store_flags`] — the store's flags ([`store_flags::StoreFlags`]: the orders file, the
//!   workload, `--durable`), one clap `Args` both configurations flatten.
//! * [`metrics`] — the `/metrics` families both expose alike: the resident memory and the
//!   orders in flight with their guard.
//! * [`shutdown`] — graceful shutdown: SIGINT and SIGTERM as a latch every part can wait on.
//! * [`auto_fill_gate`] — `--max-concurrent-fills auto`: one order filling per CPU.
//! * [`open_store`] — the store as the flags name it, with a hint when it cannot open.
//! * [`report_store_recovery`] — the start-up report of what opening the store repaired.

#![forbid(unsafe_code)]

pub mod listener;
pub mod metrics;
pub mod shutdown;
pub mod store_flags;
pub mod telemetry;

use capacity::Environment;
use purchasing_persistence::{PurchaseOrderStore, StoreOptions};

/// `--max-concurrent-fills auto`: one order filling per CPU of the quota (at least one),
/// logged with where the CPU count came from. Filling is the CPU-heavy part of an order:
/// k fills at once under a quota each take k times as long.
pub fn auto_fill_gate(environment: &Environment) -> usize {
    let cpus = &environment.cpus;
    let n = (cpus.value.ceil() as usize).max(1);
    tracing::info!(max_concurrent_fills = n, cpus = cpus.value, cpus_source = %cpus.source,
        "sized the fill gate: one order filling per CPU");
    n
}

/// Opens the store the flags name with `options`, or fails with one line that says what
/// to do; then reports what opening repaired ([`report_store_recovery`]). A service that
/// cannot write orders must not start and then fail every one.
pub fn open_store(
    flags: &store_flags::StoreFlags,
    options: StoreOptions,
) -> anyhow::Result<PurchaseOrderStore> {
    let store = PurchaseOrderStore::open_with(&flags.orders_file, flags.workload(), options)
        .map_err(|error| anyhow::anyhow!("{error}{}", error.open_hint()))?;
    report_store_recovery(&store);
    Ok(store)
}

/// Logs what opening the store found and changed (worded by the store): at WARN what an
/// operator must see — a partial last line removed, idempotency keys dropped — and the
/// journal's recovery counts at INFO.
pub fn report_store_recovery(store: &PurchaseOrderStore) {
    for warning in store.start_up_warnings() {
        tracing::warn!("{warning}");
    }
    if let Some(summary) = store.journal_summary() {
        tracing::info!("{summary}");
    }
}
