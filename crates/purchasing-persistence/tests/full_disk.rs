//! A full disk, for real: a 64 KiB tmpfs filled up, so an append fails part-way as it does
//! in production (ENOSPC after the bytes that still fit). A failed append must leave no
//! partial line in the orders file or the journal, and a failure that was taken back must
//! not stick once space is freed. Needs root to mount; see `cannot_run_here` for the rule.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use purchasing_persistence::{
    JournalRecovery, PurchaseOrderStore, StoreError, StoreOptions, Submitted, format_line,
    read_orders_file,
};

/// Whole lines up to 10 bytes before the end of the file's first page: the next line
/// starts in that page and needs a second one, which a full disk does not have.
fn orders_ten_bytes_short_of_a_page(fs: &SmallFs) -> String {
    let before = whole_lines_of(PAGE - 10);
    std::fs::write(orders_path(fs.path()), &before).unwrap();
    before
}

fn assert_only_whole_lines(path: &Path) {
    let file = read_orders_file(path).unwrap();
    assert!(file.malformed.is_empty(), "{:?}", file.malformed);
}

#[test]
fn a_failed_append_on_a_full_disk_leaves_no_partial_line() {
    let Some(fs) = SmallFs::mount("a_failed_append_on_a_full_disk_leaves_no_partial_line") else {
        return;
    };
    let orders = orders_path(fs.path());
    let before = orders_ten_bytes_short_of_a_page(&fs);
    let store = PurchaseOrderStore::open(&orders, tiny()).unwrap();
    let filler = fs.fill();

    let err = store.submit_purchase_order(&code("C000141")).unwrap_err();
    match &err {
        StoreError::Io {
            action: "append to",
            path,
            error,
        } => {
            assert_eq!(path, &orders);
            assert_eq!(error.kind(), std::io::ErrorKind::StorageFull);
        }
        other => panic!("expected the append's ENOSPC, got {other:?}"),
    }
    let after = std::fs::read_to_string(&orders).unwrap();
    assert_eq!(
        after.strip_prefix(&before),
        Some(""),
        "the bytes that fit were taken back"
    );
    assert_eq!(store.orders_file_failure(), None);

    // Space again: the next order is a line of its own, not glued onto a partial one.
    std::fs::remove_file(filler).unwrap();
    store.submit_purchase_order(&code("C000142")).unwrap();
    assert_eq!(
        std::fs::read_to_string(&orders).unwrap(),
        format!("{before}{}", format_line(&code("C000142")))
    );
    assert_only_whole_lines(&orders);
}

#[test]
fn a_write_failure_in_durable_mode_is_an_io_error_naming_the_file() {
    let Some(fs) = SmallFs::mount("a_write_failure_in_durable_mode_is_an_io_error_naming_the_file")
    else {
        return;
    };
    let options = StoreOptions {
        durable: true,
        ..StoreOptions::default()
    };
    let store = open(fs.path(), tiny(), options);
    fs.fill();
    let err = store.submit_purchase_order(&code("1")).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io { action: "append to", path, .. } if *path == orders_path(fs.path())),
        "{err:?}"
    );
    let message = err.to_string();
    let expected = format!("cannot append to {}: ", orders_path(fs.path()).display());
    assert!(message.starts_with(&expected), "{message}");
    assert_eq!(std::fs::read(orders_path(fs.path())).unwrap(), b"");
}

#[test]
fn a_partial_line_that_cannot_be_removed_stops_all_appends_until_a_restart_repairs_it() {
    const TEST: &str =
        "a_partial_line_that_cannot_be_removed_stops_all_appends_until_a_restart_repairs_it";
    let Some(fs) = SmallFs::mount(TEST) else {
        return;
    };
    let orders = orders_path(fs.path());
    let before = orders_ten_bytes_short_of_a_page(&fs);
    let store = PurchaseOrderStore::open(&orders, with_delay(200)).unwrap();
    // Append-only: writes still land, but the truncation that would take them back fails.
    if let Err(why) = fs.chattr(&orders, "+a") {
        cannot_run_here(TEST, &why);
        return;
    }
    let filler = fs.fill();

    let err = store.submit_purchase_order(&code("C000141")).unwrap_err();
    let StoreError::OrdersFileBroken { path, cause } = &err else {
        panic!("expected OrdersFileBroken, got {err:?}");
    };
    assert_eq!(path, &orders);
    assert!(
        cause.contains("truncating the file back to 4086 bytes failed"),
        "{cause}"
    );
    assert!(
        err.to_string()
            .ends_with("restart the server, which repairs the file"),
        "{err}"
    );
    assert_eq!(store.orders_file_failure(), Some(err.to_string()));
    let partial = std::fs::read(&orders).unwrap();
    assert_eq!(&partial[..before.len()], before.as_bytes());
    assert_eq!(&partial[before.len()..], b"Purchase o", "what fitted");

    // Space alone does not help: nothing may be appended onto the partial line. The
    // refusal comes before the work (the workload sleeps 200 ms).
    std::fs::remove_file(filler).unwrap();
    let started = std::time::Instant::now();
    let again = store.submit_purchase_order(&code("C000142")).unwrap_err();
    assert!(
        matches!(again, StoreError::OrdersFileBroken { .. }),
        "{again:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(150), "fails fast");
    assert_eq!(std::fs::read(&orders).unwrap(), partial, "nothing glued on");
    drop(store);

    // The operator clears the cause and restarts: the partial line is removed.
    fs.chattr(&orders, "-a").unwrap();
    let store = PurchaseOrderStore::open(&orders, tiny()).unwrap();
    let tail = store
        .repaired_tail()
        .expect("the partial line was repaired");
    assert_eq!(
        (
            tail.offset,
            tail.bytes_removed,
            tail.removed_text_lossy.as_str()
        ),
        (before.len() as u64, 10, "Purchase o")
    );
    store.submit_purchase_order(&code("C000142")).unwrap();
    assert_eq!(
        std::fs::read_to_string(&orders).unwrap(),
        format!("{before}{}", format_line(&code("C000142")))
    );
}

/// An orders file and a journal of complete records, written by hand, whose journal ends
/// 5 bytes short of a page: the next record only partly fits on a full disk.
fn journal_five_bytes_short_of_a_page(dir: &Path) -> (String, String) {
    let now = unix_ms(Duration::ZERO);
    let target = PAGE - 5;
    let (mut orders, mut journal) = (String::new(), String::new());
    for i in 0.. {
        let code = format!("c{i}");
        let offset = orders.len();
        let rest = format!("\t{code}\t{offset}\t{now}\n");
        let remaining = target - journal.len();
        let last = remaining <= 250;
        let key_len = if last { remaining - rest.len() } else { 100 };
        let key = format!("{:x<key_len$}", format!("k{i}-"));
        journal.push_str(&key);
        journal.push_str(&rest);
        orders.push_str(&format_line(&common::code(&code)));
        if last {
            break;
        }
    }
    assert_eq!(journal.len(), target);
    std::fs::write(orders_path(dir), &orders).unwrap();
    std::fs::write(journal_path(dir), &journal).unwrap();
    (orders, journal)
}

#[test]
fn a_journal_write_failing_on_a_full_disk_is_taken_back_and_does_not_stick() {
    let Some(fs) =
        SmallFs::mount("a_journal_write_failing_on_a_full_disk_is_taken_back_and_does_not_stick")
    else {
        return;
    };
    let (orders_before, journal_before) = journal_five_bytes_short_of_a_page(fs.path());
    let store = open(fs.path(), tiny(), IDEMPOTENT);
    let kept = store.journal_recovery().unwrap().kept;
    let filler = fs.fill();
    let k = key("k-new");

    let err = store.submit(&code("new"), keyed(&k)).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io { action: "append to", path, .. } if *path == journal_path(fs.path())),
        "{err:?}"
    );
    assert_eq!(
        journal_text(fs.path()),
        journal_before,
        "the record was taken back"
    );
    assert_eq!(
        std::fs::read_to_string(orders_path(fs.path())).unwrap(),
        orders_before
    );
    assert_eq!(
        store.journal_failure(),
        None,
        "a clean failure does not stick"
    );

    // Space again: the same key does its work once, and its record is a line of its own.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(
        store.submit(&code("new"), keyed(&k)).unwrap(),
        Submitted::Written
    );
    assert_eq!(
        store.submit(&code("new"), keyed(&k)).unwrap(),
        Submitted::Replayed
    );
    drop(store);
    let store = open(fs.path(), tiny(), IDEMPOTENT);
    assert_eq!(
        store.journal_recovery(),
        Some(JournalRecovery {
            kept: kept + 1,
            ..JournalRecovery::default()
        })
    );
    assert_eq!(orders(fs.path()).last().map(String::as_str), Some("new"));
}

#[test]
fn a_journal_record_that_cannot_be_taken_back_refuses_keyed_orders_until_a_restart() {
    const TEST: &str =
        "a_journal_record_that_cannot_be_taken_back_refuses_keyed_orders_until_a_restart";
    let Some(fs) = SmallFs::mount(TEST) else {
        return;
    };
    journal_five_bytes_short_of_a_page(fs.path());
    let store = open(fs.path(), tiny(), IDEMPOTENT);
    if let Err(why) = fs.chattr(&journal_path(fs.path()), "+a") {
        cannot_run_here(TEST, &why);
        return;
    }
    let filler = fs.fill();
    let k = key("k-new");

    let err = store.submit(&code("new"), keyed(&k)).unwrap_err();
    let StoreError::JournalFailed { path, cause } = &err else {
        panic!("expected JournalFailed, got {err:?}");
    };
    assert_eq!(path, &journal_path(fs.path()));
    assert!(cause.contains("could not be taken back"), "{cause}");
    assert_eq!(store.journal_failure(), Some(err.to_string()));

    // Space alone does not help: the journal holds a partial record now.
    std::fs::remove_file(filler).unwrap();
    let again = store.submit(&code("new"), keyed(&k)).unwrap_err();
    assert!(
        matches!(again, StoreError::JournalFailed { .. }),
        "{again:?}"
    );
    assert!(store.journal_failure().is_some());
    drop(store);

    // The restart drops the torn record, and the key does its work once.
    fs.chattr(&journal_path(fs.path()), "-a").unwrap();
    let store = open(fs.path(), tiny(), IDEMPOTENT);
    assert_eq!(store.journal_recovery().unwrap().torn, 1);
    assert_eq!(store.journal_failure(), None);
    assert_eq!(
        store.submit(&code("new"), keyed(&k)).unwrap(),
        Submitted::Written
    );
    assert_eq!(orders(fs.path()).last().map(String::as_str), Some("new"));
}
