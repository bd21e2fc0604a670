//! The recovery rule: which records of a journal found at start-up are kept, and the
//! rewrite that drops the rest.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::key::{IDEMPOTENCY_KEY_EXPIRY, IdempotencyKey};
use super::record::{BadRecord, Record, format_record, parse_record};
use crate::error::{OpenMode, StoreError, io_error_at, open_error_at, sync_error_at};
use crate::files::{read_range, sync_parent_dir};
use crate::order_line::format_line;
use item_code::ItemCode;

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

/// Parses the journal and keeps the records that are complete, unexpired and not
/// superseded, in journal order.
pub(super) fn recover(
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
pub(super) struct OrdersReader<'a> {
    path: &'a Path,
    file: File,
    /// The orders file's length when it was opened.
    pub(super) len: u64,
}

impl<'a> OrdersReader<'a> {
    pub(super) fn open(path: &'a Path) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(|error| io_error_at("read", path, error))?;
        let len = file
            .metadata()
            .map_err(|error| io_error_at("read the length of", path, error))?
            .len();
        Ok(Self { path, file, len })
    }

    /// The recovery rule: is `format_line(code)` exactly what starts at byte `offset`?
    pub(super) fn holds_line_at(
        &mut self,
        code: &ItemCode,
        offset: u64,
    ) -> Result<bool, StoreError> {
        let line = format_line(code);
        let found = read_range(&self.file, offset, offset.saturating_add(line.len() as u64))
            .map_err(|error| io_error_at("read", self.path, error))?;
        Ok(found == line.as_bytes())
    }
}

/// Replaces the journal by one holding `records` only, atomically and durably: the
/// dropped records must not come back after a power loss, because new orders may soon
/// land at their offsets.
pub(super) fn rewrite(path: &Path, records: &[Record]) -> Result<(), StoreError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let text: String = records
        .iter()
        .map(|r| format_record(&r.key, &r.code, r.offset, r.unix_ms))
        .collect();
    let mut file =
        File::create(&tmp).map_err(|error| open_error_at(OpenMode::Create, &tmp, error))?;
    file.write_all(text.as_bytes())
        .map_err(|error| io_error_at("write", &tmp, error))?;
    file.sync_all()
        .map_err(|error| sync_error_at(&tmp, error))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|error| io_error_at("replace", path, error))?;
    sync_parent_dir(path)
}
