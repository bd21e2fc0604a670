//! Durable mode: fsync cannot be observed from a test, so these check that it works
//! functionally. That write failures are reported, never swallowed, is checked on a
//! really full disk in `full_disk.rs`.

mod common;

use common::*;
use purchasing_persistence::{StoreOptions, Submitted};

const DURABLE_IDEMPOTENT: StoreOptions = StoreOptions {
    durable: true,
    idempotency: true,
    max_concurrent_fills: None,
};

#[test]
fn a_durable_store_creates_its_files_writes_and_replays_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not hold the files yet, so both are created (and the
    // directory synced) by open_with.
    let store = open(dir.path(), tiny(), DURABLE_IDEMPOTENT);
    assert!(orders_path(dir.path()).exists() && journal_path(dir.path()).exists());
    assert_eq!(store.options(), DURABLE_IDEMPOTENT);

    let k = key("k-durable");
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Written
    );
    store.submit_purchase_order(&code("unkeyed")).unwrap();
    drop(store);

    let store = open(dir.path(), tiny(), DURABLE_IDEMPOTENT);
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Replayed
    );
    assert_eq!(orders(dir.path()), ["123", "unkeyed"]);
}

#[test]
fn a_durable_store_without_idempotency_writes_the_faithful_lines() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        durable: true,
        idempotency: false,
        max_concurrent_fills: None,
    };
    let store = open(dir.path(), tiny(), options);
    store.submit_purchase_order(&code("1")).unwrap();
    store.submit_purchase_order(&code("2")).unwrap();
    assert_eq!(
        std::fs::read_to_string(orders_path(dir.path())).unwrap(),
        "Purchase order for item: 1\nPurchase order for item: 2\n"
    );
    assert_eq!(store.idempotency_journal_path(), None);
    assert!(!journal_path(dir.path()).exists());
}
