//! Opening a store: refusing what is not a regular file, creating the orders file (its name
//! synced when durable), removing a partial last line a crash left, recovering the journal.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use super::{Idempotency, PurchaseOrderStore, StoreOptions};
use crate::error::{OpenMode, StoreError, open_error_at, sync_error_at};
use crate::files::{
    self, Create, find_partial_tail, open_to_append, refuse_special_file, require_regular_open,
    sync_parent_dir,
};
use crate::idempotency::Journal;
use crate::workload::{FillGate, Workload};

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
            group_commit: Default::default(),
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
                    .map_err(|error| sync_error_at(&store.path, error))?;
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

    /// Opens the orders file for append; if this call created it, syncs its directory so
    /// the new name is on disk before any order in it is acknowledged.
    fn create_durably(&self) -> Result<File, StoreError> {
        match open_to_append(&self.path, Create::New) {
            Ok(file) => {
                sync_parent_dir(&self.path)?;
                Ok(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.open_for_append(),
            Err(error) => Err(open_error_at(OpenMode::Append, &self.path, error)),
        }
    }
}
