//! The journal file of one store: opened and recovered at start-up, caught up with other
//! stores before every append, appended to and taken back under the append lock.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use super::index::KeyIndex;
use super::key::{IdempotencyKey, journal_path};
use super::record::{BadRecord, Record, format_record, parse_record, unix_ms_now};
use super::recovery::{JournalRecovery, OrdersReader, recover, rewrite};
use crate::error::{OpenMode, StoreError, io_error_at, open_error_at};
use crate::files::{
    self, Create, FileId, file_id, open_to_append, read_range, refuse_special_file,
    sync_parent_dir, truncate_back,
};
use item_code::ItemCode;

/// How far this store has read the shared journal.
#[derive(Debug, Default)]
struct Cursor {
    /// The journal file that was read (`None`: not known, read it from the start).
    file: Option<FileId>,
    /// Every record before this byte offset is in the index (or was judged incomplete).
    read_to: u64,
}

/// The journal of one store. Only touched under the store's append lock and the orders
/// file's OS lock.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    /// See the `idempotency` module docs ("Several processes on one orders file"). A mutex only for
    /// interior mutability: the append lock already serialises its users.
    cursor: Mutex<Cursor>,
    /// Set once the journal failed in a way that cannot be retried: an fsync failed, or a
    /// record could not be taken back. From then on keyed submits fail until a restart,
    /// whose recovery checks every record against the orders file — PostgreSQL's answer
    /// to a failed fsync, scoped to the journal. Unkeyed orders and replays are
    /// unaffected. Holds the cause.
    failure: OnceLock<String>,
}

impl Journal {
    /// Recovers the journal beside `orders_path` (see the `idempotency` module docs) and
    /// makes sure it exists. The caller holds the OS lock on the orders file, so no other
    /// process appends while the records are checked.
    pub(crate) fn open(
        orders_path: &Path,
        durable: bool,
    ) -> Result<(Self, KeyIndex, JournalRecovery), StoreError> {
        let path = journal_path(orders_path);
        // std::fs::read of a FIFO would block start-up until some writer appeared.
        refuse_special_file(&path, files::JOURNAL)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(io_error_at("read", &path, error)),
        };
        let existed = bytes.is_some();
        let (records, mut recovery) = match bytes {
            Some(bytes) => recover(&path, &bytes, orders_path, unix_ms_now())?,
            None => (Vec::new(), JournalRecovery::default()),
        };
        let dropped = recovery.incomplete
            + recovery.torn
            + recovery.expired
            + recovery.superseded
            + recovery.invalid_code;
        if dropped > 0 {
            rewrite(&path, &records)?;
            recovery.rewritten = true;
        }
        let file = open_to_append(&path, Create::IfMissing)
            .map_err(|error| open_error_at(OpenMode::Append, &path, error))?;
        files::require_regular_open(&file, &path, files::JOURNAL)?;
        if durable && !existed {
            // A new file's name lives in the directory: without this, a power loss could
            // lose the whole journal even though its records were synced.
            sync_parent_dir(&path)?;
        }
        let metadata = file
            .metadata()
            .map_err(|error| io_error_at("read the length of", &path, error))?;
        let journal = Self {
            path,
            cursor: Mutex::new(Cursor {
                file: file_id(&metadata),
                read_to: metadata.len(),
            }),
            failure: OnceLock::new(),
        };
        let index = KeyIndex::default();
        index.merge_completed(records);
        Ok((journal, index, recovery))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A journal at any path, read from its start at the first append: for tests that
    /// need one whose writes or syncs fail (a real journal is always beside its orders
    /// file, which makes a failing one hard to arrange).
    #[cfg(test)]
    pub(crate) fn at(path: PathBuf) -> Self {
        Self {
            path,
            cursor: Mutex::new(Cursor::default()),
            failure: OnceLock::new(),
        }
    }

    /// The error keyed orders are refused with until a restart, if they are.
    pub(crate) fn failed(&self) -> Option<StoreError> {
        self.failure.get().map(|cause| self.failed_error(cause))
    }

    fn failed_error(&self, cause: &str) -> StoreError {
        StoreError::JournalFailed {
            path: self.path.clone(),
            cause: cause.to_owned(),
        }
    }

    /// Marks the journal failed (the first cause is kept) and returns the error to report.
    fn fail(&self, cause: String) -> StoreError {
        self.failed_error(self.failure.get_or_init(|| cause))
    }

    fn cursor(&self) -> MutexGuard<'_, Cursor> {
        self.cursor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the journal for one append and catches up with records other stores sharing
    /// the orders file appended since this one last read (see the `idempotency` module
    /// docs). Complete records go into `index`; records after the last complete one are
    /// truncated. The caller holds the append lock and the orders file's OS lock, and calls
    /// this before every append, keyed or not.
    pub(crate) fn catch_up(
        &self,
        index: &KeyIndex,
        orders_path: &Path,
        durable: bool,
    ) -> Result<OpenJournal<'_>, StoreError> {
        let file = self.open_for_append(durable)?;
        let metadata = file
            .metadata()
            .map_err(|error| io_error_at("read the length of", &self.path, error))?;
        let (id, len) = (file_id(&metadata), metadata.len());
        let mut cursor = self.cursor();
        // Replaced by another store's start-up rewrite, or shortened by an undo: what we
        // read before may not be where it was, so read it all again.
        let from = if id.is_some() && id == cursor.file && len >= cursor.read_to {
            cursor.read_to
        } else {
            0
        };
        let bytes =
            read_range(&file, from, len).map_err(|error| io_error_at("read", &self.path, error))?;
        let (complete, keep_to) = self.complete_records(&bytes, from, orders_path)?;
        if keep_to < len {
            self.cut_off(&file, keep_to, durable)?;
        }
        index.merge_completed(complete);
        *cursor = Cursor {
            file: id,
            read_to: keep_to,
        };
        Ok(OpenJournal {
            journal: self,
            file,
            len: keep_to,
        })
    }

    /// Opens the journal to append; one removed (by hand?) since is created again, its
    /// name made durable.
    fn open_for_append(&self, durable: bool) -> Result<File, StoreError> {
        match open_to_append(&self.path, Create::Never) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let file = open_to_append(&self.path, Create::IfMissing)
                    .map_err(|error| open_error_at(OpenMode::Create, &self.path, error))?;
                if durable {
                    sync_parent_dir(&self.path)?;
                }
                Ok(file)
            }
            Err(error) => Err(open_error_at(OpenMode::Append, &self.path, error)),
        }
    }

    /// The complete records in `bytes` (the journal from offset `from`): those whose order
    /// line is in the orders file; and the journal's length once the leftovers of a dead
    /// writer — records without their line, a torn last record — are cut off.
    fn complete_records(
        &self,
        bytes: &[u8],
        from: u64,
        orders_path: &Path,
    ) -> Result<(Vec<Record>, u64), StoreError> {
        let mut complete = Vec::new();
        let mut keep_to = from;
        let mut orders: Option<OrdersReader<'_>> = None;
        let mut at = from;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let Some(text) = line.strip_suffix(b"\n") else {
                break; // a torn record: cut off by the caller
            };
            let start = at;
            at += line.len() as u64;
            match parse_record(text) {
                Ok(record) => {
                    let orders = match &mut orders {
                        Some(orders) => orders,
                        None => orders.insert(OrdersReader::open(orders_path)?),
                    };
                    if orders.holds_line_at(&record.code, record.offset)? {
                        complete.push(record);
                        keep_to = at;
                    }
                }
                // Written by an older version of the store; no request can replay it, and
                // it is not ours to remove while other stores run.
                Err(BadRecord::InvalidCode) => keep_to = at,
                Err(BadRecord::Malformed(reason)) => return Err(self.malformed(start, &reason)),
            }
        }
        Ok((complete, keep_to))
    }

    /// A line that is not a record: keyed orders cannot be checked against the journal.
    fn malformed(&self, start: u64, reason: &str) -> StoreError {
        io_error_at(
            "read the idempotency journal",
            &self.path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the line at byte {start} is not a record ({reason}); keyed orders cannot \
                     be checked against it. Fix or delete the line"
                ),
            ),
        )
    }

    /// Truncates the journal to `keep_to`. Nobody is between a record and its order line
    /// while we hold the lock, so what lies beyond was left by a writer that died or failed
    /// there. Left in place, an order with the same code landing at such a record's offset
    /// would make it look complete, and the next record would glue onto a torn one.
    fn cut_off(&self, file: &File, keep_to: u64, durable: bool) -> Result<(), StoreError> {
        file.set_len(keep_to)
            .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
            .map_err(|error| {
                io_error_at(
                    "remove the records of an interrupted append from",
                    &self.path,
                    error,
                )
            })
    }
}

/// The journal opened for one append, caught up. Exists only under the append lock.
pub(crate) struct OpenJournal<'a> {
    journal: &'a Journal,
    file: File,
    /// Its length: the offset the next record starts at.
    len: u64,
}

/// Where the journal ended before a record was appended, so the record can be taken back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JournalMark {
    len_before: u64,
}

impl OpenJournal<'_> {
    /// Step (b) of the protocol, and the journal's half of (d). A failed write is taken
    /// back and the next keyed order tries again; a failed sync, or a write that cannot be
    /// taken back, marks the journal failed.
    pub(crate) fn append(
        &self,
        key: &IdempotencyKey,
        code: &ItemCode,
        offset: u64,
        durable: bool,
    ) -> Result<JournalMark, StoreError> {
        let journal = self.journal;
        if let Some(failed) = journal.failed() {
            return Err(failed);
        }
        let mark = JournalMark {
            len_before: self.len,
        };
        let record = format_record(key, code, offset, unix_ms_now());
        if let Err(error) = (&self.file).write_all(record.as_bytes()) {
            return Err(match self.take_back(mark, durable) {
                Ok(()) => io_error_at("append to", &journal.path, error),
                Err(undo) => journal.fail(format!(
                    "appending a record failed ({error}) and it could not be taken back ({undo})"
                )),
            });
        }
        if durable && let Err(error) = self.file.sync_data() {
            // The order line will not be written: take the record back so it cannot look
            // complete later. Best effort — the journal is marked failed either way, and
            // the restart's recovery drops the record if it is still there.
            let _ = self.take_back(mark, durable);
            return Err(journal.fail(format!(
                "syncing it failed ({error}); after a failed fsync the kernel may have \
                 dropped the data while a later fsync reports success, so it is not retried"
            )));
        }
        journal.cursor().read_to = mark.len_before + record.len() as u64;
        Ok(mark)
    }

    /// Takes back the record appended at `mark` because its order line was not written.
    /// Left in place, it could later look complete: another order with the same item code
    /// may land at its offset. If that fails, the journal is marked failed (and the next
    /// catch-up, of this store or another, tries to cut the record off again).
    pub(crate) fn undo(&self, mark: JournalMark, durable: bool) {
        match self.take_back(mark, durable) {
            Ok(()) => self.journal.cursor().read_to = mark.len_before,
            Err(error) => {
                self.journal.fail(format!(
                    "a record whose order line could not be written could not be taken back \
                     ({error})"
                ));
            }
        }
    }

    /// Truncates back to `mark`, synced when durable: a record taken back must not come
    /// back after a power loss, since the next order lands at its offset.
    fn take_back(&self, mark: JournalMark, durable: bool) -> io::Result<()> {
        if truncate_back(&self.file, mark.len_before)? && durable {
            self.file.sync_data()?;
        }
        Ok(())
    }
}
