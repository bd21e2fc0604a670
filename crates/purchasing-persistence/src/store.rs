//! `PurchaseOrderStore`: the literal translation of the original's `SubmitPurchaseOrder`.

use std::collections::TryReserveError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::{ItemCode, order_line};

/// Characters allocated per order by default: the article's `new string('a', 150000000)`.
/// A Rust `String` of ASCII is one byte per character, so this is 150 MB held per order.
pub const DEFAULT_ALLOC_CHARS: usize = 150_000_000;

/// How long each order blocks its thread by default: the original's `Thread.Sleep(500)`.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(500);

/// The orders file, relative to the working directory (the original wrote
/// `C:\Temp\PurchaseOrders.txt`).
pub const DEFAULT_ORDERS_FILE: &str = "PurchaseOrders.txt";

/// The simulated expensive work done for every order.
///
/// The defaults are the faithful workload; tests and cheap experiments use tiny values
/// (for example 1,000 characters and 5 ms) so they can run hundreds of orders at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Characters of the string allocated, filled and held for the whole call.
    pub alloc_chars: usize,
    /// How long the calling thread is blocked (a sleep, not CPU work).
    pub delay: Duration,
    /// Drop the string right after filling it instead of holding it through the sleep.
    ///
    /// In .NET the string is unreachable after it is built, so a garbage collection
    /// during the sleep may reclaim it; Rust frees deterministically at end of scope.
    /// `false` (the default) is the worst case the article describes: memory held for
    /// the whole request. `true` mimics a runtime whose GC collects it early.
    pub release_early: bool,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            alloc_chars: DEFAULT_ALLOC_CHARS,
            delay: DEFAULT_DELAY,
            release_early: false,
        }
    }
}

/// How the store keeps its promises. Both off by default: the faithful store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// `sync_data` the orders file (and the idempotency journal) before a submit returns,
    /// so a success means "on disk", not "in the page cache".
    pub durable: bool,
    /// Keep an idempotency journal beside the orders file so a keyed order is written at
    /// most once, also across restarts.
    pub idempotency: bool,
}

/// What one submit should respect.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubmitOptions<'a> {
    /// Past this instant the order must not be written: checked before the work starts and
    /// again just before the append, so an abandoned request leaves no ghost order.
    pub deadline: Option<std::time::Instant>,
    /// The client's idempotency key (needs [`StoreOptions::idempotency`]).
    pub key: Option<&'a IdempotencyKey>,
}

/// What a successful submit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// The order line was appended.
    Written,
    /// The key had already completed with the same item code: nothing was written, the
    /// first outcome is replayed.
    Replayed,
}

/// A client-chosen idempotency key: 1–255 visible ASCII characters (a UUID in practice).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(key: &str) -> Result<Self, String> {
        if key.is_empty() || key.len() > Self::MAX_LEN || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "an idempotency key is 1 to {} visible ASCII characters (a UUID, say)",
                Self::MAX_LEN
            ));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why an order could not be stored. Nothing was written to the file in any case.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The submit's deadline passed before the order could be written.
    #[error("the deadline passed {stage}; the order was not written")]
    DeadlineExceeded { stage: &'static str },
    /// Another submit with this key is still in progress.
    #[error("an order with idempotency key {key} is still in progress")]
    KeyInProgress { key: String },
    /// The key was already used for a different item code.
    #[error("idempotency key {key} was already used for item code {original_code:?}")]
    KeyReused { key: String, original_code: String },
    /// The allocator refused the simulated work's memory (the original's
    /// `OutOfMemoryException`). Returned as a value, never an abort.
    #[error("could not allocate {chars} characters for the simulated work: {source}")]
    Allocation {
        chars: usize,
        source: TryReserveError,
    },
    /// The orders file could not be opened, locked, written or read.
    #[error("cannot {action} orders file {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes purchase orders to a text file, one line each, after doing the simulated work.
///
/// Safe to share between threads (`&self` methods) and between processes writing the
/// same file: each append happens under an in-process mutex *and* an exclusive OS
/// advisory lock on the file, and is a single `write` of the whole line.
#[derive(Debug)]
pub struct PurchaseOrderStore {
    path: PathBuf,
    workload: Workload,
    /// The original's `lock (SyncRoot)`: serialises appends inside this process. The
    /// OS lock below would also do so on Linux (flock locks conflict between two opens
    /// in one process), but not on every platform and not for every lock kind; keeping
    /// the explicit mutex makes the intent independent of that detail.
    append_lock: Mutex<()>,
}

impl PurchaseOrderStore {
    /// Creates a store writing to `path`, creating the file if needed. Fails at once if
    /// the file cannot be opened for append, so a server can refuse to start rather than
    /// fail every order later.
    pub fn open(path: impl Into<PathBuf>, workload: Workload) -> Result<Self, StoreError> {
        let store = Self {
            path: path.into(),
            workload,
            append_lock: Mutex::new(()),
        };
        store.open_for_append()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn workload(&self) -> Workload {
        self.workload
    }

    /// INTERFACE STUB (being implemented): opens a store with options; today it ignores them.
    pub fn open_with(
        path: impl Into<PathBuf>,
        workload: Workload,
        _options: StoreOptions,
    ) -> Result<Self, StoreError> {
        Self::open(path, workload)
    }

    /// INTERFACE STUB (being implemented): a submit that honours a deadline and an
    /// idempotency key; today it ignores both.
    pub fn submit(
        &self,
        code: &ItemCode,
        _options: SubmitOptions<'_>,
    ) -> Result<Submitted, StoreError> {
        self.submit_purchase_order(code)
            .map(|()| Submitted::Written)
    }

    /// Records one purchase order: allocate and fill `alloc_chars` characters, block for
    /// `delay`, then append `Purchase order for item: CODE\n` to the file.
    ///
    /// Blocks the calling thread for at least `delay`; call it from a thread that may
    /// block (for example tokio's `spawn_blocking`), never from an async task.
    pub fn submit_purchase_order(&self, code: &ItemCode) -> Result<(), StoreError> {
        let work = simulate_expensive_work(self.workload.alloc_chars)?;
        let work = if self.workload.release_early {
            drop(work);
            None
        } else {
            Some(work)
        };

        std::thread::sleep(self.workload.delay);
        self.append_line(code)?;

        // Keep the string observably alive until the order is written, so neither the
        // optimiser nor an early drop shortens the time the memory is held.
        std::hint::black_box(&work);
        drop(work);
        Ok(())
    }

    fn open_for_append(&self) -> Result<File, StoreError> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|source| self.io_error("open for append", source))
    }

    /// One order line, appended under both locks in a single write. The file is opened
    /// per call, like the original's `File.AppendText`, and closed (unlocking it) on drop.
    fn append_line(&self, code: &ItemCode) -> Result<(), StoreError> {
        let line = order_line::format_line(code);
        // A poisoned mutex only means another thread panicked while appending; the
        // mutex guards no data, so it is still safe to take.
        let _guard = self
            .append_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut file = self.open_for_append()?;
        file.lock()
            .map_err(|source| self.io_error("lock", source))?;
        // O_APPEND makes the kernel position every write at the current end of file; the
        // exclusive lock keeps other processes' lines from landing inside ours.
        file.write_all(line.as_bytes())
            .map_err(|source| self.io_error("append to", source))?;
        Ok(())
    }

    fn io_error(&self, action: &'static str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

/// The original's `new string('a', n)`: a string of `chars` `'a'`s with every byte
/// written (so every page is really touched), allocated fallibly.
fn simulate_expensive_work(chars: usize) -> Result<String, StoreError> {
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(chars)
        .map_err(|source| StoreError::Allocation { chars, source })?;
    bytes.resize(chars, b'a');
    // All bytes are ASCII, so this cannot fail; the check costs a fraction of the fill.
    let work = String::from_utf8(bytes).expect("a run of ASCII 'a' is valid UTF-8");
    Ok(std::hint::black_box(work))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::read_orders_file;

    fn tiny() -> Workload {
        Workload {
            alloc_chars: 1000,
            delay: Duration::from_millis(5),
            release_early: false,
        }
    }

    fn code(s: &str) -> ItemCode {
        ItemCode::parse(s).unwrap()
    }

    #[test]
    fn defaults_are_the_faithful_workload() {
        let w = Workload::default();
        assert_eq!(w.alloc_chars, 150_000_000);
        assert_eq!(w.delay, Duration::from_millis(500));
        assert!(!w.release_early);
    }

    #[test]
    fn open_creates_the_file_and_submit_appends_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("PurchaseOrders.txt");
        let store = PurchaseOrderStore::open(&path, tiny()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");

        store.submit_purchase_order(&code("123")).unwrap();
        store.submit_purchase_order(&code("456")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "Purchase order for item: 123\nPurchase order for item: 456\n"
        );
    }

    #[test]
    fn submit_blocks_for_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let workload = Workload {
            delay: Duration::from_millis(120),
            ..tiny()
        };
        let store = PurchaseOrderStore::open(dir.path().join("o.txt"), workload).unwrap();
        let started = Instant::now();
        store.submit_purchase_order(&code("1")).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(120));
    }

    #[test]
    fn work_is_really_filled() {
        let work = simulate_expensive_work(4096).unwrap();
        assert_eq!(work.len(), 4096);
        assert!(work.bytes().all(|b| b == b'a'));
    }

    #[test]
    fn an_allocation_refusal_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        let workload = Workload {
            alloc_chars: usize::MAX,
            ..tiny()
        };
        let store = PurchaseOrderStore::open(&path, workload).unwrap();
        let err = store.submit_purchase_order(&code("1")).unwrap_err();
        assert!(matches!(err, StoreError::Allocation { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn open_fails_with_the_path_when_the_directory_is_missing() {
        let err = PurchaseOrderStore::open("/nonexistent-dir/o.txt", tiny()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("open for append") && msg.contains("/nonexistent-dir/o.txt"),
            "{msg}"
        );
    }

    #[test]
    fn a_full_device_is_an_io_error_not_a_panic() {
        // /dev/full accepts opens and fails every write with ENOSPC.
        let store = PurchaseOrderStore::open("/dev/full", tiny()).unwrap();
        let err = store.submit_purchase_order(&code("1")).unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }

    #[test]
    fn concurrent_submits_from_many_threads_write_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.txt");
        let store = Arc::new(PurchaseOrderStore::open(&path, tiny()).unwrap());
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..10 {
                        store
                            .submit_purchase_order(&code(&format!("t{t}-{i}")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let file = read_orders_file(&path).unwrap();
        assert!(file.malformed.is_empty(), "{:?}", file.malformed);
        let mut got: Vec<String> = file.orders.into_iter().map(ItemCode::into_string).collect();
        got.sort();
        let mut want: Vec<String> = (0..16)
            .flat_map(|t| (0..10).map(move |i| format!("t{t}-{i}")))
            .collect();
        want.sort();
        assert_eq!(got, want);
    }
}
