//! What to do with one message, as plain functions of its bytes and of the store's answer:
//! the rules of the queue side, kept apart from AMQP so they are unit-tested as values.
//!
//! **Decoding** ([`decode`]). The body is the item code as UTF-8 text (the wire contract);
//! it is parsed with the store's own [`ItemCode`] rule, the security boundary every side
//! shares, so a code with a newline can no more forge an order through the queue than
//! through HTTP. In reliable mode the AMQP `message_id` is the idempotency key: one per
//! logical order, the same on every publish of it, parsed with the store's
//! [`IdempotencyKey`] rule. A message that fails any of these can never succeed,
//! however often it is delivered: it is [`Poison`].
//!
//! **Judging the store's answer** ([`judge`]), for the reliable mode's ack decision:
//!
//! | store answer | verdict | on the broker |
//! |---|---|---|
//! | `Written` | [`Verdict::Written`] | ack |
//! | `Replayed` (the key completed before: a redelivery, or another worker did it) | [`Verdict::Replayed`] | ack, nothing written |
//! | `KeyReused` (this message id was used for another item code) | [`Verdict::Reject`] | reject, no requeue → dead-letter queue |
//! | `Io`, `Open`, `Sync`, `Allocation`, `KeyInProgress`, `DeadlineExceeded` | [`Verdict::Retry`] | nack with requeue, after a pause |
//! | `OrdersFileBroken`, `JournalFailed`, a panic | [`Verdict::Stop`] | nack with requeue; the worker stops consuming |
//!
//! Why requeue a retryable failure rather than dead-letter it: an I/O error (a full disk)
//! or a refused allocation belongs to the node, not to the message; another worker, or
//! this one a moment later, can write it. `KeyInProgress` means a copy of this very
//! message is being written here now (a publisher's retry delivered beside the first
//! publish): once that finishes, the requeued copy replays. Why stop on the last row: those
//! failures stick until a restart, so every further message would fail the same way —
//! taking more would only spin messages through the queue.

use std::fmt;

use purchasing_persistence::{IdempotencyKey, ItemCode, ItemCodeError, StoreError, Submitted};
use wire_contract::amqp::Delivery;

/// A decoded message: the order it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub code: ItemCode,
    /// The message id as an idempotency key: reliable mode only, `None` when the message
    /// carried none (the worker then writes it without deduplication).
    pub key: Option<IdempotencyKey>,
}

/// Largest body a message may have: an item code is at most
/// [`purchasing_persistence::MAX_ITEM_CODE_CHARS`] characters, 4 bytes each in UTF-8 at
/// worst (400 bytes); ten times that leaves room and still refuses a body of megabytes
/// that only a foreign or broken publisher sends. Checked first, so such a body is
/// dead-lettered (or dropped) at once, not copied or parsed.
pub const MAX_BODY_BYTES: usize = 4096;

/// Why a message can never succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poison {
    /// The body is larger than any item code could be ([`MAX_BODY_BYTES`]).
    TooLarge { bytes: usize },
    /// The body is not UTF-8 text; `valid_up_to` bytes were.
    NotUtf8 { valid_up_to: usize },
    /// The body is text but not a valid item code.
    InvalidCode(ItemCodeError),
    /// The `message_id` is not a valid idempotency key; the text says what one is.
    BadMessageId(String),
}

impl Poison {
    /// A short, fixed label for logs and counting.
    pub fn label(&self) -> &'static str {
        match self {
            Poison::TooLarge { .. } => "body too large",
            Poison::NotUtf8 { .. } => "body not UTF-8",
            Poison::InvalidCode(_) => "invalid item code",
            Poison::BadMessageId(_) => "invalid message_id",
        }
    }
}

impl fmt::Display for Poison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Poison::TooLarge { bytes } => write!(
                f,
                "the body is {bytes} bytes, more than any item code can be (at most \
                 {MAX_BODY_BYTES} bytes are read)"
            ),
            Poison::NotUtf8 { valid_up_to } => write!(
                f,
                "the body is not UTF-8 text (invalid byte after {valid_up_to} valid ones); \
                 publish the item code as UTF-8"
            ),
            Poison::InvalidCode(error) => write!(f, "{error}"),
            Poison::BadMessageId(why) => write!(f, "the message_id is unusable: {why}"),
        }
    }
}

/// Decodes a message's body and, in reliable mode, its `message_id`. Faithful mode reads
/// the body only, as the original did (its store had no keys).
pub fn decode(body: &[u8], message_id: Option<&str>, delivery: Delivery) -> Result<Order, Poison> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Poison::TooLarge { bytes: body.len() });
    }
    let text = std::str::from_utf8(body).map_err(|e| Poison::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    let code = ItemCode::parse(text).map_err(Poison::InvalidCode)?;
    let key = match (delivery, message_id) {
        (Delivery::Reliable, Some(id)) => {
            Some(IdempotencyKey::parse(id).map_err(|e| Poison::BadMessageId(e.to_string()))?)
        }
        _ => None,
    };
    Ok(Order { code, key })
}

/// What the store's answer means for the message (see the module table). A failed
/// submit keeps the store's error, so a caller matches on what failed, not on its text.
#[derive(Debug)]
pub enum Verdict {
    Written,
    Replayed,
    /// Never succeeds: dead-letter it.
    Reject(StoreError),
    /// May succeed later: requeue it after a pause.
    Retry(StoreError),
    /// The store refuses every order until a restart: requeue it and stop consuming.
    Stop(StoreFailure),
}

/// Why the store takes no more orders until a restart: what ends consuming.
#[derive(Debug, thiserror::Error)]
pub enum StoreFailure {
    /// The store said so (see the module table's last row).
    #[error(transparent)]
    Store(StoreError),
    /// The store call panicked; the same message would again. Holds the panic's text.
    #[error("the store call panicked: {0}")]
    Panicked(String),
    /// A message's task ended without its outcome (it panicked or was cancelled).
    #[error("a message's task failed: {0}")]
    TaskFailed(String),
}

/// Maps a submit's result to its verdict (see the module table).
pub fn judge(result: Result<Submitted, StoreError>) -> Verdict {
    match result {
        Ok(Submitted::Written) => Verdict::Written,
        Ok(Submitted::Replayed) => Verdict::Replayed,
        Err(error) => match error {
            StoreError::KeyReused { .. } => Verdict::Reject(error),
            StoreError::Io { .. }
            | StoreError::Open { .. }
            | StoreError::Sync { .. }
            | StoreError::Allocation { .. }
            | StoreError::KeyInProgress { .. }
            | StoreError::DeadlineExceeded { .. } => Verdict::Retry(error),
            // NotARegularFile only happens at open; should it ever come later, the file
            // was swapped under us, which no retry fixes.
            StoreError::OrdersFileBroken { .. }
            | StoreError::JournalFailed { .. }
            | StoreError::NotARegularFile { .. } => Verdict::Stop(StoreFailure::Store(error)),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_valid_message_is_an_order() {
        let order = decode(b"123", Some("k-1"), Delivery::Reliable).unwrap();
        assert_eq!(order.code.as_str(), "123");
        assert_eq!(order.key.unwrap().as_str(), "k-1");
        // Without a message id: an order without deduplication.
        assert_eq!(decode(b"123", None, Delivery::Reliable).unwrap().key, None);
        // Faithful mode ignores the id, even an unusable one: its store keeps no keys.
        let order = decode(b"123", Some("has space"), Delivery::Faithful).unwrap();
        assert_eq!(order.key, None);
    }

    #[test]
    fn poison_is_recognised_by_the_stores_own_rules() {
        assert_eq!(
            decode(b"\xff\xfe", None, Delivery::Reliable),
            Err(Poison::NotUtf8 { valid_up_to: 0 })
        );
        // A newline would forge a second order line.
        let forged = decode(
            b"123\nPurchase order for item: 999",
            None,
            Delivery::Faithful,
        );
        assert!(
            matches!(
                forged,
                Err(Poison::InvalidCode(ItemCodeError::ControlCharacter {
                    code_point: 0x0A,
                    ..
                }))
            ),
            "{forged:?}"
        );
        assert!(matches!(
            decode(b"", None, Delivery::Reliable),
            Err(Poison::InvalidCode(ItemCodeError::Empty))
        ));
        let bad_id = decode(b"123", Some("tab\there"), Delivery::Reliable).unwrap_err();
        assert_eq!(bad_id.label(), "invalid message_id");
        assert!(bad_id.to_string().contains("visible ASCII"), "{bad_id}");
        assert!(
            decode(b"1", Some(&"k".repeat(256)), Delivery::Reliable).is_err(),
            "a key longer than 255 bytes"
        );
    }

    #[test]
    fn the_stores_answers_map_to_the_table() {
        assert!(matches!(judge(Ok(Submitted::Written)), Verdict::Written));
        assert!(matches!(judge(Ok(Submitted::Replayed)), Verdict::Replayed));
        let reused = StoreError::KeyReused {
            key: "k".into(),
            original_code: "1".into(),
        };
        assert!(matches!(
            judge(Err(reused)),
            Verdict::Reject(StoreError::KeyReused { .. })
        ));
        let io = StoreError::Io {
            action: "append to",
            path: PathBuf::from("/o"),
            error: std::io::Error::from_raw_os_error(28),
        };
        assert!(matches!(
            judge(Err(io)),
            Verdict::Retry(StoreError::Io { .. })
        ));
        let in_progress = StoreError::KeyInProgress { key: "k".into() };
        assert!(matches!(judge(Err(in_progress)), Verdict::Retry(_)));
        let allocation = StoreError::Allocation {
            chars: usize::MAX,
            error: Vec::<u8>::new().try_reserve_exact(usize::MAX).unwrap_err(),
        };
        assert!(matches!(judge(Err(allocation)), Verdict::Retry(_)));
        for sticky in [
            StoreError::OrdersFileBroken {
                path: PathBuf::from("/o"),
                cause: "x".into(),
            },
            StoreError::JournalFailed {
                path: PathBuf::from("/o.idempotency"),
                cause: "x".into(),
            },
        ] {
            let why = sticky.to_string();
            let Verdict::Stop(failure) = judge(Err(sticky)) else {
                panic!("{why}: not a stop")
            };
            assert!(matches!(failure, StoreFailure::Store(_)), "{failure:?}");
            assert_eq!(failure.to_string(), why, "the store's own words");
        }
    }
}
