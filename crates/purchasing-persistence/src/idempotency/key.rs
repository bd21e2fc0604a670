//! What an idempotency key is, how long it is remembered, and where its journal lives.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub fn parse(key: &str) -> Result<Self, InvalidIdempotencyKey> {
        if key.is_empty() || key.len() > Self::MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidIdempotencyKey);
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key that breaks the rule of [`IdempotencyKey::parse`]; the message is meant for the
/// client that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "an idempotency key is 1 to {} visible ASCII characters (a UUID, say)",
    IdempotencyKey::MAX_LEN
)]
pub struct InvalidIdempotencyKey;

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
