//! The append under the locks: the deadline checked last, the journal caught up and its
//! record written, the order line written in one `write` — and each write taken back when
//! it fails, so no partial line or orphan record stays behind. In durable mode the line's
//! fsync comes after the locks, shared with the lines written meanwhile (`group_commit`).

use std::fs::File;
use std::io::Write;
use std::time::Instant;

use super::group_commit::Ticket;
use super::{PurchaseOrderStore, Submitted, deadline_passed};
use crate::error::{StoreError, sync_error_at};
use crate::files::{find_partial_tail, truncate_back};
use crate::idempotency::IdempotencyKey;
use crate::order_line;
use item_code::ItemCode;

impl PurchaseOrderStore {
    /// One order line, appended under both locks in a single write. The file is opened
    /// per call, like the original's `File.AppendText`, and closed (unlocking it) on drop.
    ///
    /// With idempotency on, the journal is caught up first, and with a key its record goes
    /// before the line; see [`crate::idempotency`] for the protocol. A write that fails is
    /// taken back (truncated to the length before it), so no partial line stays behind.
    pub(super) fn append_order(
        &self,
        code: &ItemCode,
        deadline: Option<Instant>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Submitted, AppendError> {
        match self.append_under_locks(code, deadline, key)? {
            Appended::Replayed => Ok(Submitted::Replayed),
            Appended::Written { sync: None } => Ok(Submitted::Written),
            Appended::Written {
                sync: Some((file, ticket)),
            } => {
                self.wait_until_on_disk(&file, ticket)?;
                Ok(Submitted::Written)
            }
        }
    }

    /// Durable mode, after the locks were let go: returns once a flush covering the line
    /// has finished (see [`super::group_commit`]). A failed flush marks the store broken.
    fn wait_until_on_disk(&self, file: &File, ticket: Ticket) -> Result<(), AppendError> {
        // An fsync error is fatal for this request and is never retried: after a failed
        // fsync Linux may drop the dirty pages and mark them clean, so a second fsync can
        // succeed without the data being on disk (PostgreSQL's "fsyncgate", 2018). The
        // line is in the file, but whether it will survive is unknown — and so is every
        // line appended since, which is why the store stops acknowledging.
        self.group_commit
            .wait_durable(ticket, file)
            .map_err(|error| {
                let _ = self.mark_broken(format!("syncing the orders file failed ({error})"));
                AppendError {
                    error: sync_error_at(&self.path, error),
                    line_written: true,
                }
            })
    }

    /// The append itself, under both locks; in durable mode it returns the line's ticket
    /// and a descriptor to sync it through, the OS lock already let go.
    fn append_under_locks(
        &self,
        code: &ItemCode,
        deadline: Option<Instant>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Appended, AppendError> {
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
                                Ok(Appended::Replayed)
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
        if !durable {
            return Ok(Appended::Written { sync: None });
        }
        // Numbered under the append lock, after the write: tickets follow the file.
        let ticket = self.group_commit.appended();
        // Other processes sharing the file may append while this one waits for the flush.
        // Should unlocking fail, closing the file after the flush lets the lock go anyway.
        let _ = file.unlock();
        Ok(Appended::Written {
            sync: Some((file, ticket)),
        })
    }

    /// Removes a partial last line found under the locks before an append (see
    /// [`PartialTail`] for why that is safe). If it cannot be removed, nothing may be
    /// appended: the store is marked broken.
    ///
    /// [`PartialTail`]: crate::files::PartialTail
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
}

/// What an append under the locks did.
enum Appended {
    /// Another store sharing the file completed the key meanwhile: nothing written.
    Replayed,
    /// The line is in the file; in durable mode, still to be synced through this
    /// descriptor.
    Written { sync: Option<(File, Ticket)> },
}

/// Why an append failed, and whether the order line reached the file anyway.
pub(super) struct AppendError {
    pub(super) error: StoreError,
    /// The line was appended but could not be synced.
    pub(super) line_written: bool,
}

impl From<StoreError> for AppendError {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            line_written: false,
        }
    }
}
