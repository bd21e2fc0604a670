//! Idempotency keys (IETF httpapi draft semantics) and the journal that keeps them across
//! restarts and crashes.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::*;
use purchasing_persistence::{
    IDEMPOTENCY_KEY_EXPIRY, JournalRecovery, PurchaseOrderStore, StoreError, StoreOptions,
    SubmitOptions, Submitted, Workload, format_line,
};

/// Writes orders and a journal by hand, as a crashed server would have left them.
fn leave_files(dir: &std::path::Path, orders: &str, journal: &str) {
    std::fs::write(orders_path(dir), orders).unwrap();
    std::fs::write(journal_path(dir), journal).unwrap();
}

fn line(c: &str) -> String {
    format_line(&code(c))
}

#[test]
fn a_repeat_with_the_same_key_and_code_is_replayed_without_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), with_delay(200), IDEMPOTENT);
    let k = key("0b6f8f0e-2f7a-4c55-9d59-5f0f5d0e4a11");
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Written
    );

    let started = Instant::now();
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Replayed
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "a replay does no work"
    );
    assert_eq!(orders(dir.path()), ["123"]);
    assert_eq!((store.keys_known(), store.keys_in_progress()), (1, 0));
    assert_eq!(
        journal_text(dir.path()).lines().count(),
        1,
        "one record per written order"
    );
}

#[test]
fn a_key_reused_for_another_code_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    let k = key("k");
    store.submit(&code("123"), keyed(&k)).unwrap();
    let err = store.submit(&code("456"), keyed(&k)).unwrap_err();
    match &err {
        StoreError::KeyReused { key, original_code } => {
            assert_eq!((key.as_str(), original_code.as_str()), ("k", "123"));
        }
        other => panic!("expected KeyReused, got {other:?}"),
    }
    assert_eq!(orders(dir.path()), ["123"]);
}

#[test]
fn a_duplicate_while_the_first_is_in_progress_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), with_delay(300), IDEMPOTENT));
    let start = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            std::thread::spawn(move || {
                let k = key("k-twice");
                start.wait();
                store.submit(&code("123"), keyed(&k))
            })
        })
        .collect();
    let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let written = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Submitted::Written)))
        .count();
    let in_progress = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StoreError::KeyInProgress { key }) if key == "k-twice"))
        .count();
    assert_eq!((written, in_progress), (1, 1), "{outcomes:?}");
    assert_eq!(orders(dir.path()), ["123"]);
    assert_eq!(store.keys_in_progress(), 0);
}

#[test]
fn a_failed_work_releases_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let refusing = Workload {
        alloc_chars: usize::MAX,
        ..tiny()
    };
    let store = open(dir.path(), refusing, IDEMPOTENT);
    let k = key("k");
    for _ in 0..2 {
        // The retry fails the same way, not with KeyInProgress: the key was released.
        let err = store.submit(&code("123"), keyed(&k)).unwrap_err();
        assert!(matches!(err, StoreError::Allocation { .. }), "{err:?}");
        assert_eq!((store.keys_in_progress(), store.keys_known()), (0, 0));
    }
    drop(store);
    // After a restart with memory to spare, the retry does the work once.
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Written
    );
    assert_eq!(orders(dir.path()), ["123"]);
}

#[test]
fn a_key_is_ignored_when_idempotency_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), tiny(), StoreOptions::default());
    let k = key("k");
    for _ in 0..2 {
        assert_eq!(
            store.submit(&code("123"), keyed(&k)).unwrap(),
            Submitted::Written
        );
    }
    assert_eq!(orders(dir.path()), ["123", "123"]);
    assert_eq!(store.idempotency_journal_path(), None);
    assert!(!journal_path(dir.path()).exists());
}

#[test]
fn a_completed_key_is_replayed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("k");
    {
        let store = open(dir.path(), tiny(), IDEMPOTENT);
        assert_eq!(
            store.idempotency_journal_path(),
            Some(journal_path(dir.path()).as_path())
        );
        store.submit_purchase_order(&code("unkeyed")).unwrap();
        assert_eq!(
            store.submit(&code("123"), keyed(&k)).unwrap(),
            Submitted::Written
        );
    }
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    assert_eq!(
        store.journal_recovery(),
        Some(JournalRecovery {
            kept: 1,
            ..JournalRecovery::default()
        })
    );
    assert_eq!(store.keys_known(), 1);
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Replayed
    );
    assert!(matches!(
        store.submit(&code("456"), keyed(&k)),
        Err(StoreError::KeyReused { .. })
    ));
    assert_eq!(orders(dir.path()), ["unkeyed", "123"]);
}

#[test]
fn recovery_drops_records_whose_order_never_reached_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let existing = line("1");
    let eof = existing.len();
    let now = unix_ms(Duration::ZERO);
    // k-crash: the crash hit between the journal record and the order line (offset = EOF).
    // k-past: an offset past the end. k-other: another order sits at its offset.
    leave_files(
        dir.path(),
        &existing,
        &format!("k-crash\t123\t{eof}\t{now}\nk-past\t123\t9999\t{now}\nk-other\t123\t0\t{now}\n"),
    );
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    let recovery = store.journal_recovery().unwrap();
    assert_eq!((recovery.incomplete, recovery.kept), (3, 0));
    assert!(recovery.rewritten);
    assert!(recovery.orders_file_changed, "k-past and k-other");
    assert_eq!(journal_text(dir.path()), "");
    assert_eq!(store.keys_known(), 0);

    // The client's retry does the work exactly once.
    let k = key("k-crash");
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

#[test]
fn recovery_says_when_keys_were_dropped_because_the_orders_file_changed() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_ms(Duration::ZERO);
    // Only a crash between a record and its order line: the record points at the end.
    let existing = line("1");
    leave_files(
        dir.path(),
        &existing,
        &format!("k-crash\t123\t{}\t{now}\n", existing.len()),
    );
    let recovery = open(dir.path(), tiny(), IDEMPOTENT)
        .journal_recovery()
        .unwrap();
    assert_eq!(recovery.incomplete, 1);
    assert!(!recovery.orders_file_changed, "{recovery:?}");

    // Keys recorded, then the orders file rotated away (emptied) behind the journal's
    // back: their records point past the end.
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    store.submit(&code("a"), keyed(&key("k-a"))).unwrap();
    store.submit(&code("b"), keyed(&key("k-b"))).unwrap();
    drop(store);
    std::fs::write(orders_path(dir.path()), "").unwrap();
    let recovery = open(dir.path(), tiny(), IDEMPOTENT)
        .journal_recovery()
        .unwrap();
    assert_eq!((recovery.kept, recovery.incomplete), (0, 2));
    assert!(recovery.orders_file_changed, "{recovery:?}");

    // Replaced by a file of other orders: the records point at lines that are not theirs.
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    store.submit(&code("a"), keyed(&key("k-a"))).unwrap();
    drop(store);
    std::fs::write(orders_path(dir.path()), line("zz")).unwrap();
    let recovery = open(dir.path(), tiny(), IDEMPOTENT)
        .journal_recovery()
        .unwrap();
    assert_eq!(recovery.incomplete, 1);
    assert!(recovery.orders_file_changed, "{recovery:?}");
}

#[test]
fn records_whose_code_the_stricter_rule_rejects_are_dropped_not_fatal() {
    // Written before whitespace at the ends and format characters were refused.
    let dir = tempfile::tempdir().unwrap();
    let now = unix_ms(Duration::ZERO);
    let old_line = "Purchase order for item:  padded\n";
    leave_files(
        dir.path(),
        &format!("{old_line}{}", line("ok")),
        &format!(
            "k-old\t padded\t0\t{now}\nk-ok\tok\t{}\t{now}\n",
            old_line.len()
        ),
    );
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    let recovery = store.journal_recovery().unwrap();
    assert_eq!(
        (recovery.kept, recovery.invalid_code, recovery.rewritten),
        (1, 1, true)
    );
    assert!(!journal_text(dir.path()).contains("k-old"));
    assert_eq!(
        store.submit(&code("ok"), keyed(&key("k-ok"))).unwrap(),
        Submitted::Replayed
    );
}

#[test]
fn a_dropped_record_does_not_come_back_when_its_offset_fills_up() {
    // Without the rewrite at open, the dropped record would still be in the journal, and
    // an unrelated order with the same code written at its offset would make it look
    // complete at the next restart: the key would replay an order it never wrote.
    let dir = tempfile::tempdir().unwrap();
    let now = unix_ms(Duration::ZERO);
    leave_files(dir.path(), "", &format!("k-crash\t123\t0\t{now}\n"));
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    store.submit_purchase_order(&code("123")).unwrap(); // lands at offset 0
    drop(store);

    let store = open(dir.path(), tiny(), IDEMPOTENT);
    assert_eq!(store.keys_known(), 0);
    let k = key("k-crash");
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Written
    );
    assert_eq!(orders(dir.path()), ["123", "123"]);
}

#[test]
fn a_torn_last_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_ms(Duration::ZERO);
    let complete = format!("k1\t123\t0\t{now}\n");
    leave_files(dir.path(), &line("123"), &format!("{complete}k2\t45"));
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    let recovery = store.journal_recovery().unwrap();
    assert_eq!(
        (recovery.kept, recovery.torn, recovery.rewritten),
        (1, 1, true)
    );
    assert_eq!(journal_text(dir.path()), complete);

    assert_eq!(
        store.submit(&code("45"), keyed(&key("k2"))).unwrap(),
        Submitted::Written
    );
    assert_eq!(
        store.submit(&code("123"), keyed(&key("k1"))).unwrap(),
        Submitted::Replayed
    );
    drop(store);
    // The records appended after the repair are whole lines again.
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    assert_eq!(store.journal_recovery().unwrap().kept, 2);
    assert_eq!(orders(dir.path()), ["123", "45"]);
}

#[test]
fn records_older_than_the_expiry_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let hour = Duration::from_secs(3600);
    let old = unix_ms(IDEMPOTENCY_KEY_EXPIRY + hour);
    let recent = unix_ms(IDEMPOTENCY_KEY_EXPIRY - hour);
    let at_a = line("a").len();
    leave_files(
        dir.path(),
        &format!("{}{}", line("a"), line("b")),
        &format!("k-old\ta\t0\t{old}\nk-recent\tb\t{at_a}\t{recent}\n"),
    );
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    let recovery = store.journal_recovery().unwrap();
    assert_eq!(
        (recovery.expired, recovery.kept, recovery.rewritten),
        (1, 1, true)
    );
    assert!(!journal_text(dir.path()).contains("k-old"));

    // An expired key is a new request; a recent one still replays.
    assert_eq!(
        store.submit(&code("a"), keyed(&key("k-old"))).unwrap(),
        Submitted::Written
    );
    assert_eq!(
        store.submit(&code("b"), keyed(&key("k-recent"))).unwrap(),
        Submitted::Replayed
    );
    assert_eq!(orders(dir.path()), ["a", "b", "a"]);
}

#[test]
fn a_malformed_journal_line_is_an_error_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let now = unix_ms(Duration::ZERO);
    let journal = format!(
        "k1\t1\t0\t{now}\nnot a record\nk2\t2\t{}\t{now}\n",
        line("1").len()
    );
    leave_files(dir.path(), &format!("{}{}", line("1"), line("2")), &journal);
    let err =
        PurchaseOrderStore::open_with(orders_path(dir.path()), tiny(), IDEMPOTENT).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(journal_path(dir.path()).to_str().unwrap()) && msg.contains("line 2"),
        "{msg}"
    );
    assert_eq!(
        journal_text(dir.path()),
        journal,
        "the journal is left as it was"
    );
}

#[test]
fn keyed_submits_from_many_threads_write_each_order_once() {
    const THREADS: usize = 8;
    const KEYS_PER_THREAD: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), tiny(), IDEMPOTENT));
    // Each thread submits its own 50 keys, then its neighbour's: every key is submitted
    // twice, often while its first submit is still running.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for block in [t, (t + 1) % THREADS] {
                    for i in 0..KEYS_PER_THREAD {
                        let (k, c) = (
                            key(&format!("key-{block}-{i}")),
                            code(&format!("code-{block}-{i}")),
                        );
                        let outcome = loop {
                            match store.submit(&c, keyed(&k)) {
                                Err(StoreError::KeyInProgress { .. }) => {
                                    std::thread::sleep(Duration::from_millis(1))
                                }
                                other => break other.unwrap(),
                            }
                        };
                        outcomes.push(outcome);
                    }
                }
                outcomes
            })
        })
        .collect();
    let mut counts: HashMap<Submitted, usize> = HashMap::new();
    for t in threads {
        for outcome in t.join().unwrap() {
            *counts.entry(outcome).or_default() += 1;
        }
    }
    let total = THREADS * KEYS_PER_THREAD;
    assert_eq!(counts[&Submitted::Written], total);
    assert_eq!(counts[&Submitted::Replayed], total);

    let mut got = orders(dir.path());
    assert_eq!(got.len(), total);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), total, "each code exactly once");
    drop(store);

    let store = open(dir.path(), tiny(), IDEMPOTENT);
    let recovery = store.journal_recovery().unwrap();
    assert_eq!(
        (recovery.kept, recovery.incomplete, recovery.rewritten),
        (total, 0, false)
    );
}

#[test]
fn a_spent_deadline_wins_over_a_replay() {
    // An abandoned request gets no answer that matters; it does nothing at all, not even a
    // lookup.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), tiny(), IDEMPOTENT);
    let k = key("k");
    store.submit(&code("123"), keyed(&k)).unwrap();
    let err = store
        .submit(
            &code("123"),
            SubmitOptions {
                deadline: Some(Instant::now()),
                key: Some(&k),
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DeadlineExceeded { .. }),
        "{err:?}"
    );
}
