//! `PurchaseOrderStore`: the literal translation of the original's `SubmitPurchaseOrder`,
//! plus the opt-in protections (deadlines, idempotency keys, durable acknowledgements) and
//! the orders file's integrity, which is always on: a failed append leaves no partial
//! line, a partial last line is removed at start-up, only a regular file is accepted.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{StoreError, io_error_at};
use crate::files::{
    self, Create, RepairedTail, find_partial_tail, open_to_append, refuse_special_file,
    require_regular_open, sync_parent_dir, truncate_back,
};
use crate::idempotency::{Begin, IdempotencyKey, Journal, JournalRecovery, KeyIndex};
use crate::{ItemCode, order_line};

/// Characters allocated per order by default: the article's `new string('a', 150000000)`.
/// A Rust `String` of ASCII is one byte per character, so this is 150 MB held per order.
pub const DEFAULT_ALLOC_CHARS: usize = 150_000_000;

/// How long each order blocks its thread by default: the original's `Thread.Sleep(500)`.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(500);

/// The orders file, relative to the working directory (the original wrote
/// `C:\Temp\PurchaseOrders.txt`).
pub const DEFAULT_ORDERS_FILE: &str = "PurchaseOrders.txt";

/// The simulated expensive work done for every order.
///
/// The defaults are the faithful workload; tests and cheap experiments use tiny values
/// (for example 1,000 characters and 5 ms) so they can run hundreds of orders at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Characters of the string allocated, filled and held for the whole call.
    pub alloc_chars: usize,
    /// How long the calling thread is blocked (a sleep, not CPU work).
    pub delay: Duration,
    /// Drop the string right after filling it instead of holding it through the sleep.
    ///
    /// In .NET the string is unreachable after it is built, so a garbage collection
    /// during the sleep may reclaim it; Rust frees deterministically at end of scope.
    /// `false` (the default) is the worst case the article describes: memory held for
    /// the whole request. `true` mimics a runtime whose GC collects it early.
    pub release_early: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            alloc_chars: DEFAULT_ALLOC_CHARS,
            delay: DEFAULT_DELAY,
            release_early: false,
        }
    }
}

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

/// How one order's fill went; see [`PurchaseOrderStore::submit_observed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTiming {
    /// Time waiting for a turn at the fill gate (zero without a gate).
    pub waited: Duration,
    /// Time allocating and filling the string.
    pub filled: Duration,
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
    /// `Some` iff [`StoreOptions::max_concurrent_fills`].
    fill_gate: Option<FillGate>,
    /// The last partial line this store removed from the orders file, for the log.
    repaired_tail: Mutex<Option<RepairedTail>>,
    /// Set when an append failed part-way and its partial line could not be removed: the
    /// store then appends nothing more (the next order would be glued onto the partial
    /// line) until a restart repairs the file. Holds the cause.
    orders_file_broken: OnceLock<String>,
}

impl PurchaseOrderStore {
    /// Creates a store writing to `path`, creating the file if needed. Fails at once if
    /// the file cannot be opened for append, so a server can refuse to start rather than
    /// fail every order later.
    pub fn open(path: impl Into<PathBuf>, workload: Workload) -> Result<Self, StoreError> {
        Self::open_with(path, workload, StoreOptions::default())
    }

    /// Like [`PurchaseOrderStore::open`], with the opt-in protections of `options`.
    ///
    /// A path that exists and is not a regular file (a FIFO, a directory, a device) is
    /// refused with [`StoreError::NotARegularFile`] before anything opens it: opening a
    /// FIFO to write would block until a reader appeared, hanging the start-up.
    ///
    /// Under the orders file's OS lock (so no other process appends meanwhile), a partial
    /// last line — the file does not end in `\n` — is removed first, back to just after
    /// the last `\n`, and synced if durable; [`PurchaseOrderStore::repaired_tail`] says
    /// what was removed. Such a tail is an append cut short (a crash, a power loss, a full
    /// disk). It was never acknowledged — an order is acknowledged only after its whole
    /// line is written — so removing it loses nothing acknowledged, while appending after
    /// it would corrupt the next acknowledged order, and refusing to start would turn a
    /// power loss into an outage. A tail without a newline longer than 64 KiB is not an
    /// interrupted append but a file that is not an orders file: it is refused, not cut.
    ///
    /// With `durable`, a newly created orders file (and journal) has its directory synced,
    /// so the file's name survives a power loss too. With `idempotency`, the journal beside
    /// the orders file ([`crate::idempotency::journal_path`]) is then recovered, still under
    /// the lock: records whose order line is not in the orders file, a torn last record and
    /// records older than [`crate::IDEMPOTENCY_KEY_EXPIRY`] are dropped and the journal is
    /// rewritten without them ([`PurchaseOrderStore::journal_recovery`] says what was
    /// found). A journal line that is not a record is an error naming the file and line.
    pub fn open_with(
        path: impl Into<PathBuf>,
        workload: Workload,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let mut store = Self {
            path: path.into(),
            workload,
            options,
            append_lock: Mutex::new(()),
            fill_gate: options.max_concurrent_fills.map(FillGate::new),
            idempotency: None,
            repaired_tail: Mutex::new(None),
            orders_file_broken: OnceLock::new(),
        };
        refuse_special_file(&store.path, files::ORDERS_FILE)?;
        let file = if options.durable {
            store.create_durably()?
        } else {
            store.open_for_append()?
        };
        // The path may have been swapped between the check and the open.
        require_regular_open(&file, &store.path, files::ORDERS_FILE)?;
        // Held until `file` is dropped: the repair and the journal's check against the
        // orders file must not race another process's append.
        file.lock().map_err(|error| store.io_error("lock", error))?;
        // Before the journal is recovered: a crash during an order line leaves its record
        // pointing at the partial line, which must be gone for the record to read as
        // "interrupted" (pointing at the end of the file) rather than "file changed".
        if let Some(tail) = find_partial_tail(&file, &store.path)? {
            let repaired = tail
                .remove(&file, &store.path)
                .map_err(|error| store.io_error("remove the partial last line of", error))?;
            if options.durable {
                file.sync_data()
                    .map_err(|error| store.io_error("sync", error))?;
            }
            *store.repaired_tail_slot() = Some(repaired);
        }
        if options.idempotency {
            let (journal, index, recovery) = Journal::open(&store.path, options.durable)?;
            store.idempotency = Some(Idempotency {
                index,
                journal,
                recovery,
            });
        }
        Ok(store)
    }

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

    /// Records one purchase order like [`PurchaseOrderStore::submit_purchase_order`],
    /// honouring a deadline and an idempotency key.
    ///
    /// In order: a deadline already past returns [`StoreError::DeadlineExceeded`] before
    /// anything is allocated; a key is looked up ([`Submitted::Replayed`] at once for a
    /// completed key with the same code, [`StoreError::KeyReused`] for another code,
    /// [`StoreError::KeyInProgress`] while its first submit runs); the work is done; under
    /// the append lock the deadline is checked again, the journal is caught up with other
    /// stores sharing the file (a key they completed meanwhile is replayed or refused as
    /// above, writing nothing), and the order line is appended (after its journal record
    /// when keyed) and, if durable, synced. Any failure before the line is written
    /// releases the key so a retry can do the work.
    ///
    /// Blocks the calling thread for at least the workload's delay, except when it
    /// returns early as above.
    pub fn submit(
        &self,
        code: &ItemCode,
        options: SubmitOptions<'_>,
    ) -> Result<Submitted, StoreError> {
        self.submit_observed(code, options, |_| {})
    }

    /// [`PurchaseOrderStore::submit`], telling `on_fill` how the order's fill went as soon
    /// as it ends (before the sleep): how long it waited for its turn at the fill gate and
    /// how long the fill took. The wait is the node's queue for the CPU, what an adaptive
    /// admission limit steers by. Not called when the submit returns before the fill.
    pub fn submit_observed(
        &self,
        code: &ItemCode,
        options: SubmitOptions<'_>,
        on_fill: impl FnOnce(FillTiming),
    ) -> Result<Submitted, StoreError> {
        if deadline_passed(options.deadline) {
            return Err(StoreError::DeadlineExceeded {
                stage: StoreError::DEADLINE_BEFORE_WORK,
            });
        }
        // A key given to a store without idempotency is ignored: with no journal it could
        // promise nothing, and refusing it would make the header an error on a faithful
        // server.
        let claim = match (options.key, &self.idempotency) {
            (Some(key), Some(idempotency)) => match idempotency.index.begin(key, code)? {
                Begin::Replay => return Ok(Submitted::Replayed),
                Begin::DoTheWork => Some(Claim::new(&idempotency.index, key)),
            },
            _ => None,
        };

        // From here on, an early return drops `claim`, which releases the key.
        // Failures that stick until a restart are answered before the work, not after it:
        // the work could only be thrown away.
        if let Some(cause) = self.orders_file_broken.get() {
            return Err(self.broken_error(cause));
        }
        if let (Some(_), Some(idempotency)) = (&claim, &self.idempotency)
            && let Some(failed) = idempotency.journal.failed()
        {
            return Err(failed);
        }
        let work = {
            let arrived = Instant::now();
            let _turn = self.fill_gate.as_ref().map(FillGate::enter);
            let began = Instant::now();
            let work = simulate_expensive_work(self.workload.alloc_chars)?;
            on_fill(FillTiming {
                waited: began - arrived,
                filled: began.elapsed(),
            });
            work
        };
        let work = if self.workload.release_early {
            release_in_steps(work);
            None
        } else {
            Some(work)
        };

        std::thread::sleep(self.workload.delay);
        let submitted =
            match self.append_order(code, options.deadline, claim.as_ref().map(|c| c.key)) {
                Ok(submitted) => {
                    if let Some(claim) = claim {
                        claim.complete();
                    }
                    submitted
                }
                Err(AppendError {
                    error,
                    line_written,
                }) => {
                    if line_written && let Some(claim) = claim {
                        claim.leave_in_doubt();
                    }
                    return Err(error);
                }
            };

        // Keep the string observably alive until the order is written, so neither the
        // optimiser nor an early drop shortens the time the memory is held.
        std::hint::black_box(&work);
        if let Some(work) = work {
            release_in_steps(work);
        }
        Ok(submitted)
    }

    /// Records one purchase order: allocate and fill `alloc_chars` characters, block for
    /// `delay`, then append `Purchase order for item: CODE\n` to the file — the faithful
    /// method ([`PurchaseOrderStore::submit`] with no deadline and no key; synced when the
    /// store is durable).
    ///
    /// Blocks the calling thread for at least `delay`; call it from a thread that may
    /// block (for example tokio's `spawn_blocking`), never from an async task.
    pub fn submit_purchase_order(&self, code: &ItemCode) -> Result<(), StoreError> {
        self.submit(code, SubmitOptions::default()).map(|_| ())
    }

    fn open_for_append(&self) -> Result<File, StoreError> {
        open_to_append(&self.path, Create::IfMissing)
            .map_err(|error| self.io_error("open for append", error))
    }

    /// Opens the orders file for append; if this call created it, syncs its directory so
    /// the new name is on disk before any order in it is acknowledged.
    fn create_durably(&self) -> Result<File, StoreError> {
        match open_to_append(&self.path, Create::New) {
            Ok(file) => {
                sync_parent_dir(&self.path)?;
                Ok(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.open_for_append(),
            Err(error) => Err(self.io_error("open for append", error)),
        }
    }

    /// One order line, appended under both locks in a single write. The file is opened
    /// per call, like the original's `File.AppendText`, and closed (unlocking it) on drop.
    ///
    /// With idempotency on, the journal is caught up first, and with a key its record goes
    /// before the line; see [`crate::idempotency`] for the protocol. A write that fails is
    /// taken back (truncated to the length before it), so no partial line stays behind.
    fn append_order(
        &self,
        code: &ItemCode,
        deadline: Option<Instant>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Submitted, AppendError> {
        let line = order_line::format_line(code);
        // A poisoned mutex only means another thread panicked while appending; the
        // mutex guards no data, so it is still safe to take.
        let _guard = self
            .append_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cause) = self.orders_file_broken.get() {
            return Err(self.broken_error(cause).into());
        }
        let file = self.open_for_append()?;
        file.lock().map_err(|error| self.io_error("lock", error))?;
        // Checked under both locks, as late as possible: waiting behind other writers (and
        // their fsyncs) takes time too. A request whose client has given up must not leave
        // a ghost order — an order nobody was told about, which a retry would duplicate.
        // A deadline passing after this point is not an error: the order is being written
        // and reporting a failure for it would be a lie.
        if deadline_passed(deadline) {
            return Err(StoreError::DeadlineExceeded {
                stage: StoreError::DEADLINE_BEFORE_WRITE,
            }
            .into());
        }
        let durable = self.options.durable;
        // Another process sharing the file may have died in the middle of an append, or
        // failed to take its partial line back: never glue this order onto that.
        self.repair_tail_before_append(&file)?;
        // Exact: every writer appends under the OS lock we hold.
        let len_before = file
            .metadata()
            .map_err(|error| self.io_error("read the length of", error))?
            .len();
        let journaled = match &self.idempotency {
            Some(idempotency) => {
                let journal =
                    idempotency
                        .journal
                        .catch_up(&idempotency.index, &self.path, durable)?;
                match key {
                    Some(key) => {
                        // Our claim keeps the key in progress, so if it is completed now,
                        // another store sharing the file wrote it while we did the work.
                        if let Some(original) = idempotency.index.completed_code(key) {
                            return if original == *code {
                                Ok(Submitted::Replayed)
                            } else {
                                Err(StoreError::KeyReused {
                                    key: key.to_string(),
                                    original_code: original.into_string(),
                                }
                                .into())
                            };
                        }
                        let mark = journal.append(key, code, len_before, durable)?;
                        Some((journal, mark))
                    }
                    None => None,
                }
            }
            None => None,
        };
        // O_APPEND makes the kernel position every write at the current end of file; the
        // exclusive lock keeps other processes' lines from landing inside ours.
        if let Err(error) = (&file).write_all(line.as_bytes()) {
            let error = self.take_back_failed_append(&file, len_before, error);
            if let Some((journal, mark)) = journaled {
                journal.undo(mark, durable);
            }
            return Err(error.into());
        }
        if durable {
            // An fsync error is fatal for this request and is never retried: after a
            // failed fsync Linux may drop the dirty pages and mark them clean, so a second
            // fsync can succeed without the data being on disk (PostgreSQL's "fsyncgate",
            // 2018). The line is in the file, but whether it will survive is unknown.
            file.sync_data().map_err(|error| AppendError {
                error: self.io_error("sync", error),
                line_written: true,
            })?;
        }
        Ok(Submitted::Written)
    }

    /// Removes a partial last line found under the locks before an append (see
    /// [`files::PartialTail`] for why that is safe). If it cannot be removed, nothing may be
    /// appended: the store is marked broken.
    fn repair_tail_before_append(&self, file: &File) -> Result<(), StoreError> {
        let Some(tail) = find_partial_tail(file, &self.path)? else {
            return Ok(());
        };
        match tail.remove(file, &self.path) {
            Ok(repaired) => {
                if self.options.durable {
                    // As after taking back a failed append: see there.
                    let _ = file.sync_data();
                }
                *self.repaired_tail_slot() = Some(repaired);
                Ok(())
            }
            Err(error) => Err(self.mark_broken(format!(
                "another writer left a partial last line, and removing it failed ({error})"
            ))),
        }
    }

    /// After a failed write of an order line: truncates the file back to `len_before` so no
    /// partial line stays to be glued onto the next order. Returns the error to report.
    fn take_back_failed_append(
        &self,
        file: &File,
        len_before: u64,
        write_error: std::io::Error,
    ) -> StoreError {
        match truncate_back(file, len_before) {
            Ok(truncated) => {
                if truncated && self.options.durable {
                    // A failed sync here is no reason to stop: this process sees the
                    // truncated file, and if the partial line comes back after a power
                    // loss, the start-up repair removes it (it was never acknowledged).
                    let _ = file.sync_data();
                }
                self.io_error("append to", write_error)
            }
            Err(truncate_error) => self.mark_broken(format!(
                "appending failed ({write_error}), and truncating the file back to \
                 {len_before} bytes failed ({truncate_error})"
            )),
        }
    }

    /// Stops all appends until a restart (the first cause is kept); returns the error.
    fn mark_broken(&self, cause: String) -> StoreError {
        self.broken_error(self.orders_file_broken.get_or_init(|| cause))
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

/// Why an append failed, and whether the order line reached the file anyway.
struct AppendError {
    error: StoreError,
    /// The line was appended but could not be synced.
    line_written: bool,
}

impl From<StoreError> for AppendError {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            line_written: false,
        }
    }
}

/// A key marked in progress by this submit. Dropped unsettled (an early return, a
/// panic), it releases the key so a retry can do the work.
struct Claim<'a> {
    index: &'a KeyIndex,
    key: &'a IdempotencyKey,
    settled: bool,
}

impl<'a> Claim<'a> {
    fn new(index: &'a KeyIndex, key: &'a IdempotencyKey) -> Self {
        Self {
            index,
            key,
            settled: false,
        }
    }

    /// The order is written (and synced, if durable) or was found written by another
    /// store: later submits replay.
    fn complete(mut self) {
        self.index.complete(self.key);
        self.settled = true;
    }

    /// The line was written but not confirmed on disk: keep the key in progress so this
    /// process neither writes it twice nor replays an order that may be lost. The next
    /// open decides from what the orders file really holds.
    fn leave_in_doubt(mut self) {
        self.index.leave_in_doubt(self.key);
        self.settled = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.index.release(self.key);
        }
    }
}

fn deadline_passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// A counting semaphore (std only) bounding the orders that fill their string at once.
#[derive(Debug)]
struct FillGate {
    filling: Mutex<usize>,
    turn_freed: Condvar,
    max: usize,
}

/// One order's turn to fill; gives it back on drop.
struct FillTurn<'a>(&'a FillGate);

impl FillGate {
    fn new(max: usize) -> Self {
        FillGate {
            filling: Mutex::new(0),
            turn_freed: Condvar::new(),
            max: max.max(1),
        }
    }

    fn enter(&self) -> FillTurn<'_> {
        let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        while *filling >= self.max {
            filling = self
                .turn_freed
                .wait(filling)
                .unwrap_or_else(|p| p.into_inner());
        }
        *filling += 1;
        FillTurn(self)
    }
}

impl Drop for FillTurn<'_> {
    fn drop(&mut self) {
        let mut filling = self.0.filling.lock().unwrap_or_else(|p| p.into_inner());
        *filling -= 1;
        self.0.turn_freed.notify_one();
    }
}

/// How much of an order's string is given back to the system at a time.
const RELEASE_STEP: usize = 8 << 20;

/// Frees an order's string a slice at a time instead of in one go.
///
/// Why: a large allocation is its own memory mapping, and dropping it unmaps 150 MB in
/// one system call that holds the process's address-space lock for 10–30 ms. Every
/// other thread that needs the lock meanwhile waits — measured: the async worker growing
/// its allocator heap (`mprotect`) while answering a 503, which turned a refusal decided
/// in microseconds into one answered in 11 ms. Shrinking the buffer in 8 MiB steps
/// (each a `realloc` the allocator serves by unmapping the tail in place) does the same
/// total work but holds the lock for well under a millisecond at a time. Nothing else
/// changes: the memory is held for exactly as long as before.
fn release_in_steps(work: String) {
    let mut bytes = work.into_bytes();
    while bytes.len() > RELEASE_STEP {
        bytes.truncate(bytes.len() - RELEASE_STEP);
        bytes.shrink_to_fit();
    }
}

/// The original's `new string('a', n)`: a string of `chars` `'a'`s with every byte
/// written (so every page is really touched), allocated fallibly.
fn simulate_expensive_work(chars: usize) -> Result<String, StoreError> {
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(chars)
        .map_err(|error| StoreError::Allocation { chars, error })?;
    bytes.resize(chars, b'a');
    // All bytes are ASCII, so this cannot fail; the check costs a fraction of the fill.
    let work = String::from_utf8(bytes).expect("a run of ASCII 'a' is valid UTF-8");
    Ok(std::hint::black_box(work))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::read_orders_file;

    fn tiny() -> Workload {
        Workload {
            alloc_chars: 1000,
            delay: Duration::from_millis(5),
            release_early: false,
        }
    }

    fn code(s: &str) -> ItemCode {
        ItemCode::parse(s).unwrap()
    }

    #[test]
    fn defaults_are_the_faithful_workload() {
        let w = Workload::default();
        assert_eq!(w.alloc_chars, 150_000_000);
        assert_eq!(w.delay, Duration::from_millis(500));
        assert!(!w.release_early);
    }

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn work_released_in_steps_goes_back_to_the_system() {
        // 64 MiB + a partial step: the loop's last slice is smaller than a step.
        let chars = (64 << 20) + 12345;
        let work = simulate_expensive_work(chars).unwrap();
        let filled = resident_kib();
        release_in_steps(work);
        let released = resident_kib();
        // Other tests in this process use kilobyte workloads; 48 MiB is far above noise.
        assert!(
            filled.saturating_sub(released) > 48 << 10,
            "RSS {filled} KiB filled, {released} KiB released"
        );
        // Sizes below one step and zero are simply dropped.
        release_in_steps(simulate_expensive_work(RELEASE_STEP - 1).unwrap());
        release_in_steps(String::new());
    }

    #[test]
    fn open_creates_the_file_and_submit_appends_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("PurchaseOrders.txt");
        let store = PurchaseOrderStore::open(&path, tiny()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");

        store.submit_purchase_order(&code("123")).unwrap();
        store.submit_purchase_order(&code("456")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Purchase order for item: 123\nPurchase order for item: 456\n"
        );
    }

    #[test]
    fn submit_blocks_for_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let workload = Workload {
            delay: Duration::from_millis(120),
            ..tiny()
        };
        let store = PurchaseOrderStore::open(dir.path().join("o.txt"), workload).unwrap();
        let started = Instant::now();
        store.submit_purchase_order(&code("1")).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(120));
    }

    #[test]
    fn the_fill_gate_lets_at_most_its_limit_in_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = Arc::new(FillGate::new(2));
        let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        let _turn = gate.enter();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(
            *gate.filling.lock().unwrap(),
            0,
            "every turn was given back"
        );
    }

    #[test]
    fn a_store_with_a_fill_gate_still_writes_every_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        let options = StoreOptions {
            max_concurrent_fills: Some(1),
            ..Default::default()
        };
        let store = Arc::new(PurchaseOrderStore::open_with(&path, tiny(), options).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .submit_purchase_order(&code(&format!("g{t}")))
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(read_orders_file(&path).unwrap().orders.len(), 8);
    }

    #[test]
    fn an_observed_submit_reports_the_wait_at_the_fill_gate() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            max_concurrent_fills: Some(1),
            ..Default::default()
        };
        // 64 MB fills take tens of milliseconds: a second order waits for one.
        let workload = Workload {
            alloc_chars: 64 << 20,
            delay: Duration::from_millis(1),
            release_early: false,
        };
        let store = Arc::new(
            PurchaseOrderStore::open_with(dir.path().join("o.txt"), workload, options).unwrap(),
        );
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let timings: Vec<FillTiming> = (0..2)
            .map(|t| {
                let (store, barrier) = (store.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut seen = None;
                    barrier.wait();
                    store
                        .submit_observed(&code(&format!("w{t}")), SubmitOptions::default(), |f| {
                            seen = Some(f)
                        })
                        .unwrap();
                    seen.expect("the fill was observed")
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let (first, second) = if timings[0].waited <= timings[1].waited {
            (timings[0], timings[1])
        } else {
            (timings[1], timings[0])
        };
        assert!(first.filled > Duration::ZERO && second.filled > Duration::ZERO);
        // The later one waited for (most of) the earlier one's fill.
        assert!(
            second.waited >= first.filled / 2,
            "{first:?} then {second:?}"
        );
    }

    #[test]
    fn work_is_really_filled() {
        let work = simulate_expensive_work(4096).unwrap();
        assert_eq!(work.len(), 4096);
        assert!(work.bytes().all(|b| b == b'a'));
    }

    #[test]
    fn an_allocation_refusal_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        let workload = Workload {
            alloc_chars: usize::MAX,
            ..tiny()
        };
        let store = PurchaseOrderStore::open(&path, workload).unwrap();
        let err = store.submit_purchase_order(&code("1")).unwrap_err();
        assert!(matches!(err, StoreError::Allocation { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn open_fails_with_the_path_when_the_directory_is_missing() {
        let err = PurchaseOrderStore::open("/nonexistent-dir/o.txt", tiny()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("open for append") && msg.contains("/nonexistent-dir/o.txt"),
            "{msg}"
        );
    }

    #[test]
    fn a_device_is_refused_at_open_as_not_a_regular_file() {
        // /dev/full would accept the open and fail every write; /dev/null would swallow
        // every order while the store acknowledged it.
        for device in ["/dev/full", "/dev/null"] {
            let err = PurchaseOrderStore::open(device, tiny()).unwrap_err();
            assert!(
                matches!(
                    &err,
                    StoreError::NotARegularFile {
                        kind: "a character device",
                        ..
                    }
                ),
                "{err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "cannot use {device} as the orders file: it is a character device, not a \
                     regular file; choose a regular file for --orders-file"
                )
            );
        }
    }

    #[test]
    fn concurrent_submits_from_many_threads_write_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        let store = Arc::new(PurchaseOrderStore::open(&path, tiny()).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..10 {
                        store
                            .submit_purchase_order(&code(&format!("t{t}-{i}")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let file = read_orders_file(&path).unwrap();
        assert!(file.malformed.is_empty(), "{:?}", file.malformed);
        let mut got: Vec<String> = file.orders.into_iter().map(ItemCode::into_string).collect();
        got.sort();
        let mut want: Vec<String> = (0..16)
            .flat_map(|t| (0..10).map(move |i| format!("t{t}-{i}")))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    /// A keyed store whose journal is the given file (a real journal is always beside
    /// its orders file, which makes a failing one hard to arrange).
    fn store_with_journal(orders: &Path, journal: &Path, durable: bool) -> PurchaseOrderStore {
        PurchaseOrderStore {
            path: orders.to_owned(),
            workload: tiny(),
            options: StoreOptions {
                durable,
                idempotency: true,
                max_concurrent_fills: None,
            },
            append_lock: Mutex::new(()),
            fill_gate: None,
            idempotency: Some(Idempotency {
                index: KeyIndex::default(),
                journal: Journal::at(journal.to_owned()),
                recovery: JournalRecovery::default(),
            }),
            repaired_tail: Mutex::new(None),
            orders_file_broken: OnceLock::new(),
        }
    }

    fn keyed(key: &IdempotencyKey) -> SubmitOptions<'_> {
        SubmitOptions {
            deadline: None,
            key: Some(key),
        }
    }

    #[test]
    fn a_journal_write_that_fails_cleanly_does_not_refuse_later_keyed_orders() {
        // /dev/full fails every write with ENOSPC before writing anything: the journal is
        // as it was, so the failure is this order's alone.
        let dir = tempfile::tempdir().unwrap();
        let orders = dir.path().join("o.txt");
        std::fs::write(&orders, "").unwrap();
        let store = store_with_journal(&orders, Path::new("/dev/full"), false);
        let k = IdempotencyKey::parse("k").unwrap();
        for _ in 0..2 {
            // The second attempt fails on the write again, not on a journal marked failed.
            let err = store.submit(&code("1"), keyed(&k)).unwrap_err();
            assert!(
                matches!(&err, StoreError::Io { action: "append to", path, .. } if path == Path::new("/dev/full")),
                "{err:?}"
            );
            assert_eq!(store.journal_failure(), None);
            assert_eq!(store.keys_known(), 0, "the key is released for a retry");
        }
        assert_eq!(std::fs::read(&orders).unwrap(), b"");
    }

    #[test]
    fn a_failed_journal_sync_refuses_keyed_orders_until_a_restart() {
        // /dev/null takes every write, and fsync of it fails (EINVAL): a simulated sync
        // failure, which is never retried.
        let dir = tempfile::tempdir().unwrap();
        let orders = dir.path().join("o.txt");
        std::fs::write(&orders, "").unwrap();
        let store = store_with_journal(&orders, Path::new("/dev/null"), true);
        let k = IdempotencyKey::parse("k").unwrap();

        let first = store.submit(&code("1"), keyed(&k)).unwrap_err();
        let again = store.submit(&code("1"), keyed(&k)).unwrap_err();
        for err in [&first, &again] {
            match err {
                StoreError::JournalFailed { path, cause } => {
                    assert_eq!(path, Path::new("/dev/null"));
                    assert!(cause.starts_with("syncing it failed ("), "{cause}");
                }
                other => panic!("expected JournalFailed, got {other:?}"),
            }
            assert!(
                err.to_string()
                    .starts_with("keyed orders are refused until the server restarts: "),
                "{err}"
            );
        }
        let health = store
            .journal_failure()
            .expect("the journal is reported failed");
        assert_eq!(health, first.to_string());
        assert_eq!(store.orders_file_failure(), None);
        assert_eq!(std::fs::read(&orders).unwrap(), b"", "no order was written");
        assert_eq!(store.keys_known(), 0, "the key is released");

        // Orders without a key do not need the journal.
        store.submit_purchase_order(&code("2")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&orders).unwrap(),
            "Purchase order for item: 2\n"
        );
    }

    #[test]
    fn a_failed_order_append_takes_its_journal_record_back() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("j");
        std::fs::write(&journal, "").unwrap();
        let store = store_with_journal(Path::new("/dev/full"), &journal, false);
        let k = IdempotencyKey::parse("k").unwrap();
        for _ in 0..2 {
            // The second attempt fails on the orders file again, not on a journal that
            // was marked failed: taking the record back succeeded.
            let err = store.submit(&code("1"), keyed(&k)).unwrap_err();
            assert!(
                err.to_string().starts_with("cannot append to /dev/full: "),
                "{err}"
            );
            assert_eq!(std::fs::read(&journal).unwrap(), b"");
            assert_eq!(store.keys_known(), 0);
        }
    }
}
