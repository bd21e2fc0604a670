//! Reconciliation: what happened to every item code the load sent, decided by reading
//! the orders file back with the persistence crate's parser (the one definition of the
//! line format).
//!
//! | client saw     | in the file        | class                               |
//! |----------------|--------------------|-------------------------------------|
//! | acknowledged   | once or more       | acknowledged & persisted            |
//! | acknowledged   | no                 | **lost** (a promise broken)         |
//! | failed/timeout | once or more       | **ghost** (a retry would duplicate) |
//! | failed/timeout | no                 | failed & absent (consistent)        |
//! | sent once      | more than once     | **duplicate** (counted as well)     |
//! | never sent     | yes                | **unexpected**                      |

use std::collections::HashMap;
use std::path::Path;

use std::io::{Seek, SeekFrom};

use purchasing_persistence::{ItemCode, OrdersFile, for_each_line};
use uuid::Uuid;

/// The item codes this run sent, with whether the client got an acknowledgement.
/// 17 bytes a request (codes are UUIDs), so even a million requests stay small.
#[derive(Debug, Default, Clone)]
pub struct SentCodes {
    acknowledged: HashMap<Uuid, bool>,
}

impl SentCodes {
    pub fn insert(&mut self, code: Uuid, acknowledged: bool) {
        self.acknowledged.insert(code, acknowledged);
    }

    pub fn len(&self) -> usize {
        self.acknowledged.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acknowledged.is_empty()
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconciliationCounts {
    pub acknowledged_persisted: u64,
    pub lost: u64,
    pub ghost: u64,
    pub failed_absent: u64,
    pub duplicates: u64,
    pub unexpected: u64,
    pub malformed_lines: u64,
}

/// Classifies every sent code against the orders written during the run.
pub fn reconcile(sent: &SentCodes, written: &OrdersFile) -> ReconciliationCounts {
    let mut tally = Tally::new(sent);
    written.orders.iter().for_each(|code| tally.order(code));
    tally.malformed = written.malformed.len() as u64;
    tally.finish()
}

/// The count as the file is read: how often each sent code appears, and what is not one.
struct Tally<'a> {
    sent: &'a SentCodes,
    occurrences: HashMap<Uuid, u64>,
    unexpected: u64,
    malformed: u64,
}

impl<'a> Tally<'a> {
    fn new(sent: &'a SentCodes) -> Self {
        Tally {
            sent,
            occurrences: HashMap::new(),
            unexpected: 0,
            malformed: 0,
        }
    }

    fn order(&mut self, code: &ItemCode) {
        match Uuid::parse_str(code.as_str()) {
            Ok(code) if self.sent.acknowledged.contains_key(&code) => {
                *self.occurrences.entry(code).or_default() += 1
            }
            _ => self.unexpected += 1,
        }
    }

    fn finish(self) -> ReconciliationCounts {
        let mut counts = ReconciliationCounts {
            malformed_lines: self.malformed,
            unexpected: self.unexpected,
            ..Default::default()
        };
        for (code, &acknowledged) in &self.sent.acknowledged {
            let n = self.occurrences.get(code).copied().unwrap_or(0);
            match (acknowledged, n > 0) {
                (true, true) => counts.acknowledged_persisted += 1,
                (true, false) => counts.lost += 1,
                (false, true) => counts.ghost += 1,
                (false, false) => counts.failed_absent += 1,
            }
            if n > 1 {
                counts.duplicates += 1;
            }
        }
        counts
    }
}

/// Where the orders file stood before the load, so only lines written during the run
/// are reconciled (a file that already held orders is fine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMark {
    pub len: u64,
}

impl FileMark {
    /// The file's current length; a missing file counts as empty (the server creates it).
    pub fn take(path: &Path) -> std::io::Result<FileMark> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(FileMark { len: m.len() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileMark { len: 0 }),
            Err(e) => Err(e),
        }
    }

    /// Reconciles `sent` against what was appended after the mark, reading the file line
    /// by line: only the counts are held, never the file (ten million orders took 1.7 GiB
    /// when the file was read whole and parsed first).
    pub fn reconcile_since(
        self,
        sent: &SentCodes,
        path: &Path,
    ) -> Result<ReconciliationCounts, ReadError> {
        let read_error = |source| ReadError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();
        if len < self.len {
            return Err(ReadError::Shrank {
                path: path.to_path_buf(),
                before: self.len,
                after: len,
            });
        }
        file.seek(SeekFrom::Start(self.len)).map_err(read_error)?;
        let mut tally = Tally::new(sent);
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        for_each_line(reader, |line| match line {
            Ok(code) => tally.order(&code),
            Err(_) => tally.malformed += 1,
        })
        .map_err(read_error)?;
        Ok(tally.finish())
    }
}

/// Why the orders file could not be reconciled.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the orders file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the orders file {} shrank during the run ({before} → {after} bytes); it was truncated \
         or replaced, so the run cannot be reconciled",
        path.display()
    )]
    Shrank {
        path: std::path::PathBuf,
        before: u64,
        after: u64,
    },
}

#[cfg(test)]
mod tests {
    use purchasing_persistence::format_line;

    use super::*;

    fn file_with(codes: &[&Uuid], extra: &str) -> OrdersFile {
        let mut text: String = codes
            .iter()
            .map(|c| format_line(&purchasing_persistence::ItemCode::parse(c.to_string()).unwrap()))
            .collect();
        text.push_str(extra);
        OrdersFile::parse(text.as_bytes())
    }

    #[test]
    fn each_class_is_counted() {
        let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
        let mut sent = SentCodes::default();
        sent.insert(ids[0], true); // acknowledged & persisted
        sent.insert(ids[1], true); // lost
        sent.insert(ids[2], false); // ghost
        sent.insert(ids[3], false); // failed & absent
        sent.insert(ids[4], true); // persisted twice: duplicate (and acknowledged_persisted)
        let stranger = ids[5]; // never sent
        let file = file_with(
            &[&ids[0], &ids[2], &ids[4], &ids[4], &stranger],
            "Purchase order for item: not-a-uuid\ngarbage\nPurchase order for item: torn",
        );

        let counts = reconcile(&sent, &file);
        assert_eq!(
            counts,
            ReconciliationCounts {
                acknowledged_persisted: 2,
                lost: 1,
                ghost: 1,
                failed_absent: 1,
                duplicates: 1,
                unexpected: 2,
                malformed_lines: 2,
            }
        );
    }

    #[test]
    fn nothing_sent_nothing_written() {
        assert_eq!(
            reconcile(&SentCodes::default(), &OrdersFile::default()),
            ReconciliationCounts::default()
        );
    }

    #[test]
    fn only_lines_after_the_mark_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        assert_eq!(
            FileMark::take(&path).unwrap().len,
            0,
            "missing file counts as empty"
        );
        std::fs::write(&path, "Purchase order for item: old\n").unwrap();
        let mark = FileMark::take(&path).unwrap();
        std::fs::write(
            &path,
            "Purchase order for item: old\nPurchase order for item: new\n",
        )
        .unwrap();
        let new = Uuid::new_v4();
        std::fs::write(
            &path,
            format!("Purchase order for item: old\nPurchase order for item: {new}\ntorn"),
        )
        .unwrap();
        let mut sent = SentCodes::default();
        sent.insert(new, true);
        let counts = mark.reconcile_since(&sent, &path).unwrap();
        assert_eq!(
            (
                counts.acknowledged_persisted,
                counts.unexpected,
                counts.malformed_lines
            ),
            (1, 0, 1),
            "the old line is not read, the new one is, the torn tail is malformed: {counts:?}"
        );

        std::fs::write(&path, "").unwrap();
        let error = mark.reconcile_since(&sent, &path).unwrap_err();
        assert!(
            matches!(error, ReadError::Shrank { after: 0, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("shrank"), "{error}");
    }
}
