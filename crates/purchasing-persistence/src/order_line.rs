//! The one definition of a purchase-order line, and its reader.
//!
//! The writer (`PurchaseOrderStore`) and every reader (tests, the load-test
//! reconciliation) use these functions, so the format exists in exactly one place.

use std::path::{Path, PathBuf};

use crate::error::StoreError;
use item_code::{ItemCode, ItemCodeError};

/// What precedes the item code on every line (the original's text, verbatim).
pub const LINE_PREFIX: &str = "Purchase order for item: ";

/// The complete line for one order, newline included: what one append writes.
pub fn format_line(code: &ItemCode) -> String {
    format!("{LINE_PREFIX}{code}\n")
}

/// Why a line of an orders file is not an order line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("does not start with {:?}", LINE_PREFIX)]
    MissingPrefix,
    /// The prefix is there, but what follows is not a valid item code.
    #[error(transparent)]
    InvalidCode(#[from] ItemCodeError),
}

/// Parses one line (without its trailing `\n`) back into the item code it records.
pub fn parse_line(line: &str) -> Result<ItemCode, LineError> {
    let code = line
        .strip_prefix(LINE_PREFIX)
        .ok_or(LineError::MissingPrefix)?;
    Ok(ItemCode::parse(code)?)
}

/// A line of an orders file that is not a well-formed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// 1-based line number.
    pub line_number: usize,
    /// The line as read (invalid UTF-8 replaced for display only).
    pub text: String,
    pub reason: String,
}

/// The contents of an orders file: every well-formed order in file order, and every line
/// that is not one (a torn write, an interleaving, or an edit by hand).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrdersFile {
    pub orders: Vec<ItemCode>,
    pub malformed: Vec<MalformedLine>,
}

impl OrdersFile {
    /// Parses the raw bytes of an orders file. Never fails: what cannot be read as an
    /// order is reported in [`OrdersFile::malformed`], so a reconciliation can count it.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut file = OrdersFile::default();
        // Reading from a slice cannot fail.
        let _ = for_each_line(bytes, |line| match line {
            Ok(code) => file.orders.push(code),
            Err(malformed) => file.malformed.push(malformed),
        });
        file
    }
}

/// Reads an orders file line by line, handing each to `each` as [`OrdersFile::parse`]
/// classifies it, without holding the file in memory: for files of millions of orders.
/// Fails only when reading fails.
pub fn for_each_line(
    mut reader: impl std::io::BufRead,
    mut each: impl FnMut(Result<ItemCode, MalformedLine>),
) -> std::io::Result<()> {
    let mut raw = Vec::new();
    for line_number in 1.. {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        let ends_with_newline = raw.last() == Some(&b'\n');
        if ends_with_newline {
            raw.pop();
        }
        each(classify(&raw, line_number, ends_with_newline));
    }
    Ok(())
}

/// One line of an orders file (without its `\n`): an order, or why it is not one.
fn classify(
    raw: &[u8],
    line_number: usize,
    ends_with_newline: bool,
) -> Result<ItemCode, MalformedLine> {
    let malformed = |reason: String| MalformedLine {
        line_number,
        text: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    // Every order is written with its newline in one write; a last line without one was
    // cut short (a crash mid-write, or a writer that is not ours).
    if !ends_with_newline {
        return Err(malformed("last line has no newline (torn write)".into()));
    }
    let text = std::str::from_utf8(raw).map_err(|_| malformed("not valid UTF-8".into()))?;
    parse_line(text).map_err(|reason| malformed(reason.to_string()))
}

/// Reads and parses the orders file at `path`. A missing file is an error (the caller
/// decides whether "no file" means "no orders").
pub fn read_orders_file(path: impl AsRef<Path>) -> Result<OrdersFile, StoreError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|error| StoreError::Io {
        action: "read",
        path: PathBuf::from(path),
        error,
    })?;
    Ok(OrdersFile::parse(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> ItemCode {
        ItemCode::parse(s).unwrap()
    }

    #[test]
    fn line_is_the_originals_text() {
        assert_eq!(format_line(&code("123")), "Purchase order for item: 123\n");
    }

    #[test]
    fn round_trips_through_the_parser() {
        let codes = [code("123"), code("a b"), code("Käse")];
        let text: String = codes.iter().map(format_line).collect();
        let parsed = OrdersFile::parse(text.as_bytes());
        assert_eq!(parsed.orders, codes);
        assert!(parsed.malformed.is_empty());
    }

    #[test]
    fn empty_file_has_no_orders() {
        assert_eq!(OrdersFile::parse(b""), OrdersFile::default());
    }

    #[test]
    fn reports_each_kind_of_malformed_line_with_its_number() {
        let bytes = b"Purchase order for item: 1\n\
                      garbage\n\
                      Purchase order for item: \n\
                      Purchase order for item: \xff\n\
                      Purchase order for item: 2\n\
                      Purchase order for item: 3";
        let parsed = OrdersFile::parse(bytes);
        assert_eq!(parsed.orders, vec![code("1"), code("2")]);
        let numbers: Vec<usize> = parsed.malformed.iter().map(|m| m.line_number).collect();
        assert_eq!(numbers, vec![2, 3, 4, 6]);
        assert!(parsed.malformed[0].reason.contains("does not start with"));
        assert!(parsed.malformed[1].reason.contains("empty"));
        assert!(parsed.malformed[2].reason.contains("UTF-8"));
        assert!(parsed.malformed[3].reason.contains("torn"));
    }

    #[test]
    fn read_error_names_the_path() {
        let err = read_orders_file("/nonexistent/dir/PurchaseOrders.txt").unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/dir/PurchaseOrders.txt"),
            "{err}"
        );
    }
}
