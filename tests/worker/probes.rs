//! The worker's `/health` and `/metrics` listener cannot starve its work: 1030 idle
//! connections under an open-files limit of 1024 (the reproduction: every order
//! failed with "Too many open files", `/health` timed out) — the listener's cap keeps
//! descriptors for the orders file and the broker, every order is written once, and
//! `/health` answers once the header timeout has closed the silent connections.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;
use wire_contract::amqp::{Delivery, QUEUE};

const IDLE_CONNECTIONS: usize = 1030;
const OPEN_FILES: u64 = 1024;

/// Sets `pid`'s open-files limit, soft and hard (prlimit(2); `prlimit --pid` by hand).
fn limit_open_files(pid: u32, files: u64) {
    let limit = libc::rlimit {
        rlim_cur: files,
        rlim_max: files,
    };
    // SAFETY: prlimit(2) on our own child, with a valid new limit and no old-limit pointer.
    let rc = unsafe {
        libc::prlimit(
            pid as i32,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// This test process needs more than 1024 descriptors itself: soft limit up to the hard.
fn raise_own_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur as usize > IDLE_CONNECTIONS + 64,
        "this test needs an open-files hard limit above {}",
        IDLE_CONNECTIONS + 64
    );
}

#[test]
fn idle_connections_to_the_probe_port_neither_fail_orders_nor_silence_health_for_good() {
    let Some(turn) = broker_turn() else { return };
    raise_own_open_files();
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let worker = WorkerProcess::spawn(&turn.url, &orders, &args(&["--delivery", "reliable"]));
    worker.wait_consuming();
    limit_open_files(worker.child.id(), OPEN_FILES);

    // Silent clients: connected, never a byte sent. Past the listener's cap they wait in
    // the kernel's accept queue, costing the worker nothing.
    let idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS)
        .map(|i| {
            TcpStream::connect_timeout(&worker.addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    let messages: Vec<Message> = (0..20).map(|_| Message::order()).collect();
    publish(&turn.url, Delivery::Reliable, &messages);
    wait_for_lines(&orders, messages.len());
    assert_each_once(&orders, &messages.iter().collect::<Vec<_>>());

    // The header timeout closes silent connections a round at a time; a probe gets its
    // turn within a few rounds, while the idle ones are still held open by this side.
    let asked = Instant::now();
    wait_until(
        "/health answers while the idle connections are held",
        || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.health().0))
                .ok()
                .filter(|&code| code == 200)
        },
    );
    let waited = asked.elapsed();
    drop(idle);
    assert_eq!(worker.metric("messages_acked_total"), messages.len() as u64);
    assert_eq!(worker.metric("messages_requeued_total"), 0);
    assert_eq!(ready_in(&turn.url, QUEUE), 0);
    let log = worker.log();
    assert!(!log.contains("Too many open files"), "{log}");
    eprintln!("/health answered {waited:?} after the flood began");
}
