//! The journal's line format: one record per keyed order, written and read here only.

use std::time::{SystemTime, UNIX_EPOCH};

use super::key::IdempotencyKey;
use item_code::ItemCode;

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
    /// `JournalRecovery::invalid_code`.
    InvalidCode,
}

/// The one definition of a journal line (see the `idempotency` module docs), newline included.
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
pub(super) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
}
