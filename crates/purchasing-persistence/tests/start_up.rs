//! What opening a store checks and repairs before the first order: a partial last line
//! (a crash or power loss mid-append) is removed and reported, and a path that is not a
//! regular file (a FIFO, a directory) is refused at once instead of hanging or failing
//! every order later.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use purchasing_persistence::{
    PurchaseOrderStore, RepairedTail, StoreError, StoreOptions, Submitted, format_line,
};

fn line(c: &str) -> String {
    format_line(&code(c))
}

#[test]
fn a_partial_last_line_is_removed_at_start_up_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = orders_path(dir.path());
    let before = format!("{}{}", line("1"), line("2"));
    std::fs::write(&file, format!("{before}Purc")).unwrap();

    let store = open(dir.path(), tiny(), StoreOptions::default());
    assert_eq!(
        store.repaired_tail(),
        Some(RepairedTail {
            path: file.clone(),
            offset: before.len() as u64,
            bytes_removed: 4,
            removed_text_lossy: "Purc".into(),
        })
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    // The next order is a line of its own, not "PurcPurchase order for item: 3".
    store.submit_purchase_order(&code("3")).unwrap();
    assert_eq!(orders(dir.path()), ["1", "2", "3"]);
    drop(store);

    // A file that ends with its newline is left alone.
    let store = open(dir.path(), tiny(), StoreOptions::default());
    assert_eq!(store.repaired_tail(), None);
    assert_eq!(orders(dir.path()), ["1", "2", "3"]);
}

#[test]
fn a_crash_during_a_keyed_order_line_is_repaired_before_the_journal_is_checked() {
    // The crash hit step (c): the record is whole, its order line is cut short.
    let dir = tempfile::tempdir().unwrap();
    let now = unix_ms(Duration::ZERO);
    let before = line("1");
    let cut = &line("123")[..20];
    std::fs::write(orders_path(dir.path()), format!("{before}{cut}")).unwrap();
    std::fs::write(
        journal_path(dir.path()),
        format!("k\t123\t{}\t{now}\n", before.len()),
    )
    .unwrap();

    let durable = StoreOptions {
        durable: true,
        ..IDEMPOTENT
    };
    let store = open(dir.path(), tiny(), durable);
    assert_eq!(store.repaired_tail().unwrap().bytes_removed, 20);
    let recovery = store.journal_recovery().unwrap();
    assert_eq!((recovery.incomplete, recovery.kept), (1, 0));
    assert!(
        !recovery.orders_file_changed,
        "an interrupted append, not a changed file: the record points at the end"
    );

    // The client's retry does the work once.
    let k = key("k");
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Written
    );
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Replayed
    );
    assert_eq!(orders(dir.path()), ["1", "123"]);
}

/// Opens a store in a thread and waits at most 5 s: a FIFO can make an open block. If it
/// does, the FIFO is opened from here to release it, and the test fails.
fn open_within_5_s(path: &Path, options: StoreOptions, fifo: &Path) -> StoreError {
    let (tx, rx) = mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(PurchaseOrderStore::open_with(path, tiny(), options).map(|_| ()));
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(result) => result.expect_err("a FIFO must be refused"),
        Err(_) => {
            // Read-write never blocks on a FIFO and stands in for the missing other end.
            drop(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(fifo),
            );
            panic!("opening the store hung on the FIFO {}", fifo.display());
        }
    }
}

fn mkfifo(test: &str, path: &Path) -> bool {
    match std::process::Command::new("mkfifo").arg(path).status() {
        Ok(status) if status.success() => true,
        other => {
            cannot_run_here(test, &format!("mkfifo failed: {other:?}"));
            false
        }
    }
}

#[test]
fn a_fifo_as_the_orders_file_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = orders_path(dir.path());
    if !mkfifo(
        "a_fifo_as_the_orders_file_is_refused_without_hanging",
        &fifo,
    ) {
        return;
    }
    for options in [StoreOptions::default(), IDEMPOTENT] {
        let err = open_within_5_s(&fifo, options, &fifo);
        assert!(
            matches!(
                &err,
                StoreError::NotARegularFile {
                    kind: "a FIFO (named pipe)",
                    role: "the orders file",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "cannot use {} as the orders file: it is a FIFO (named pipe), not a regular \
                 file; choose a regular file for --orders-file",
                fifo.display()
            )
        );
    }
}

#[test]
fn a_fifo_in_place_of_the_journal_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = journal_path(dir.path());
    if !mkfifo(
        "a_fifo_in_place_of_the_journal_is_refused_without_hanging",
        &fifo,
    ) {
        return;
    }
    let err = open_within_5_s(&orders_path(dir.path()), IDEMPOTENT, &fifo);
    assert!(
        matches!(
            &err,
            StoreError::NotARegularFile {
                role: "the idempotency journal",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(fifo.to_str().unwrap()), "{err}");
}

#[test]
fn a_directory_as_the_orders_file_is_refused_as_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let orders: PathBuf = orders_path(dir.path());
    std::fs::create_dir(&orders).unwrap();
    let err = PurchaseOrderStore::open(&orders, tiny()).unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::NotARegularFile {
                kind: "a directory",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("it is a directory, not a regular file"),
        "{err}"
    );
}

#[test]
fn a_symlink_to_a_regular_file_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.txt");
    std::fs::write(&real, line("1")).unwrap();
    std::os::unix::fs::symlink(&real, orders_path(dir.path())).unwrap();
    let store = open(dir.path(), tiny(), StoreOptions::default());
    store.submit_purchase_order(&code("2")).unwrap();
    assert_eq!(orders(dir.path()), ["1", "2"]);
}
