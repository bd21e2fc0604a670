//! The item-code rule: parse once at the edge, then carry a value that is known valid.

use std::fmt;

/// Longest item code accepted, in characters (Unicode scalar values, not bytes).
///
/// The original accepted any string; we bound it so one request cannot make a line (and
/// the orders file) arbitrarily long. A GUID, what the original tests send, is 36.
pub const MAX_ITEM_CODE_CHARS: usize = 100;

/// A validated item code: 1–[`MAX_ITEM_CODE_CHARS`] characters of valid UTF-8 with no
/// control characters and no Unicode line/paragraph separators.
///
/// Why this is strict: every order becomes one line of `PurchaseOrders.txt`. A code
/// containing `\n` (or `\r`, which some readers also treat as a line end) would let a
/// single request write a second, forged order line. Other control characters (NUL,
/// TAB, ESC, …) are rejected because they corrupt terminals and tools that read the file.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemCode(String);

/// Why a string is not a valid [`ItemCode`]. The messages are shown to API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemCodeError {
    #[error("the item code is empty; send 1 to {MAX_ITEM_CODE_CHARS} characters")]
    Empty,
    #[error("the item code is {chars} characters long; at most {MAX_ITEM_CODE_CHARS} are allowed")]
    TooLong { chars: usize },
    #[error(
        "the item code contains the control character U+{code_point:04X} at character {position}; \
         control characters (such as newline, carriage return, tab or NUL) are not allowed"
    )]
    ControlCharacter { code_point: u32, position: usize },
    #[error("the item code is not valid UTF-8")]
    InvalidUtf8,
}

impl ItemCode {
    /// Validates `code` and wraps it. The string is kept byte for byte (no trimming or
    /// normalisation): what the client sent is what lands in the file.
    pub fn parse(code: impl Into<String>) -> Result<Self, ItemCodeError> {
        let code = code.into();
        let mut chars = 0usize;
        for (position, c) in code.chars().enumerate() {
            // U+2028/U+2029 are not "control" characters to Unicode, but editors and
            // JavaScript treat them as line breaks: reject them for the same reason as \n.
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                return Err(ItemCodeError::ControlCharacter {
                    code_point: c as u32,
                    position: position + 1,
                });
            }
            chars += 1;
        }
        match chars {
            0 => Err(ItemCodeError::Empty),
            n if n > MAX_ITEM_CODE_CHARS => Err(ItemCodeError::TooLong { chars: n }),
            _ => Ok(Self(code)),
        }
    }

    /// Like [`ItemCode::parse`] for raw bytes (for example a percent-decoded form
    /// field): bytes that are not UTF-8 are rejected, never replaced.
    pub fn from_utf8(bytes: Vec<u8>) -> Result<Self, ItemCodeError> {
        String::from_utf8(bytes)
            .map_err(|_| ItemCodeError::InvalidUtf8)
            .and_then(Self::parse)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::str::FromStr for ItemCode {
    type Err = ItemCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for ItemCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ItemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemCode({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_original_sends() {
        for ok in [
            "123",
            "0b6f8f0e-2f7a-4c55-9d59-5f0f5d0e4a11",
            "a",
            "widget #7 (blue)",
            "Käse-ß",
        ] {
            assert_eq!(ItemCode::parse(ok).unwrap().as_str(), ok);
        }
        assert!(ItemCode::parse("x".repeat(MAX_ITEM_CODE_CHARS)).is_ok());
        // The limit counts characters, not bytes: 100 two-byte characters are fine.
        assert!(ItemCode::parse("é".repeat(MAX_ITEM_CODE_CHARS)).is_ok());
    }

    #[test]
    fn rejects_empty_and_too_long() {
        assert_eq!(ItemCode::parse(""), Err(ItemCodeError::Empty));
        assert_eq!(
            ItemCode::parse("x".repeat(MAX_ITEM_CODE_CHARS + 1)),
            Err(ItemCodeError::TooLong {
                chars: MAX_ITEM_CODE_CHARS + 1
            })
        );
    }

    #[test]
    fn rejects_line_breaks_and_other_controls() {
        for (bad, code_point, position) in [
            ("123\nPurchase order for item: forged", 0x0A, 4),
            ("123\r", 0x0D, 4),
            ("\t1", 0x09, 1),
            ("1\u{0}", 0x00, 2),
            ("a\u{1b}[31m", 0x1B, 2),
            ("a\u{7f}", 0x7F, 2),
            ("a\u{85}", 0x85, 2),
            ("a\u{2028}b", 0x2028, 2),
            ("a\u{2029}b", 0x2029, 2),
        ] {
            assert_eq!(
                ItemCode::parse(bad),
                Err(ItemCodeError::ControlCharacter {
                    code_point,
                    position
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_utf8_instead_of_replacing_it() {
        assert_eq!(
            ItemCode::from_utf8(vec![b'1', 0xFF]),
            Err(ItemCodeError::InvalidUtf8)
        );
        assert_eq!(ItemCode::from_utf8(b"42".to_vec()).unwrap().as_str(), "42");
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let msg = ItemCode::parse("a\nb").unwrap_err().to_string();
        assert!(
            msg.contains("U+000A") && msg.contains("not allowed"),
            "{msg}"
        );
    }
}
