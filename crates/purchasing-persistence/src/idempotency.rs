//! Idempotency keys: the in-memory index of keys and the journal that lets it survive a
//! restart. The store ([`crate::PurchaseOrderStore`]) drives both; this module owns the
//! key rule, the journal's line format, and the recovery rule.
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
//! At open, a record is **complete** iff the orders file holds exactly
//! [`format_line`]`(code)` at byte `off`. A crash after (b) and before (c) leaves an
//! incomplete record; it is dropped, so a retry with that key does the work once. A crash
//! after (c) leaves a complete record, so a retry replays. A torn last record (no `\n`,
//! the crash hit (b) itself) is dropped too: (c) never started. Records older than the
//! expiry are dropped, and when anything was dropped the journal is rewritten without it
//! (temp file, fsync, rename, fsync of the directory) before any new order is written —
//! otherwise a later order with the same item code landing at a dropped record's offset
//! would make that record look complete. Any other malformed line is an error naming the
//! file and line: the journal is not silently discarded.
//!
//! Limits: the index lives in one process, so at most one store per orders file should
//! have idempotency on. Without `durable`, the ordering protects against a crash of the
//! process (kill -9: the page cache survives) but not against a power loss.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::order_line::format_line;
use crate::store::{io_error_at, sync_parent_dir, unix_ms_now};
use crate::{ItemCode, StoreError};

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
    /// Records dropped because their order line is not at their offset (a crash between
    /// the journal append and the order append): those keys will do the work again.
    pub incomplete: usize,
    /// A last record cut short (no newline) and dropped: 0 or 1.
    pub torn: usize,
    /// Records dropped because they are older than [`IDEMPOTENCY_KEY_EXPIRY`].
    pub expired: usize,
    /// Complete records dropped because a later record has the same key.
    pub superseded: usize,
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
pub(crate) fn parse_record(line: &[u8]) -> Result<Record, String> {
    let line = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_owned())?;
    let fields: Vec<&str> = line.split('\t').collect();
    let [key, code, offset, unix_ms] = fields[..] else {
        return Err(format!(
            "expected 4 TAB-separated fields (key, item code, offset, unix ms), found {}",
            fields.len()
        ));
    };
    Ok(Record {
        key: IdempotencyKey::parse(key).map_err(|e| format!("bad key: {e}"))?,
        code: ItemCode::parse(code).map_err(|e| format!("bad item code: {e}"))?,
        offset: offset
            .parse()
            .map_err(|_| format!("bad offset {offset:?}: expected a byte offset"))?,
        unix_ms: unix_ms
            .parse()
            .map_err(|_| format!("bad time {unix_ms:?}: expected Unix milliseconds"))?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// A submit with this key is doing the work — or its order line was written but could
    /// not be synced, so whether it is on disk is unknown until recovery reads the file.
    InProgress,
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
    fn with_completed(records: impl IntoIterator<Item = Record>) -> Self {
        let entries = records
            .into_iter()
            .map(|r| {
                let entry = KeyEntry {
                    code: r.code,
                    state: KeyState::Completed,
                };
                (r.key, entry)
            })
            .collect();
        Self {
            entries: Mutex::new(entries),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<IdempotencyKey, KeyEntry>> {
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

    pub(crate) fn in_progress(&self) -> usize {
        self.entries()
            .values()
            .filter(|e| e.state == KeyState::InProgress)
            .count()
    }

    pub(crate) fn known(&self) -> usize {
        self.entries().len()
    }
}

/// Where the journal ended before a record was appended, so the record can be taken back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JournalMark {
    len_before: u64,
}

/// The open journal. Appended to only under the store's append lock.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    /// Opened for append once at start-up (not per order like the orders file): it is
    /// ours alone, and keeping it open makes each record one `write`.
    file: File,
    /// Set once a write or sync of the journal failed (or a record could not be taken
    /// back). From then on keyed submits fail until a restart, whose recovery checks every
    /// record against the orders file — PostgreSQL's answer to a failed fsync ("fsyncgate":
    /// after one, the kernel may have dropped the dirty pages and a later fsync can report
    /// success), scoped to the journal. Unkeyed orders and replays are unaffected.
    failed: AtomicBool,
}

impl Journal {
    /// Recovers the journal beside `orders_path` (see the module docs) and opens it for
    /// append. The caller holds the OS lock on the orders file, so no other process
    /// appends while the records are checked.
    pub(crate) fn open(
        orders_path: &Path,
        durable: bool,
    ) -> Result<(Self, KeyIndex, JournalRecovery), StoreError> {
        let path = journal_path(orders_path);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(io_error_at("read", &path, source)),
        };
        let existed = bytes.is_some();
        let (records, mut recovery) = match bytes {
            Some(bytes) => recover(&path, &bytes, orders_path, unix_ms_now())?,
            None => (Vec::new(), JournalRecovery::default()),
        };
        let dropped = recovery.incomplete + recovery.torn + recovery.expired + recovery.superseded;
        if dropped > 0 {
            rewrite(&path, &records)?;
            recovery.rewritten = true;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|source| io_error_at("open for append", &path, source))?;
        if durable && !existed {
            // A new file's name lives in the directory: without this, a power loss could
            // lose the whole journal even though its records were synced.
            sync_parent_dir(&path)?;
        }
        let journal = Self {
            path,
            file,
            failed: AtomicBool::new(false),
        };
        Ok((journal, KeyIndex::with_completed(records), recovery))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A journal on any open file, for tests that need one whose writes fail.
    #[cfg(test)]
    pub(crate) fn on_file(path: PathBuf, file: File) -> Self {
        Self {
            path,
            file,
            failed: AtomicBool::new(false),
        }
    }

    /// Step (b) of the protocol, and the journal's half of (d). On failure the record is
    /// taken back and the journal is marked failed.
    pub(crate) fn append(
        &self,
        key: &IdempotencyKey,
        code: &ItemCode,
        offset: u64,
        durable: bool,
    ) -> Result<JournalMark, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(io_error_at(
                "append to",
                &self.path,
                io::Error::other(
                    "an earlier write or sync of this journal failed; keyed orders are refused \
                     until a restart checks the journal against the orders file",
                ),
            ));
        }
        let len_before = self
            .file
            .metadata()
            .map_err(|source| io_error_at("read the length of", &self.path, source))?
            .len();
        let mark = JournalMark { len_before };
        let record = format_record(key, code, offset, unix_ms_now());
        if let Err(source) = (&self.file).write_all(record.as_bytes()) {
            self.fail(mark, durable);
            return Err(io_error_at("append to", &self.path, source));
        }
        if durable && let Err(source) = self.file.sync_data() {
            // Never retried: see `failed`.
            self.fail(mark, durable);
            return Err(io_error_at("sync", &self.path, source));
        }
        Ok(mark)
    }

    /// Takes back the record appended at `mark` because its order line was not written.
    /// Left in place, it could later look complete: another order with the same item code
    /// may land at its offset.
    pub(crate) fn undo(&self, mark: JournalMark, durable: bool) {
        let truncated = self.file.set_len(mark.len_before);
        let synced = match truncated {
            Ok(()) if durable => self.file.sync_data(),
            other => other,
        };
        if synced.is_err() {
            self.failed.store(true, Ordering::Release);
        }
    }

    fn fail(&self, mark: JournalMark, durable: bool) {
        self.undo(mark, durable);
        self.failed.store(true, Ordering::Release);
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
        let record = parse_record(line).map_err(|reason| {
            io_error_at(
                "recover the idempotency journal",
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "line {}: {reason}; it is not a record this store wrote, so it is not \
                         dropped silently. Fix or delete the line (a deleted record's key \
                         would do its work again on a retry)",
                        index + 1
                    ),
                ),
            )
        })?;
        records.push(record);
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
    buf: Vec<u8>,
}

impl<'a> OrdersReader<'a> {
    fn open(path: &'a Path) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(|source| io_error_at("read", path, source))?;
        Ok(Self {
            path,
            file,
            buf: Vec::new(),
        })
    }

    /// The recovery rule: is `format_line(code)` exactly what starts at byte `offset`?
    fn holds_line_at(&mut self, code: &ItemCode, offset: u64) -> Result<bool, StoreError> {
        let line = format_line(code);
        self.buf.clear();
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| {
                (&mut self.file)
                    .take(line.len() as u64)
                    .read_to_end(&mut self.buf)
            })
            .map_err(|source| io_error_at("read", self.path, source))?;
        Ok(self.buf == line.as_bytes())
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
    let mut file = File::create(&tmp).map_err(|source| io_error_at("create", &tmp, source))?;
    file.write_all(text.as_bytes())
        .map_err(|source| io_error_at("write", &tmp, source))?;
    file.sync_all()
        .map_err(|source| io_error_at("sync", &tmp, source))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|source| io_error_at("replace", path, source))?;
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
        ] {
            let err = parse_record(line).unwrap_err();
            assert!(err.contains(why), "{line:?}: {err}");
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
}
