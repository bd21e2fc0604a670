//! Idempotency keys across stores sharing one orders file (API nodes behind a load
//! balancer). Two stores opened in one test process stand in for two processes: each has
//! its own index, and on Linux their OS locks conflict as between processes, so the
//! locking is real. The two-process version over HTTP is the root `store_hardening` test.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use purchasing_persistence::{PurchaseOrderStore, StoreError, Submitted};

fn two_stores(dir: &std::path::Path) -> (PurchaseOrderStore, PurchaseOrderStore) {
    (open(dir, tiny(), IDEMPOTENT), open(dir, tiny(), IDEMPOTENT))
}

#[test]
fn one_key_sent_to_two_stores_at_once_writes_one_line() {
    const KEYS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_stores(dir.path());
    let stores = [Arc::new(a), Arc::new(b)];
    for n in 0..KEYS {
        let start = Arc::new(Barrier::new(2));
        let threads: Vec<_> = stores
            .iter()
            .map(|store| {
                let (store, start) = (Arc::clone(store), Arc::clone(&start));
                std::thread::spawn(move || {
                    let k = key(&format!("key-{n}"));
                    start.wait();
                    store.submit(&code(&format!("code-{n}")), keyed(&k))
                })
            })
            .collect();
        let mut outcomes: Vec<Submitted> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        outcomes.sort_by_key(|o| *o == Submitted::Replayed);
        assert_eq!(
            outcomes,
            [Submitted::Written, Submitted::Replayed],
            "key {n}"
        );
    }
    let want: Vec<String> = (0..KEYS).map(|n| format!("code-{n}")).collect();
    assert_eq!(orders(dir.path()), want, "exactly one line per key");
}

#[test]
fn a_key_written_by_one_store_is_replayed_or_refused_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_stores(dir.path());
    let k = key("k");
    assert_eq!(
        a.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Written
    );

    // b has not seen the key yet: it does the work, then finds the record under the lock.
    assert_eq!(
        b.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Replayed
    );
    match b.submit(&code("456"), keyed(&k)) {
        Err(StoreError::KeyReused { key, original_code }) => {
            assert_eq!((key.as_str(), original_code.as_str()), ("k", "123"));
        }
        other => panic!("expected KeyReused, got {other:?}"),
    }
    // The same the other way round, for a key b wrote and a has not seen.
    let k2 = key("k2");
    assert_eq!(
        b.submit(&code("789"), keyed(&k2)).unwrap(),
        Submitted::Written
    );
    assert!(matches!(
        a.submit(&code("000"), keyed(&k2)),
        Err(StoreError::KeyReused { .. })
    ));
    assert_eq!(
        a.submit(&code("789"), keyed(&k2)).unwrap(),
        Submitted::Replayed
    );
    assert_eq!(orders(dir.path()), ["123", "789"]);
    assert_eq!((a.keys_known(), b.keys_known()), (2, 2));
    assert_eq!((a.keys_in_progress(), b.keys_in_progress()), (0, 0));
}

#[test]
fn a_store_opened_after_another_wrote_keys_replays_them_without_work() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), tiny(), IDEMPOTENT);
    a.submit(&code("123"), keyed(&key("k"))).unwrap();
    let b = open(dir.path(), with_delay(300), IDEMPOTENT);
    let started = Instant::now();
    assert_eq!(
        b.submit(&code("123"), keyed(&key("k"))).unwrap(),
        Submitted::Replayed
    );
    assert!(started.elapsed() < Duration::from_millis(200), "no work");
    assert_eq!(orders(dir.path()), ["123"]);
}

#[test]
fn another_stores_start_up_rewrite_does_not_lose_keys_written_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_ms(Duration::ZERO);
    let a = open(dir.path(), tiny(), IDEMPOTENT);
    a.submit(&code("c1"), keyed(&key("k1"))).unwrap();
    // A third process died between its record and its order line. The next store to start
    // drops that record and rewrites the journal: a new file renamed over the old one.
    let eof = std::fs::metadata(orders_path(dir.path())).unwrap().len();
    let mut journal = journal_text(dir.path());
    journal.push_str(&format!("k-dead\tc-dead\t{eof}\t{now}\n"));
    std::fs::write(journal_path(dir.path()), journal).unwrap();
    let b = open(dir.path(), tiny(), IDEMPOTENT);
    assert!(b.journal_recovery().unwrap().rewritten);

    // a keeps writing keys; they must land in the journal b (and any later store) reads.
    a.submit(&code("c2"), keyed(&key("k2"))).unwrap();
    assert_eq!(
        b.submit(&code("c2"), keyed(&key("k2"))).unwrap(),
        Submitted::Replayed
    );
    drop((a, b));
    let c = open(dir.path(), tiny(), IDEMPOTENT);
    assert_eq!(c.journal_recovery().unwrap().kept, 2);
    assert_eq!(
        c.submit(&code("c2"), keyed(&key("k2"))).unwrap(),
        Submitted::Replayed
    );
    assert_eq!(orders(dir.path()), ["c1", "c2"]);
}

#[test]
fn a_dead_writers_record_is_cut_before_an_order_can_land_at_its_offset() {
    // Another process wrote a record and died before its order line. Unless it is cut
    // off, the next order with the same code lands at the record's offset and makes it
    // look complete: a retry with that key would be "replayed" without its order.
    let dir = tempfile::tempdir().unwrap();
    let now = unix_ms(Duration::ZERO);
    let a = open(dir.path(), tiny(), IDEMPOTENT);
    let eof = std::fs::metadata(orders_path(dir.path())).unwrap().len();
    std::fs::write(
        journal_path(dir.path()),
        format!("k-dead\t123\t{eof}\t{now}\n"),
    )
    .unwrap();

    a.submit_purchase_order(&code("123")).unwrap(); // an unrelated order, same code
    assert_eq!(
        journal_text(dir.path()),
        "",
        "the dead writer's record was cut"
    );
    let b = open(dir.path(), tiny(), IDEMPOTENT);
    assert_eq!(
        b.submit(&code("123"), keyed(&key("k-dead"))).unwrap(),
        Submitted::Written
    );
    assert_eq!(orders(dir.path()), ["123", "123"]);
}

#[test]
fn a_dead_writers_torn_record_is_cut_so_the_next_record_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), tiny(), IDEMPOTENT);
    std::fs::write(journal_path(dir.path()), "k-dead\t12").unwrap();
    a.submit(&code("c1"), keyed(&key("k1"))).unwrap();
    assert!(journal_text(dir.path()).starts_with("k1\tc1\t0\t"));
    drop(a);
    let recovery = open(dir.path(), tiny(), IDEMPOTENT)
        .journal_recovery()
        .unwrap();
    assert_eq!(
        (recovery.kept, recovery.torn, recovery.rewritten),
        (1, 0, false)
    );
}
