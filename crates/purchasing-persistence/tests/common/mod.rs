//! Shared helpers for the protections' tests: tiny workloads on real files.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use purchasing_persistence::{
    IdempotencyKey, ItemCode, PurchaseOrderStore, StoreOptions, SubmitOptions, Workload,
    format_line, read_orders_file,
};

pub fn tiny() -> Workload {
    Workload {
        alloc_chars: 1000,
        delay: Duration::from_millis(5),
        release_early: false,
    }
}

pub fn with_delay(ms: u64) -> Workload {
    Workload {
        delay: Duration::from_millis(ms),
        ..tiny()
    }
}

pub fn code(s: &str) -> ItemCode {
    ItemCode::parse(s).unwrap()
}

pub fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

pub const IDEMPOTENT: StoreOptions = StoreOptions {
    durable: false,
    idempotency: true,
    max_concurrent_fills: None,
};

pub fn orders_path(dir: &Path) -> PathBuf {
    dir.join("PurchaseOrders.txt")
}

pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join("PurchaseOrders.txt.idempotency")
}

pub fn open(dir: &Path, workload: Workload, options: StoreOptions) -> PurchaseOrderStore {
    PurchaseOrderStore::open_with(orders_path(dir), workload, options).unwrap()
}

pub fn keyed(key: &IdempotencyKey) -> SubmitOptions<'_> {
    SubmitOptions {
        deadline: None,
        key: Some(key),
    }
}

/// The item codes in the orders file, in file order; panics on a malformed line.
pub fn orders(dir: &Path) -> Vec<String> {
    let file = read_orders_file(orders_path(dir)).unwrap();
    assert!(file.malformed.is_empty(), "{:?}", file.malformed);
    file.orders.into_iter().map(ItemCode::into_string).collect()
}

pub fn journal_text(dir: &Path) -> String {
    std::fs::read_to_string(journal_path(dir)).unwrap()
}

pub fn unix_ms(ago: Duration) -> u64 {
    (SystemTime::now() - ago)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The rule for a test that needs what this machine may not give (root, a mount, a
/// command): under CI (the `CI` variable is set) it fails, so CI never passes without
/// running it; elsewhere it prints one `SKIPPED: …` line and the test returns.
pub fn cannot_run_here(test: &str, why: &str) {
    use std::io::Write as _;
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} cannot run here, and CI must run it: {why}"
    );
    // The real stderr, not the harness's captured output, so it shows when the test passes.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {why}");
}

/// A tmpfs page: the unit in which a tmpfs hands out space.
pub const PAGE: usize = 4096;

/// A tiny tmpfs of a test's own, so the test can fill a disk for real. Unmounted when
/// dropped, also when the test panics.
pub struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    /// Mounts a 64 KiB tmpfs, or says why it cannot ([`cannot_run_here`]) and returns
    /// `None`: mounting needs root.
    pub fn mount(test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self { dir }),
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                let why = why.lines().next().unwrap_or("mount failed").trim();
                cannot_run_here(test, &format!("cannot mount a tmpfs: {why}"));
                None
            }
            Err(e) => {
                cannot_run_here(test, &format!("cannot run mount: {e}"));
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a file of zeros, a page at a time, until a write fails
    /// with "no space left"; returns the file, whose removal frees the space again.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        loop {
            match file.write_all(&[0; PAGE]) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return path,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }

    /// Sets (`+a`) or clears (`-a`) the append-only attribute, with which a file can grow
    /// but not be truncated, even by root; `Err` says why it could not.
    pub fn chattr(&self, path: &Path, flag: &str) -> Result<(), String> {
        let out = std::process::Command::new("chattr")
            .arg(flag)
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run chattr: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "chattr {flag} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let path = self.dir.path();
        let unmounted = std::process::Command::new("umount").arg(path).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            // Something still holds a file open: detach now, freed once it is closed.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(path)
                .status();
        }
    }
}

/// Whole order lines, `total` bytes in all (at least 27, one line of a one-character code).
pub fn whole_lines_of(total: usize) -> String {
    let line_of = |chars: usize| format_line(&code(&"x".repeat(chars)));
    let overhead = purchasing_persistence::order_line::LINE_PREFIX.len() + 1; // and "\n"
    let longest = overhead + purchasing_persistence::MAX_ITEM_CODE_CHARS;
    let mut text = String::new();
    while total - text.len() > longest + overhead + 1 {
        text.push_str(&line_of(purchasing_persistence::MAX_ITEM_CODE_CHARS));
    }
    let rest = total - text.len();
    if rest > longest {
        text.push_str(&line_of(rest - 2 * overhead - 1));
    }
    let rest = total - text.len();
    text.push_str(&line_of(rest - overhead));
    assert_eq!(text.len(), total);
    text
}
