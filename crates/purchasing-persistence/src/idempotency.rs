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
//!
//! [`ItemCode`]: crate::ItemCode
//! [`StoreError::JournalFailed`]: crate::StoreError::JournalFailed
//! [`StoreError::KeyReused`]: crate::StoreError::KeyReused
//! [`format_line`]: crate::format_line

mod index;
mod journal;
mod key;
mod record;
mod recovery;

pub(crate) use index::{Begin, KeyIndex};
pub(crate) use journal::Journal;
pub use key::{
    IDEMPOTENCY_KEY_EXPIRY, IdempotencyKey, InvalidIdempotencyKey, JOURNAL_SUFFIX, journal_path,
};
pub use recovery::JournalRecovery;
