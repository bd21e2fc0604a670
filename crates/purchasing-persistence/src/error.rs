//! [`StoreError`]: every way storing an order (or opening the store) can fail, each with a
//! message that says what failed, on which path, and what to do.

use std::collections::TryReserveError;
use std::path::{Path, PathBuf};

/// Why an order could not be stored, or the store could not be opened.
///
/// Nothing was written to the orders file, with one exception: a [`StoreError::Sync`] of
/// the orders file from a submit means the line was appended but could not be confirmed
/// on disk (durable mode); whether it survives is unknown.
///
/// OS errors are kept in a field named `error`, shown in the message and deliberately not
/// the error's [`source`](std::error::Error::source): a reporter that prints the chain
/// (anyhow's `{:#}`) would otherwise print the OS text twice. Each message is one line
/// on its own.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The submit's deadline passed before the order could be written. `stage` is
    /// [`StoreError::DEADLINE_BEFORE_WORK`] or [`StoreError::DEADLINE_BEFORE_WRITE`].
    #[error("the deadline passed {stage}; the order was not written")]
    DeadlineExceeded { stage: &'static str },
    /// Another submit with this key is still in progress in this process.
    #[error("an order with idempotency key {key} is still in progress")]
    KeyInProgress { key: String },
    /// The key was already used for a different item code (by this process or, found in
    /// the shared journal, by another one writing the same orders file).
    #[error("idempotency key {key} was already used for item code {original_code:?}")]
    KeyReused { key: String, original_code: String },
    /// The allocator refused the simulated work's memory (the original's
    /// `OutOfMemoryException`). Returned as a value, never an abort.
    #[error("could not allocate {chars} characters for the simulated work: {error}")]
    Allocation {
        chars: usize,
        error: TryReserveError,
    },
    /// A file of the store (the orders file, the idempotency journal, or the journal's
    /// rewrite) could not be opened or created: at open, usually a missing directory or
    /// missing permissions. Nothing sticks: a later submit tries again.
    #[error("cannot {mode} {}: {error}", path.display())]
    Open {
        mode: OpenMode,
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file's data could not be synced to disk (durable mode, or the journal's rewrite
    /// at open). From a submit, on the orders file: the line was appended, whether it
    /// survives is unknown — after a failed fsync a later one may succeed without the data
    /// on disk, so it is not retried.
    #[error("cannot sync {}: {error}", path.display())]
    Sync {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Any other file operation failed: locked, written, read, truncated, or the
    /// directory synced. `action` words it for the message, `path` says which file;
    /// `error` is the OS error. Nothing sticks: a later submit tries again.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// At open: the orders file (or its journal) exists but is not a regular file. A FIFO
    /// would block the open until a reader appears; a directory or a device cannot hold
    /// orders. `kind` says what it is ("a FIFO (named pipe)", "a directory", …), `role`
    /// which file it was meant to be.
    #[error(
        "cannot use {} as {role}: it is {kind}, not a regular file; choose a regular file \
         for --orders-file",
        path.display()
    )]
    NotARegularFile {
        path: PathBuf,
        kind: &'static str,
        role: &'static str,
    },
    /// An append failed part-way and its partial line could not be removed, so this store
    /// appends nothing more to the file (the next order would be glued onto the partial
    /// line). Every submit fails this way until a restart, whose start-up repair removes
    /// the partial line. `cause` says what failed.
    #[error(
        "cannot append to {}: a partial line could not be removed ({cause}); restart the \
         server, which repairs the file",
        path.display()
    )]
    OrdersFileBroken { path: PathBuf, cause: String },
    /// The idempotency journal failed in a way that cannot be retried (an fsync failed, or
    /// a record could not be taken back), so keyed orders are refused until a restart
    /// checks the journal against the orders file. Unkeyed orders still work. Unlike an
    /// `Io` error, retrying does not help before the restart.
    #[error(
        "keyed orders are refused until the server restarts: the idempotency journal {} \
         failed ({cause}); the restart checks it against the orders file",
        path.display()
    )]
    JournalFailed { path: PathBuf, cause: String },
}

impl StoreError {
    /// What to add to an error from opening the store, when its own message does not
    /// already say what to do: only a failure to open or create the orders file itself is
    /// about its directory or permissions (a corrupt journal's message names the line; a
    /// FIFO's says to choose a regular file). Empty otherwise.
    pub fn open_hint(&self) -> &'static str {
        match self {
            StoreError::Open { .. } => {
                "; check that the directory exists and is writable, or choose another \
                 --orders-file"
            }
            _ => "",
        }
    }

    /// [`StoreError::DeadlineExceeded`] stage: the deadline had passed when the submit
    /// started; nothing was allocated.
    pub const DEADLINE_BEFORE_WORK: &'static str = "before the work started";
    /// [`StoreError::DeadlineExceeded`] stage: the work was done, but the deadline passed
    /// before the order line could be appended; it was not appended.
    pub const DEADLINE_BEFORE_WRITE: &'static str = "before the order was written";
}

/// How a file was being opened, for [`StoreError::Open`]'s message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Opened (created if missing) to append to it.
    Append,
    /// Created anew.
    Create,
}

impl std::fmt::Display for OpenMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OpenMode::Append => "open for append",
            OpenMode::Create => "create",
        })
    }
}

pub(crate) fn open_error_at(mode: OpenMode, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Open {
        mode,
        path: path.to_owned(),
        error,
    }
}

pub(crate) fn sync_error_at(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Sync {
        path: path.to_owned(),
        error,
    }
}

pub(crate) fn io_error_at(action: &'static str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_owned(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `anyhow`'s `{:#}` prints: the message, then each source's message.
    fn with_sources(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }

    #[test]
    fn the_os_error_text_appears_once_with_or_without_the_chain() {
        let os = std::io::Error::from_raw_os_error(28); // ENOSPC
        let os_text = os.to_string();
        let error = io_error_at("append to", Path::new("/data/o.txt"), os);
        for shown in [error.to_string(), with_sources(&error)] {
            assert_eq!(
                shown,
                format!("cannot append to /data/o.txt: {os_text}"),
                "{shown}"
            );
        }

        let refused = Vec::<u8>::new().try_reserve_exact(usize::MAX).unwrap_err();
        let refused_text = refused.to_string();
        let error = StoreError::Allocation {
            chars: usize::MAX,
            error: refused,
        };
        assert_eq!(with_sources(&error).matches(&refused_text).count(), 1);
    }
}
