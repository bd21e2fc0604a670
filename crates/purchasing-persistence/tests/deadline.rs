//! Deadlines: an order whose client has given up is never written (no ghost orders).

mod common;

use std::time::{Duration, Instant};

use common::*;
use purchasing_persistence::{StoreError, StoreOptions, SubmitOptions, Submitted, Workload};

#[test]
fn a_spent_deadline_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    // Work that would fail to allocate and then sleep for 2 s: a DeadlineExceeded that
    // comes back at once proves neither was attempted.
    let workload = Workload {
        alloc_chars: usize::MAX,
        delay: Duration::from_secs(2),
        release_early: false,
    };
    let store = open(dir.path(), workload, IDEMPOTENT);
    let k = key("k-spent");
    let started = Instant::now();
    let err = store
        .submit(
            &code("123"),
            SubmitOptions {
                deadline: Some(Instant::now()),
                key: Some(&k),
            },
        )
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(err, StoreError::DeadlineExceeded { stage } if stage == StoreError::DEADLINE_BEFORE_WORK),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the deadline passed before the work started; the order was not written"
    );
    assert!(orders(dir.path()).is_empty());
    assert_eq!(
        store.keys_known(),
        0,
        "a refused request must not hold its key"
    );
    assert_eq!(journal_text(dir.path()), "");
}

#[test]
fn a_deadline_passing_during_the_work_writes_nothing_and_frees_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), with_delay(200), IDEMPOTENT);
    let k = key("k-late");
    let started = Instant::now();
    let err = store
        .submit(
            &code("123"),
            SubmitOptions {
                deadline: Some(Instant::now() + Duration::from_millis(50)),
                key: Some(&k),
            },
        )
        .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the work was done"
    );
    assert!(
        matches!(err, StoreError::DeadlineExceeded { stage } if stage == StoreError::DEADLINE_BEFORE_WRITE),
        "{err:?}"
    );
    assert!(orders(dir.path()).is_empty());
    assert_eq!(
        journal_text(dir.path()),
        "",
        "no journal record for an unwritten order"
    );

    // The client's retry (with a fresh budget) does the work, exactly once.
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Written
    );
    assert_eq!(
        store.submit(&code("123"), keyed(&k)).unwrap(),
        Submitted::Replayed
    );
    assert_eq!(orders(dir.path()), ["123"]);
}

#[test]
fn a_deadline_with_time_left_is_met() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), tiny(), StoreOptions::default());
    let outcome = store
        .submit(
            &code("123"),
            SubmitOptions {
                deadline: Some(Instant::now() + Duration::from_secs(10)),
                key: None,
            },
        )
        .unwrap();
    assert_eq!(outcome, Submitted::Written);
    assert_eq!(orders(dir.path()), ["123"]);
}
