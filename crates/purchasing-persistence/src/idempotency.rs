//! Idempotency keys: the in-memory index of keys and the journal that lets it survive a
//! restart and shares it between processes writing one orders file. The store
//! (`PurchaseOrderStore`, which imports this module, never the reverse) drives both; this
//! module owns the key rule, the journal's line format, and the recovery rule.
//!
//! # Semantics (IETF httpapi `Idempotency-Key` draft)
//!
//! The first submit with a key does the work. Once it has completed, a submit with the
//! same key and the same item code replays the outcome and writes nothing; the same key
//! with another item code is a misuse (`KeyReused`, HTTP 422); the same key while the
//! first is still in progress is a conflict (`KeyInProgress`, HTTP 409). A submit whose
//! work fails (allocation, deadline, I/O before the order line was written) releases the
//! key, so a retry does the work. Completed keys are kept for at least
//! [`IDEMPOTENCY_KEY_EXPIRY`] (the published expiry policy the draft asks for).
//!
//! # Why an append-only journal and not an embedded database
//!
//! * The store already appends one line per order under a lock. A journal record is one
//!   more append under the same lock, so keyed orders cost one extra `write` (and, when
//!   durable, one extra `fdatasync`) — no pages, B-trees or compaction on the hot path.
//! * What matters is the order line, and the orders file is the spec: a plain text file
//!   no database transaction can span. Any store would still need the offset check below
//!   to tie a key to its line, and with that check the journal needs nothing more.
//! * The index is small and rebuildable: read the journal at start-up, keep the records
//!   whose order line is really in the orders file, rewrite the journal without the rest.
//! * No dependency: `std` only, and the file is readable with `cat` and `cut -f`.
//!
//! # Journal format
//!
//! The journal is `<orders file name>.idempotency` beside the orders file (for example
//! `PurchaseOrders.txt.idempotency`), one line per keyed order:
//!
//! ```text
//! KEY<TAB>ITEM CODE<TAB>OFFSET<TAB>UNIX_MS<LF>
//! ```
//!
//! `OFFSET` is the byte offset in the orders file where the order's line starts, and
//! `UNIX_MS` when the record was written (milliseconds since the Unix epoch, for the
//! expiry). TAB is a safe separator: a key is visible ASCII (no TAB, no space) and an
//! [`ItemCode`] has no control characters (TAB and LF included), so neither can contain
//! one.
//!
//! # Write-ahead protocol and recovery rule
//!
//! Under the store's append lock (in-process mutex + OS lock on the orders file), a keyed
//! order is written as: (a) read the orders file's length `off` — exact, because every
//! writer holds the lock; (b) append the journal record with `off`; (c) append the order
//! line, which therefore starts at `off`; (d) when durable, `fdatasync` the journal
//! before (c) and the orders file after (c).
//!
//! A write that fails in (b) or (c) is taken back (the file truncated to its length before
//! it), also the record of (b) when (c) fails, and the journal is as it was: the next
//! keyed order simply tries again. Only a failed `fdatasync` of the journal, or a record
//! that could not be taken back, marks the journal failed: keyed orders are then refused
//! ([`StoreError::JournalFailed`]) until a restart, whose recovery checks every record.
//! A failed fsync is never retried because after one the kernel may have dropped the
//! dirty pages, and a later fsync can report success without the data on disk
//! (PostgreSQL's "fsyncgate", 2018).
//!
//! At open, a record is **complete** iff the orders file holds exactly
//! [`format_line`]`(code)` at byte `off`. A crash after (b) and before (c) leaves an
//! incomplete record; it is dropped, so a retry with that key does the work once. A crash
//! after (c) leaves a complete record, so a retry replays. A torn last record (no `\n`,
//! the crash hit (b) itself) is dropped too: (c) never started. Records older than the
//! expiry are dropped, and when anything was dropped the journal is rewritten without it
//! (temp file, fsync, rename, fsync of the directory) before any new order is written —
//! otherwise a later order with the same item code landing at a dropped record's offset
//! would make that record look complete. Any other malformed line is an error naming the
//! file and line: the journal is not silently discarded. The exception is a record whose
//! item code the current [`ItemCode`] rule rejects (written before the rule got stricter):
//! no request can carry that code any more, so none can replay it, and it is dropped and
//! counted ([`JournalRecovery::invalid_code`]).
//!
//! Without `durable`, the ordering protects against a crash of the process (kill -9: the
//! page cache survives) but not against a power loss.
//!
//! # Several processes on one orders file
//!
//! Several stores — in one process or, behind a load balancer, in several — may write one
//! orders file with idempotency on, and a key still writes at most one line across all of
//! them. Each store keeps its own index, so the journal is shared and each store catches up
//! with it:
//!
//! * Every writer appends its records under the orders file's OS lock, which it holds
//!   anyway for the order line; so does the start-up recovery and its rewrite.
//! * Under that lock, before every append (keyed or not), a store reads the records
//!   appended since it last read (it remembers the byte offset it read to and the
//!   journal's identity, device and inode). It checks each against the orders file with
//!   the recovery rule and adds the complete ones to its index as completed. If its own
//!   key turns out completed by another store, it writes nothing: the same item code
//!   replays (`Submitted::Replayed`), another code
//!   [`StoreError::KeyReused`].
//! * Records after the last complete one can only have been left by a writer that died
//!   (or failed) between its record and its order line — no writer is mid-append while we
//!   hold the lock — so the catch-up truncates them, as the recovery would: left there, an
//!   order with the same code landing at such a record's offset would make it look
//!   complete. A torn last record (a writer died in the middle of writing it) is
//!   truncated for the same reason, and so that the next record does not glue onto it. A
//!   line that is not a record fails the append with an error naming the journal and the
//!   line's byte offset, as it fails a start-up.
//! * Another store's start-up may rewrite the journal (a new file renamed over the old
//!   one), and an undo may shorten it. So the journal is opened per append, under the
//!   lock, never kept open; a changed identity, or a journal shorter than the offset read
//!   to, makes the store read it again from the start. Opening a small file per order is
//!   cheap next to an order's work.
//!
//! Within one store a second submit with a key in progress is refused at once
//! (`KeyInProgress`); across stores each does the work and the second to take the lock
//! replays the first's outcome. For the catch-up to clear a dead writer's records before
//! any order can land at their offsets, every store writing the file must have idempotency
//! on; a faithful store (no journal) appending beside them is not guarded against that.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{StoreError, io_error_at};
use crate::files::{
    self, Create, FileId, file_id, open_to_append, read_range, refuse_special_file,
    sync_parent_dir, truncate_back,
};
use crate::item_code::ItemCode;
use crate::order_line::format_line;

/// How long a completed key is remembered, at least: 24 hours, Stripe's published policy.
/// A retry later than that is treated as a new request. Expired records are dropped when a
/// store is opened; a running store keeps every key it saw until it is restarted.
pub const IDEMPOTENCY_KEY_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// Appended to the orders file's name to name its idempotency journal.
pub const JOURNAL_SUFFIX: &str = ".idempotency";

/// The idempotency journal that belongs to the orders file at `orders_file`:
/// `PurchaseOrders.txt` → `PurchaseOrders.txt.idempotency`, in the same directory.
pub fn journal_path(orders_file: &Path) -> PathBuf {
    let mut name = orders_file.as_os_str().to_owned();
    name.push(JOURNAL_SUFFIX);
    PathBuf::from(name)
}

/// A client-chosen idempotency key: 1–255 visible ASCII characters (a UUID in practice).
///
/// Visible ASCII only, so a key can never carry a TAB or newline into the journal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest key accepted, in bytes: room for any UUID or ULID, and a bound on what
    /// one request can make the store remember.
    pub const MAX_LEN: usize = 255;

    /// Validates a key as sent by a client (the `Idempotency-Key` header's value). The
    /// error message is meant for the client.
    pub fn parse(key: &str) -> Result<Self, String> {
        if key.is_empty() || key.len() > Self::MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "an idempotency key is 1 to {} visible ASCII characters (a UUID, say)",
                Self::MAX_LEN
            ));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What opening the journal found, for the start-up log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalRecovery {
    /// Records kept: keys whose order is in the orders file, within the expiry.
    pub kept: usize,
    /// Records dropped because their order line is not at their offset: a crash between
    /// the journal append and the order append, or an orders file changed since (see
    /// [`JournalRecovery::orders_file_changed`]). Those keys will do the work again.
    pub incomplete: usize,
    /// Whether an incomplete record pointed past the end of the orders file, or at a line
    /// that is not its order: the orders file was truncated, rotated, replaced or edited
    /// since those keys were recorded, and retries with them will write new orders. (A
    /// crash between a record and its order line leaves a record pointing exactly at the
    /// end of the file; that alone does not set this.)
    pub orders_file_changed: bool,
    /// A last record cut short (no newline) and dropped: 0 or 1.
    pub torn: usize,
    /// Records dropped because they are older than [`IDEMPOTENCY_KEY_EXPIRY`].
    pub expired: usize,
    /// Complete records dropped because a later record has the same key.
    pub superseded: usize,
    /// Records dropped because their item code is no longer a valid [`ItemCode`] (written
    /// before the rule got stricter): no request can carry that code, so none can replay.
    pub invalid_code: usize,
    /// Whether the journal was rewritten without the dropped records.
    pub rewritten: bool,
}

/// One journal line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub key: IdempotencyKey,
    pub code: ItemCode,
    pub offset: u64,
    pub unix_ms: u64,
}

/// Why a journal line is not a usable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadRecord {
    /// Not a line this store writes: an error naming the file and line.
    Malformed(String),
    /// A record whose item code only a rule added later rejects; see
    /// [`JournalRecovery::invalid_code`].
    InvalidCode,
}

/// The one definition of a journal line (see the module docs), newline included.
pub(crate) fn format_record(
    key: &IdempotencyKey,
    code: &ItemCode,
    offset: u64,
    unix_ms: u64,
) -> String {
    format!("{key}\t{code}\t{offset}\t{unix_ms}\n")
}

/// Parses one journal line without its `\n`.
pub(crate) fn parse_record(line: &[u8]) -> Result<Record, BadRecord> {
    let malformed = |reason: String| BadRecord::Malformed(reason);
    let line = std::str::from_utf8(line).map_err(|_| malformed("not valid UTF-8".to_owned()))?;
    let fields: Vec<&str> = line.split('\t').collect();
    let [key, code, offset, unix_ms] = fields[..] else {
        return Err(malformed(format!(
            "expected 4 TAB-separated fields (key, item code, offset, unix ms), found {}",
            fields.len()
        )));
    };
    let code = match ItemCode::parse(code) {
        Ok(code) => code,
        Err(e) if e.is_from_a_later_rule() => return Err(BadRecord::InvalidCode),
        Err(e) => return Err(malformed(format!("bad item code: {e}"))),
    };
    Ok(Record {
        key: IdempotencyKey::parse(key).map_err(|e| malformed(format!("bad key: {e}")))?,
        code,
        offset: offset
            .parse()
            .map_err(|_| malformed(format!("bad offset {offset:?}: expected a byte offset")))?,
        unix_ms: unix_ms
            .parse()
            .map_err(|_| malformed(format!("bad time {unix_ms:?}: expected Unix milliseconds")))?,
    })
}

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// A submit of this store with this key is doing the work.
    InProgress,
    /// The order line was written but could not be synced, so whether it is on disk is
    /// unknown until recovery reads the file. Answers like `InProgress`, and a record of
    /// it read back from the shared journal does not make it completed.
    InDoubt,
    Completed,
}

#[derive(Debug)]
struct KeyEntry {
    code: ItemCode,
    state: KeyState,
}

/// What a submit with a key should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begin {
    /// The key is now marked in progress: do the work, then settle the key.
    DoTheWork,
    /// The key completed with the same item code: answer at once, write nothing.
    Replay,
}

/// Key → (item code, state). Only ever locked briefly and never while the append lock is
/// being acquired, so it cannot deadlock with it.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    entries: Mutex<HashMap<IdempotencyKey, KeyEntry>>,
}

impl KeyIndex {
    fn entries(&self) -> MutexGuard<'_, HashMap<IdempotencyKey, KeyEntry>> {
        // Every update is a single insert, remove or assignment, so a panic elsewhere
        // while the lock was held cannot have left the map half-changed.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The draft's decision table, taken atomically so two submits with one key cannot
    /// both start the work.
    pub(crate) fn begin(&self, key: &IdempotencyKey, code: &ItemCode) -> Result<Begin, StoreError> {
        match self.entries().entry(key.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(KeyEntry {
                    code: code.clone(),
                    state: KeyState::InProgress,
                });
                Ok(Begin::DoTheWork)
            }
            Entry::Occupied(slot) => {
                let entry = slot.get();
                if entry.code != *code {
                    Err(StoreError::KeyReused {
                        key: key.to_string(),
                        original_code: entry.code.to_string(),
                    })
                } else if entry.state == KeyState::Completed {
                    Ok(Begin::Replay)
                } else {
                    Err(StoreError::KeyInProgress {
                        key: key.to_string(),
                    })
                }
            }
        }
    }

    pub(crate) fn complete(&self, key: &IdempotencyKey) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.state = KeyState::Completed;
        }
    }

    /// See [`KeyState::InDoubt`].
    pub(crate) fn leave_in_doubt(&self, key: &IdempotencyKey) {
        if let Some(entry) = self.entries().get_mut(key) {
            entry.state = KeyState::InDoubt;
        }
    }

    /// Forgets a key whose work failed before its order line was written.
    pub(crate) fn release(&self, key: &IdempotencyKey) {
        let mut entries = self.entries();
        if entries
            .get(key)
            .is_some_and(|e| e.state == KeyState::InProgress)
        {
            entries.remove(key);
        }
    }

    /// Adds complete records read from the journal. A key this store has in progress was
    /// completed first by another store sharing the orders file: it becomes completed with
    /// that store's item code, and the submit doing the work finds out under the lock
    /// ([`KeyIndex::completed_code`]) and writes nothing.
    fn merge_completed(&self, records: Vec<Record>) {
        let mut entries = self.entries();
        for record in records {
            match entries.entry(record.key) {
                Entry::Vacant(slot) => {
                    slot.insert(KeyEntry {
                        code: record.code,
                        state: KeyState::Completed,
                    });
                }
                Entry::Occupied(mut slot) => {
                    if slot.get().state == KeyState::InProgress {
                        slot.insert(KeyEntry {
                            code: record.code,
                            state: KeyState::Completed,
                        });
                    }
                }
            }
        }
    }

    /// The item code `key` completed with, if it has.
    pub(crate) fn completed_code(&self, key: &IdempotencyKey) -> Option<ItemCode> {
        self.entries()
            .get(key)
            .filter(|e| e.state == KeyState::Completed)
            .map(|e| e.code.clone())
    }

    pub(crate) fn in_progress(&self) -> usize {
        self.entries()
            .values()
            .filter(|e| e.state != KeyState::Completed)
            .count()
    }

    pub(crate) fn known(&self) -> usize {
        self.entries().len()
    }
}

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
    /// See the module docs ("Several processes on one orders file"). A mutex only for
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
    /// Recovers the journal beside `orders_path` (see the module docs) and makes sure it
    /// exists. The caller holds the OS lock on the orders file, so no other process
    /// appends while the records are checked.
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
            .map_err(|error| io_error_at("open for append", &path, error))?;
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
    /// the orders file appended since this one last read (see the module docs). Complete
    /// records go into `index`; records after the last complete one are truncated. The
    /// caller holds the append lock and the orders file's OS lock, and calls this before
    /// every append, keyed or not.
    pub(crate) fn catch_up(
        &self,
        index: &KeyIndex,
        orders_path: &Path,
        durable: bool,
    ) -> Result<OpenJournal<'_>, StoreError> {
        let file = match open_to_append(&self.path, Create::Never) {
            Ok(file) => file,
            // Removed (by hand?) since: create it again, and make its name durable.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let file = open_to_append(&self.path, Create::IfMissing)
                    .map_err(|error| io_error_at("create", &self.path, error))?;
                if durable {
                    sync_parent_dir(&self.path)?;
                }
                file
            }
            Err(error) => return Err(io_error_at("open for append", &self.path, error)),
        };
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

        let mut complete = Vec::new();
        // The journal's length once the leftovers of a dead writer are cut off.
        let mut keep_to = from;
        let mut orders: Option<OrdersReader<'_>> = None;
        let mut at = from;
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            let Some(text) = line.strip_suffix(b"\n") else {
                break; // a torn record: cut off below
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
                Err(BadRecord::Malformed(reason)) => {
                    return Err(io_error_at(
                        "read the idempotency journal",
                        &self.path,
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the line at byte {start} is not a record ({reason}); keyed \
                                 orders cannot be checked against it. Fix or delete the line"
                            ),
                        ),
                    ));
                }
            }
        }
        if keep_to < len {
            // Nobody is between a record and its order line while we hold the lock, so
            // these were left by a writer that died or failed there. Left in place, an
            // order with the same code landing at such a record's offset would make it
            // look complete, and the next record would glue onto a torn one.
            let cut = file
                .set_len(keep_to)
                .and_then(|()| if durable { file.sync_data() } else { Ok(()) });
            cut.map_err(|error| {
                io_error_at(
                    "remove the records of an interrupted append from",
                    &self.path,
                    error,
                )
            })?;
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

/// Parses the journal and keeps the records that are complete, unexpired and not
/// superseded, in journal order.
fn recover(
    path: &Path,
    bytes: &[u8],
    orders_path: &Path,
    now_ms: u64,
) -> Result<(Vec<Record>, JournalRecovery), StoreError> {
    let mut recovery = JournalRecovery::default();
    let mut records = Vec::new();
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // After the last `\n` comes either nothing or a record cut short by a crash.
    if lines.pop().is_some_and(|rest| !rest.is_empty()) {
        recovery.torn = 1;
    }
    for (index, line) in lines.into_iter().enumerate() {
        match parse_record(line) {
            Ok(record) => records.push(record),
            Err(BadRecord::InvalidCode) => recovery.invalid_code += 1,
            Err(BadRecord::Malformed(reason)) => {
                return Err(io_error_at(
                    "recover the idempotency journal",
                    path,
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "line {}: {reason}; it is not a record this store wrote, so it is \
                             not dropped silently. Fix or delete the line (a deleted record's \
                             key would do its work again on a retry)",
                            index + 1
                        ),
                    ),
                ));
            }
        }
    }

    let mut orders = OrdersReader::open(orders_path)?;
    let expiry_ms = u64::try_from(IDEMPOTENCY_KEY_EXPIRY.as_millis()).unwrap_or(u64::MAX);
    let mut kept: Vec<Option<Record>> = Vec::with_capacity(records.len());
    let mut latest: HashMap<IdempotencyKey, usize> = HashMap::new();
    for record in records {
        if now_ms.saturating_sub(record.unix_ms) > expiry_ms {
            recovery.expired += 1;
        } else if !orders.holds_line_at(&record.code, record.offset)? {
            recovery.incomplete += 1;
            // A crash between record and order line leaves the record at the end of the
            // file (the start-up repair has removed any partial line there); anything else
            // means the file is not the one the record was written against.
            recovery.orders_file_changed |= record.offset != orders.len;
        } else {
            if let Some(earlier) = latest.insert(record.key.clone(), kept.len()) {
                kept[earlier] = None;
                recovery.superseded += 1;
            }
            kept.push(Some(record));
        }
    }
    let kept: Vec<Record> = kept.into_iter().flatten().collect();
    recovery.kept = kept.len();
    Ok((kept, recovery))
}

/// Reads order lines at given offsets without loading the whole orders file.
struct OrdersReader<'a> {
    path: &'a Path,
    file: File,
    /// The orders file's length when it was opened.
    len: u64,
}

impl<'a> OrdersReader<'a> {
    fn open(path: &'a Path) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(|error| io_error_at("read", path, error))?;
        let len = file
            .metadata()
            .map_err(|error| io_error_at("read the length of", path, error))?
            .len();
        Ok(Self { path, file, len })
    }

    /// The recovery rule: is `format_line(code)` exactly what starts at byte `offset`?
    fn holds_line_at(&mut self, code: &ItemCode, offset: u64) -> Result<bool, StoreError> {
        let line = format_line(code);
        let found = read_range(&self.file, offset, offset.saturating_add(line.len() as u64))
            .map_err(|error| io_error_at("read", self.path, error))?;
        Ok(found == line.as_bytes())
    }
}

/// Replaces the journal by one holding `records` only, atomically and durably: the
/// dropped records must not come back after a power loss, because new orders may soon
/// land at their offsets.
fn rewrite(path: &Path, records: &[Record]) -> Result<(), StoreError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let text: String = records
        .iter()
        .map(|r| format_record(&r.key, &r.code, r.offset, r.unix_ms))
        .collect();
    let mut file = File::create(&tmp).map_err(|error| io_error_at("create", &tmp, error))?;
    file.write_all(text.as_bytes())
        .map_err(|error| io_error_at("write", &tmp, error))?;
    file.sync_all()
        .map_err(|error| io_error_at("sync", &tmp, error))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|error| io_error_at("replace", path, error))?;
    sync_parent_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::parse(s).unwrap()
    }

    fn code(s: &str) -> ItemCode {
        ItemCode::parse(s).unwrap()
    }

    #[test]
    fn keys_are_visible_ascii_only() {
        assert!(IdempotencyKey::parse("0b6f8f0e-2f7a-4c55-9d59-5f0f5d0e4a11").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(IdempotencyKey::MAX_LEN)).is_ok());
        for bad in ["", "a b", "a\tb", "a\nb", "é", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn journal_path_is_beside_the_orders_file() {
        assert_eq!(
            journal_path(Path::new("/data/PurchaseOrders.txt")),
            PathBuf::from("/data/PurchaseOrders.txt.idempotency")
        );
        assert_eq!(
            journal_path(Path::new("o.txt")),
            PathBuf::from("o.txt.idempotency")
        );
    }

    #[test]
    fn records_round_trip_including_codes_with_spaces() {
        let line = format_record(
            &key("k-1"),
            &code("widget #7 (blue)"),
            42,
            1_700_000_000_000,
        );
        assert_eq!(line, "k-1\twidget #7 (blue)\t42\t1700000000000\n");
        let record = parse_record(line.trim_end_matches('\n').as_bytes()).unwrap();
        assert_eq!(
            record,
            Record {
                key: key("k-1"),
                code: code("widget #7 (blue)"),
                offset: 42,
                unix_ms: 1_700_000_000_000
            }
        );
    }

    #[test]
    fn malformed_records_say_why() {
        for (line, why) in [
            (&b"k\t1\t2"[..], "found 3"),
            (b"k\t1\t2\t3\t4", "found 5"),
            (b"\t1\t2\t3", "bad key"),
            (b"k\t\t2\t3", "bad item code"),
            (b"k\t1\t-2\t3", "bad offset"),
            (b"k\t1\t2\tnow", "bad time"),
            (b"k\t\xff\t2\t3", "UTF-8"),
            (b"k\ta\x1bb\t2\t3", "bad item code"),
        ] {
            match parse_record(line) {
                Err(BadRecord::Malformed(err)) => assert!(err.contains(why), "{line:?}: {err}"),
                other => panic!("{line:?}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_code_only_the_stricter_rule_rejects_is_told_apart_from_a_malformed_line() {
        for line in [
            &b"k\t a\t2\t3"[..],
            b"k\ta \t2\t3",
            b"k\t \t2\t3",
            b"k\ta\xe2\x80\xaeb\t2\t3", // U+202E
        ] {
            assert_eq!(parse_record(line), Err(BadRecord::InvalidCode), "{line:?}");
        }
    }

    #[test]
    fn the_index_follows_the_drafts_decision_table() {
        let index = KeyIndex::default();
        let (k, a, b) = (key("k"), code("a"), code("b"));
        assert_eq!(index.begin(&k, &a).unwrap(), Begin::DoTheWork);
        assert!(matches!(
            index.begin(&k, &a),
            Err(StoreError::KeyInProgress { .. })
        ));
        assert!(matches!(
            index.begin(&k, &b),
            Err(StoreError::KeyReused { original_code, .. }) if original_code == "a"
        ));
        assert_eq!((index.in_progress(), index.known()), (1, 1));
        index.complete(&k);
        assert_eq!(index.begin(&k, &a).unwrap(), Begin::Replay);
        assert!(matches!(
            index.begin(&k, &b),
            Err(StoreError::KeyReused { .. })
        ));
        // A completed key is never released by a later failure.
        index.release(&k);
        assert_eq!((index.in_progress(), index.known()), (0, 1));
    }

    fn record(k: &str, c: &str) -> Record {
        Record {
            key: key(k),
            code: code(c),
            offset: 0,
            unix_ms: 0,
        }
    }

    #[test]
    fn records_of_other_stores_complete_keys_but_never_a_key_in_doubt() {
        let index = KeyIndex::default();
        let (a, b) = (code("a"), code("b"));
        // In progress here, completed by another store with another code: that code wins.
        assert_eq!(index.begin(&key("mine"), &a).unwrap(), Begin::DoTheWork);
        // In doubt here: only a restart's recovery may decide.
        assert_eq!(index.begin(&key("doubt"), &a).unwrap(), Begin::DoTheWork);
        index.leave_in_doubt(&key("doubt"));
        index.merge_completed(vec![
            record("mine", "b"),
            record("doubt", "a"),
            record("new", "a"),
        ]);
        assert_eq!(index.completed_code(&key("mine")), Some(b.clone()));
        assert_eq!(index.completed_code(&key("new")), Some(a.clone()));
        assert_eq!(index.completed_code(&key("doubt")), None);
        assert!(matches!(
            index.begin(&key("doubt"), &a),
            Err(StoreError::KeyInProgress { .. })
        ));
        // The submit that was doing the work for "mine" releases its claim: no effect.
        index.release(&key("mine"));
        assert_eq!(index.begin(&key("mine"), &b).unwrap(), Begin::Replay);
        assert_eq!((index.in_progress(), index.known()), (1, 3));
    }
}
