//! The item-code rule: parse once at the edge, then carry a value that is known valid.
//!
//! One definition for every side: the store (`purchasing-persistence`) writes only an
//! [`ItemCode`] and re-exports it; the API answers 400 and the worker dead-letters with
//! its errors; the client (`inventory`) checks a code with it before it sends, so a code
//! the server would refuse is refused at the client too — over AMQP, where nobody answers
//! 400, that is the only place it can be.

use std::fmt;

/// Longest item code accepted, in characters (Unicode scalar values, not bytes).
///
/// The original accepted any string; we bound it so one request cannot make a line (and
/// the orders file) arbitrarily long. A GUID, what the original tests send, is 36.
pub const MAX_ITEM_CODE_CHARS: usize = 100;

/// A validated item code: 1–[`MAX_ITEM_CODE_CHARS`] characters of valid UTF-8 with no
/// control characters, no Unicode line/paragraph separators, no format characters, and
/// no whitespace at either end (so not blank either). Spaces inside are fine
/// (`widget #7 (blue)`).
///
/// Why this is strict: every order becomes one line of `PurchaseOrders.txt`. A code
/// containing `\n` (or `\r`, which some readers also treat as a line end) would let a
/// single request write a second, forged order line. Other control characters (NUL,
/// TAB, ESC, …) are rejected because they corrupt terminals and tools that read the file.
/// Format characters (Unicode category Cf: zero-width spaces, bidirectional overrides such
/// as U+202E, the byte-order mark, …) are invisible: a code containing one displays like
/// another code, or in another order, than what is stored — two orders that look the same
/// in a report but are different strings, or a reversed code in a log. Whitespace at
/// either end is just as invisible, and a blank code names no item at all.
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
    #[error(
        "the item code contains the format character U+{code_point:04X} at character {position} \
         (invisible; it can make the code display differently from what is stored); format \
         characters such as zero-width spaces, direction overrides and byte-order marks are \
         not allowed"
    )]
    FormatCharacter { code_point: u32, position: usize },
    #[error(
        "the item code is blank (only whitespace); send the code of an item, 1 to \
         {MAX_ITEM_CODE_CHARS} characters"
    )]
    Blank,
    #[error(
        "the item code starts with the whitespace character U+{code_point:04X}; remove \
         whitespace before the code (spaces inside it are fine)"
    )]
    LeadingWhitespace { code_point: u32 },
    #[error(
        "the item code ends with the whitespace character U+{code_point:04X}; remove \
         whitespace after the code (spaces inside it are fine)"
    )]
    TrailingWhitespace { code_point: u32 },
    #[error("the item code is not valid UTF-8")]
    InvalidUtf8,
}

/// Unicode general category Cf (format characters), as inclusive ranges.
///
/// From `DerivedGeneralCategory.txt` of Unicode 15.1.0 (170 code points; Unicode 16.0 and
/// 17.0 list the same ranges). `std` has no category lookup and this crate takes no
/// dependency for one; a character added to Cf by a later Unicode version is still
/// accepted until it is added here.
const FORMAT_CHARACTERS: [(u32, u32); 21] = [
    (0x00AD, 0x00AD),   // SOFT HYPHEN
    (0x0600, 0x0605),   // ARABIC NUMBER SIGN..ARABIC NUMBER MARK ABOVE
    (0x061C, 0x061C),   // ARABIC LETTER MARK
    (0x06DD, 0x06DD),   // ARABIC END OF AYAH
    (0x070F, 0x070F),   // SYRIAC ABBREVIATION MARK
    (0x0890, 0x0891),   // ARABIC POUND MARK ABOVE..ARABIC PIASTRE MARK ABOVE
    (0x08E2, 0x08E2),   // ARABIC DISPUTED END OF AYAH
    (0x180E, 0x180E),   // MONGOLIAN VOWEL SEPARATOR
    (0x200B, 0x200F),   // ZERO WIDTH SPACE..RIGHT-TO-LEFT MARK
    (0x202A, 0x202E),   // LEFT-TO-RIGHT EMBEDDING..RIGHT-TO-LEFT OVERRIDE
    (0x2060, 0x2064),   // WORD JOINER..INVISIBLE PLUS
    (0x2066, 0x206F),   // LEFT-TO-RIGHT ISOLATE..NOMINAL DIGIT SHAPES
    (0xFEFF, 0xFEFF),   // ZERO WIDTH NO-BREAK SPACE (byte-order mark)
    (0xFFF9, 0xFFFB),   // INTERLINEAR ANNOTATION ANCHOR..TERMINATOR
    (0x110BD, 0x110BD), // KAITHI NUMBER SIGN
    (0x110CD, 0x110CD), // KAITHI NUMBER SIGN ABOVE
    (0x13430, 0x1343F), // EGYPTIAN HIEROGLYPH VERTICAL JOINER..END WALLED ENCLOSURE
    (0x1BCA0, 0x1BCA3), // SHORTHAND FORMAT LETTER OVERLAP..SHORTHAND FORMAT UP STEP
    (0x1D173, 0x1D17A), // MUSICAL SYMBOL BEGIN BEAM..MUSICAL SYMBOL END PHRASE
    (0xE0001, 0xE0001), // LANGUAGE TAG
    (0xE0020, 0xE007F), // TAG SPACE..CANCEL TAG
];

fn is_format_character(c: char) -> bool {
    let c = c as u32;
    FORMAT_CHARACTERS
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

impl ItemCodeError {
    /// Whether only a rule added after codes were first stored rejects the code (format
    /// characters, a blank code, whitespace at either end). Files written by an earlier
    /// version may hold such codes; no request can carry one any more.
    pub fn is_from_a_later_rule(&self) -> bool {
        matches!(
            self,
            Self::FormatCharacter { .. }
                | Self::Blank
                | Self::LeadingWhitespace { .. }
                | Self::TrailingWhitespace { .. }
        )
    }
}

impl ItemCode {
    /// Validates `code` and wraps it. The string is kept byte for byte (no trimming or
    /// normalisation): what the client sent is what lands in the file, so whitespace at
    /// either end is refused rather than silently removed.
    pub fn parse(code: impl Into<String>) -> Result<Self, ItemCodeError> {
        let code = code.into();
        let mut chars = 0usize;
        for (position, c) in code.chars().enumerate() {
            let code_point = c as u32;
            let position = position + 1;
            // U+2028/U+2029 are not "control" characters to Unicode, but editors and
            // JavaScript treat them as line breaks: reject them for the same reason as \n.
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                return Err(ItemCodeError::ControlCharacter {
                    code_point,
                    position,
                });
            }
            if is_format_character(c) {
                return Err(ItemCodeError::FormatCharacter {
                    code_point,
                    position,
                });
            }
            chars += 1;
        }
        if chars == 0 {
            return Err(ItemCodeError::Empty);
        }
        if chars > MAX_ITEM_CODE_CHARS {
            return Err(ItemCodeError::TooLong { chars });
        }
        let whitespace = |c: &char| c.is_whitespace();
        if code.chars().all(|c| c.is_whitespace()) {
            Err(ItemCodeError::Blank)
        } else if let Some(c) = code.chars().next().filter(whitespace) {
            Err(ItemCodeError::LeadingWhitespace {
                code_point: c as u32,
            })
        } else if let Some(c) = code.chars().next_back().filter(whitespace) {
            Err(ItemCodeError::TrailingWhitespace {
                code_point: c as u32,
            })
        } else {
            Ok(Self(code))
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
    fn rejects_invisible_format_characters() {
        for (bad, code_point, position) in [
            ("abc\u{202E}fed", 0x202E, 4), // RIGHT-TO-LEFT OVERRIDE: shows as "abcdef"
            ("12\u{200B}3", 0x200B, 3),    // ZERO WIDTH SPACE: shows as "123"
            ("\u{FEFF}123", 0xFEFF, 1),    // byte-order mark
            ("a\u{00AD}b", 0x00AD, 2),     // SOFT HYPHEN, first of the table
            ("a\u{E007F}", 0xE007F, 2),    // CANCEL TAG, last of the table
            ("\u{13439}x", 0x13439, 1),    // added to Cf in Unicode 15.0
        ] {
            assert_eq!(
                ItemCode::parse(bad),
                Err(ItemCodeError::FormatCharacter {
                    code_point,
                    position
                }),
                "{bad:?}"
            );
        }
        let msg = ItemCode::parse("a\u{202E}b").unwrap_err().to_string();
        assert!(
            msg.contains("format character U+202E at character 2")
                && msg.contains("invisible; it can make the code display differently"),
            "{msg}"
        );
        // Neighbours of the ranges are ordinary characters.
        for ok in ["a\u{2065}b", "\u{2010}", "a\u{FEFE}", "\u{E0080}"] {
            assert!(ItemCode::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn rejects_blank_codes_and_whitespace_at_either_end() {
        for blank in [" ", "   ", "\u{3000}", "\u{A0} "] {
            assert_eq!(
                ItemCode::parse(blank),
                Err(ItemCodeError::Blank),
                "{blank:?}"
            );
        }
        assert_eq!(
            ItemCode::parse(" a"),
            Err(ItemCodeError::LeadingWhitespace { code_point: 0x20 })
        );
        assert_eq!(
            ItemCode::parse("\u{3000}a"),
            Err(ItemCodeError::LeadingWhitespace { code_point: 0x3000 })
        );
        assert_eq!(
            ItemCode::parse("a "),
            Err(ItemCodeError::TrailingWhitespace { code_point: 0x20 })
        );
        assert_eq!(
            ItemCode::parse("a\u{2003}"),
            Err(ItemCodeError::TrailingWhitespace { code_point: 0x2003 })
        );
        // Inside a code, spaces are part of it.
        assert_eq!(
            ItemCode::parse("widget #7 (blue)").unwrap().as_str(),
            "widget #7 (blue)"
        );
        for (bad, needle) in [
            (" ", "blank"),
            (" a", "starts with the whitespace character U+0020"),
            ("a ", "ends with the whitespace character U+0020"),
        ] {
            let msg = ItemCode::parse(bad).unwrap_err().to_string();
            assert!(msg.contains(needle) && msg.contains("item code"), "{msg}");
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
