//! `PurchaseOrderStore`: the literal translation of the original's `SubmitPurchaseOrder`,
//! plus the opt-in protections (deadlines, idempotency keys, durable acknowledgements) and
//! the orders file's integrity, which is always on: a failed append leaves no partial
//! line, a partial last line is removed at start-up, only a regular file is accepted.
//!
//! The store's jobs, one module each: opening it and repairing what a crash left
//! ([`start_up`]), the order path from the deadline check to the answer ([`submit`]), and
//! the append under the locks with its rollback ([`append`]). This module holds the type,
//! its options and the health queries.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::error::{OpenMode, StoreError, io_error_at, open_error_at};
use crate::files::{Create, RepairedTail, open_to_append};
use crate::idempotency::{IdempotencyKey, Journal, JournalRecovery, KeyIndex};
use crate::workload::{FillGate, Workload};

mod append;
mod group_commit;
mod start_up;
mod submit;
#[cfg(test)]
mod tests;

/// The orders file, relative to the working directory (the original wrote
/// `C:\Temp\PurchaseOrders.txt`).
pub const DEFAULT_ORDERS_FILE: &str = "PurchaseOrders.txt";

/// How the store keeps its promises. Both off by default: the faithful store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// `sync_data` the orders file (and the idempotency journal) before a submit returns,
    /// so a success means "on disk", not "in the page cache". Without it, a success means
    /// the line is in the operating system's page cache: it survives a crash of this
    /// process (kill -9) but not a power loss or a kernel crash.
    pub durable: bool,
    /// Keep an idempotency journal beside the orders file so a keyed order is written at
    /// most once, also across restarts and across processes sharing the orders file (see
    /// [`crate::idempotency`]).
    pub idempotency: bool,
    /// At most this many orders fill their string at the same time (`None`: no limit, as
    /// the original). The fill is the CPU-heavy part of an order (page faults); the sleep
    /// is not. With a CPU quota, N concurrent fills share the CPU and each takes N times
    /// as long — and page faults of many threads in one address space contend with each
    /// other — so every order's latency grows with the load. Letting ⌈CPUs⌉ fill at once
    /// while the others wait their turn (their sleeps still overlap) keeps each fill at
    /// its unloaded cost. It limits no memory: admission control does that.
    pub max_concurrent_fills: Option<usize>,
}

/// What one submit should respect.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubmitOptions<'a> {
    /// Past this instant the order must not be written: checked before the work starts and
    /// again just before the append, so an abandoned request leaves no ghost order.
    pub deadline: Option<std::time::Instant>,
    /// The client's idempotency key. Ignored unless the store was opened with
    /// [`StoreOptions::idempotency`]: without a journal a key could promise nothing.
    pub key: Option<&'a IdempotencyKey>,
}

/// What a successful submit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Submitted {
    /// The order line was appended.
    Written,
    /// The key had already completed with the same item code (in this store, or in
    /// another sharing the orders file): nothing was written, the first outcome is
    /// replayed.
    Replayed,
}

/// The idempotency machinery of a store opened with [`StoreOptions::idempotency`].
#[derive(Debug)]
struct Idempotency {
    /// Which keys are in progress or completed, with their item codes.
    index: KeyIndex,
    /// Makes completed keys survive a restart and shares them between processes.
    journal: Journal,
    /// What opening the journal found, kept for the start-up log.
    recovery: JournalRecovery,
}

/// Writes purchase orders to a text file, one line each, after doing the simulated work.
///
/// Safe to share between threads (`&self` methods) and between processes writing the
/// same file: each append happens under an in-process mutex *and* an exclusive OS
/// advisory lock on the file, and is a single `write` of the whole line.
///
/// Opened with [`PurchaseOrderStore::open`] (or [`PurchaseOrderStore::open_with`] and
/// default options) it is the faithful store. [`StoreOptions`] and [`SubmitOptions`] opt
/// in to deadlines, idempotency keys and durable acknowledgements; none of them changes
/// the orders file's format.
///
/// Health: two failures stick until a restart, and each has a query for health checks
/// and metrics — [`PurchaseOrderStore::orders_file_failure`] (no order can be written)
/// and [`PurchaseOrderStore::journal_failure`] (keyed orders are refused). Both `None`:
/// every failure so far was one a retry can get past.
#[derive(Debug)]
pub struct PurchaseOrderStore {
    /// The orders file: the spec, one line per order, never another format.
    path: PathBuf,
    workload: Workload,
    /// Which opt-in protections apply to every submit (none: the faithful store).
    options: StoreOptions,
    /// The original's `lock (SyncRoot)`: serialises appends inside this process. The
    /// OS lock below would also do so on Linux (flock locks conflict between two opens
    /// in one process), but not on every platform and not for every lock kind; keeping
    /// the explicit mutex makes the intent independent of that detail. It also serialises
    /// the idempotency journal's appends, which happen under it.
    append_lock: Mutex<()>,
    /// `Some` iff [`StoreOptions::idempotency`].
    idempotency: Option<Idempotency>,
    /// Durable mode's flushes of the orders file, each covering every line appended while
    /// the previous one ran (unused otherwise).
    group_commit: group_commit::GroupCommit,
    /// `Some` iff [`StoreOptions::max_concurrent_fills`].
    fill_gate: Option<FillGate>,
    /// The last partial line this store removed from the orders file, for the log.
    repaired_tail: Mutex<Option<RepairedTail>>,
    /// Set when an append failed part-way and its partial line could not be removed: the
    /// store then appends nothing more (the next order would be glued onto the partial
    /// line) until a restart repairs the file. Holds the cause.
    orders_file_broken: OnceLock<String>,
}

/// Whether `deadline` has passed (never, without one).
fn deadline_passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

impl PurchaseOrderStore {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn workload(&self) -> Workload {
        self.workload
    }

    /// The protections this store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.options
    }

    /// The idempotency journal's path, `None` when idempotency is off.
    pub fn idempotency_journal_path(&self) -> Option<&Path> {
        self.idempotency.as_ref().map(|i| i.journal.path())
    }

    /// What recovering the journal found at open, `None` when idempotency is off.
    pub fn journal_recovery(&self) -> Option<JournalRecovery> {
        self.idempotency.as_ref().map(|i| i.recovery)
    }

    /// What opening the store found and changed that an operator must see, one line
    /// each: a partial last line it removed, idempotency keys it dropped (and whether the
    /// orders file changed under them). Servers log these at WARN at start-up.
    pub fn start_up_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(tail) = self.repaired_tail() {
            warnings.push(format!(
                "removed a partial last line from {} at byte {} ({} bytes: {:?}): a write cut \
                 short by a crash or a full disk; such a line was never acknowledged",
                tail.path.display(),
                tail.offset,
                tail.bytes_removed,
                tail.removed_text_lossy
            ));
        }
        if let (Some(recovery), Some(journal)) =
            (self.journal_recovery(), self.idempotency_journal_path())
        {
            if recovery.orders_file_changed {
                warnings.push(format!(
                    "dropped {} idempotency keys (kept {}) from {}: the orders file was \
                     truncated, rotated or edited since they were recorded, their orders are \
                     no longer in it, so a retry with one of them writes a new order",
                    recovery.incomplete,
                    recovery.kept,
                    journal.display()
                ));
            } else if recovery.incomplete + recovery.torn + recovery.invalid_code > 0 {
                warnings.push(format!(
                    "dropped {} idempotency keys (kept {}) from {}: their orders were never \
                     written (a crash between the journal and the orders file) or their item \
                     codes are no longer valid; a retry with one of them does the work once",
                    recovery.incomplete + recovery.torn + recovery.invalid_code,
                    recovery.kept,
                    journal.display()
                ));
            }
        }
        warnings
    }

    /// One line of what recovering the idempotency journal found, for the start-up log
    /// (`None` when idempotency is off).
    pub fn journal_summary(&self) -> Option<String> {
        let (r, journal) = (self.journal_recovery()?, self.idempotency_journal_path()?);
        Some(format!(
            "idempotency journal {} recovered: {} kept, {} incomplete, {} torn, {} expired, {} \
             superseded, {} with an invalid code{}",
            journal.display(),
            r.kept,
            r.incomplete,
            r.torn,
            r.expired,
            r.superseded,
            r.invalid_code,
            if r.rewritten {
                "; rewritten without the dropped ones"
            } else {
                ""
            }
        ))
    }

    /// The last partial line this store removed from the orders file: at open (see
    /// [`PurchaseOrderStore::open_with`]), or later before an append, when another process
    /// sharing the file died or failed in the middle of its append. `None` if it never
    /// removed one. Worth a warning in the log: it names the file and the bytes removed.
    pub fn repaired_tail(&self) -> Option<RepairedTail> {
        self.repaired_tail_slot().clone()
    }

    /// Why no order can be written until a restart, if so: an append failed part-way and
    /// its partial line could not be removed ([`StoreError::OrdersFileBroken`]). `None`
    /// while orders can be written. For health checks.
    pub fn orders_file_failure(&self) -> Option<String> {
        self.orders_file_broken
            .get()
            .map(|cause| self.broken_error(cause).to_string())
    }

    /// Why keyed orders are refused until a restart, if they are: the idempotency journal
    /// failed in a way that cannot be retried — an fsync failed, or a record could not be
    /// taken back ([`StoreError::JournalFailed`]). `None` when the journal is healthy or
    /// idempotency is off. A write that failed and was cleanly taken back does not count:
    /// the next keyed order simply tries again. For health checks.
    pub fn journal_failure(&self) -> Option<String> {
        let failed = self.idempotency.as_ref()?.journal.failed()?;
        Some(failed.to_string())
    }

    /// Keys whose submit is doing its work now (0 when idempotency is off). Also counts a
    /// key whose line was written but could not be synced: its outcome is unknown until a
    /// restart, so it answers `KeyInProgress` rather than risk a duplicate or a false
    /// replay.
    pub fn keys_in_progress(&self) -> usize {
        self.idempotency
            .as_ref()
            .map_or(0, |i| i.index.in_progress())
    }

    /// Keys remembered, in progress or completed (0 when idempotency is off). A running
    /// store keeps every key; expired ones are dropped at the next open.
    pub fn keys_known(&self) -> usize {
        self.idempotency.as_ref().map_or(0, |i| i.index.known())
    }

    fn open_for_append(&self) -> Result<File, StoreError> {
        open_to_append(&self.path, Create::IfMissing)
            .map_err(|error| open_error_at(OpenMode::Append, &self.path, error))
    }

    fn broken_error(&self, cause: &str) -> StoreError {
        StoreError::OrdersFileBroken {
            path: self.path.clone(),
            cause: cause.to_owned(),
        }
    }

    fn repaired_tail_slot(&self) -> MutexGuard<'_, Option<RepairedTail>> {
        // Only ever assigned whole, so a panic elsewhere cannot leave it half-changed.
        self.repaired_tail
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn io_error(&self, action: &'static str, error: std::io::Error) -> StoreError {
        io_error_at(action, &self.path, error)
    }
}
