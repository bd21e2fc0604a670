//! The store's unit tests: opening, the order path, and failing appends (a journal or an
//! orders file that is a device).

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::*;
use crate::idempotency::{IdempotencyKey, Journal, JournalRecovery, KeyIndex};
use crate::read_orders_file;
use crate::workload::FillTiming;
use item_code::ItemCode;

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
fn a_missing_directory_is_an_open_error_with_its_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("PurchaseOrders.txt");
    for durable in [false, true] {
        let options = StoreOptions {
            durable,
            ..StoreOptions::default()
        };
        let err = PurchaseOrderStore::open_with(&path, tiny(), options).unwrap_err();
        assert!(
            matches!(&err, StoreError::Open { mode: crate::OpenMode::Append, path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("cannot open for append "),
            "{err}"
        );
        assert!(
            err.open_hint().contains("directory exists"),
            "{}",
            err.open_hint()
        );
    }
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
fn a_store_with_a_fill_gate_still_writes_every_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.txt");
    let options = StoreOptions {
        max_concurrent_fills: Some(1),
        ..Default::default()
    };
    let store = Arc::new(PurchaseOrderStore::open_with(&path, tiny(), options).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                store
                    .submit_purchase_order(&code(&format!("g{t}")))
                    .unwrap()
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(read_orders_file(&path).unwrap().orders.len(), 8);
}

#[test]
fn an_observed_submit_reports_the_wait_at_the_fill_gate() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_concurrent_fills: Some(1),
        ..Default::default()
    };
    // 64 MB fills take tens of milliseconds: a second order waits for one.
    let workload = Workload {
        alloc_chars: 64 << 20,
        delay: Duration::from_millis(1),
        release_early: false,
    };
    let store = Arc::new(
        PurchaseOrderStore::open_with(dir.path().join("o.txt"), workload, options).unwrap(),
    );
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let timings: Vec<FillTiming> = (0..2)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut seen = None;
                barrier.wait();
                store
                    .submit_observed(&code(&format!("w{t}")), SubmitOptions::default(), |f| {
                        seen = Some(f)
                    })
                    .unwrap();
                seen.expect("the fill was observed")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let (first, second) = if timings[0].waited <= timings[1].waited {
        (timings[0], timings[1])
    } else {
        (timings[1], timings[0])
    };
    assert!(first.filled > Duration::ZERO && second.filled > Duration::ZERO);
    // The later one waited for (most of) the earlier one's fill.
    assert!(
        second.waited >= first.filled / 2,
        "{first:?} then {second:?}"
    );
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
fn a_device_is_refused_at_open_as_not_a_regular_file() {
    // /dev/full would accept the open and fail every write; /dev/null would swallow
    // every order while the store acknowledged it.
    for device in ["/dev/full", "/dev/null"] {
        let err = PurchaseOrderStore::open(device, tiny()).unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::NotARegularFile {
                    kind: "a character device",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot use {device} as the orders file: it is a character device, not a \
                 regular file; choose a regular file for --orders-file"
            )
        );
    }
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

/// A keyed store whose journal is the given file (a real journal is always beside
/// its orders file, which makes a failing one hard to arrange).
fn store_with_journal(orders: &Path, journal: &Path, durable: bool) -> PurchaseOrderStore {
    PurchaseOrderStore {
        path: orders.to_owned(),
        workload: tiny(),
        options: StoreOptions {
            durable,
            idempotency: true,
            max_concurrent_fills: None,
        },
        append_lock: Mutex::new(()),
        fill_gate: None,
        group_commit: Default::default(),
        idempotency: Some(Idempotency {
            index: KeyIndex::default(),
            journal: Journal::at(journal.to_owned()),
            recovery: JournalRecovery::default(),
        }),
        repaired_tail: Mutex::new(None),
        orders_file_broken: OnceLock::new(),
    }
}

fn keyed(key: &IdempotencyKey) -> SubmitOptions<'_> {
    SubmitOptions {
        deadline: None,
        key: Some(key),
    }
}

#[test]
fn a_journal_write_that_fails_cleanly_does_not_refuse_later_keyed_orders() {
    // /dev/full fails every write with ENOSPC before writing anything: the journal is
    // as it was, so the failure is this order's alone.
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("o.txt");
    std::fs::write(&orders, "").unwrap();
    let store = store_with_journal(&orders, Path::new("/dev/full"), false);
    let k = IdempotencyKey::parse("k").unwrap();
    for _ in 0..2 {
        // The second attempt fails on the write again, not on a journal marked failed.
        let err = store.submit(&code("1"), keyed(&k)).unwrap_err();
        assert!(
            matches!(&err, StoreError::Io { action: "append to", path, .. } if path == Path::new("/dev/full")),
            "{err:?}"
        );
        assert_eq!(store.journal_failure(), None);
        assert_eq!(store.keys_known(), 0, "the key is released for a retry");
    }
    assert_eq!(std::fs::read(&orders).unwrap(), b"");
}

#[test]
fn a_failed_journal_sync_refuses_keyed_orders_until_a_restart() {
    // /dev/null takes every write, and fsync of it fails (EINVAL): a simulated sync
    // failure, which is never retried.
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("o.txt");
    std::fs::write(&orders, "").unwrap();
    let store = store_with_journal(&orders, Path::new("/dev/null"), true);
    let k = IdempotencyKey::parse("k").unwrap();

    let first = store.submit(&code("1"), keyed(&k)).unwrap_err();
    let again = store.submit(&code("1"), keyed(&k)).unwrap_err();
    for err in [&first, &again] {
        match err {
            StoreError::JournalFailed { path, cause } => {
                assert_eq!(path, Path::new("/dev/null"));
                assert!(cause.starts_with("syncing it failed ("), "{cause}");
            }
            other => panic!("expected JournalFailed, got {other:?}"),
        }
        assert!(
            err.to_string()
                .starts_with("keyed orders are refused until the server restarts: "),
            "{err}"
        );
    }
    let health = store
        .journal_failure()
        .expect("the journal is reported failed");
    assert_eq!(health, first.to_string());
    assert_eq!(store.orders_file_failure(), None);
    assert_eq!(std::fs::read(&orders).unwrap(), b"", "no order was written");
    assert_eq!(store.keys_known(), 0, "the key is released");

    // Orders without a key do not need the journal.
    store.submit_purchase_order(&code("2")).unwrap();
    assert_eq!(
        std::fs::read_to_string(&orders).unwrap(),
        "Purchase order for item: 2\n"
    );
}

#[test]
fn a_failed_order_append_takes_its_journal_record_back() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    std::fs::write(&journal, "").unwrap();
    let store = store_with_journal(Path::new("/dev/full"), &journal, false);
    let k = IdempotencyKey::parse("k").unwrap();
    for _ in 0..2 {
        // The second attempt fails on the orders file again, not on a journal that
        // was marked failed: taking the record back succeeded.
        let err = store.submit(&code("1"), keyed(&k)).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot append to /dev/full: "),
            "{err}"
        );
        assert_eq!(std::fs::read(&journal).unwrap(), b"");
        assert_eq!(store.keys_known(), 0);
    }
}
