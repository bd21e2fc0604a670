//! Two brokers, one dies mid-run: the publisher (`inventory::StockManager`, reliable) and
//! the worker (the real `purchasing-worker` process), each given both URLs "A,B", fail
//! over to B — and no order is lost or written twice.
//!
//! Two independent brokers, not a cluster: what A confirmed but nobody consumed stays on
//! A's disk until A is back. So the test brings A back and then kills B, and the worker,
//! going round its list, drains A too. What it proves, each against the orders file:
//!
//! * the publisher's calls that were waiting for A's confirm when A died are published
//!   again on B (A is paused first, so those calls exist for certain) and confirmed there
//!   — none fails, none is reported twice;
//! * every order the publisher reported confirmed is written exactly once, whichever
//!   broker took it, and nothing else is written;
//! * the worker follows: A, then B, then A again (its `/health` names the node), and
//!   what A redelivers after its restart — orders written whose acks A never read — goes
//!   through the idempotency journal (replayed), not into the file a second time.
//!
//! And a faithful worker whose broker dies while it holds a backlog moves to the other at
//! once, and still writes the backlog it owned.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use inventory::{AmqpUrls, DeliveryMode, StockManager};
use loadtest::broker::{Broker, BrokerOptions, require_installed_or_skip};
use wire_contract::amqp::{Delivery, QUEUE};

use crate::support::*;

/// Publishers at once: each has a call waiting for its confirm whenever the broker is
/// paused, so that many messages are unconfirmed when it dies.
const PUBLISHERS: usize = 4;
/// Most orders one publisher sends, whatever the timing: the run is bounded.
const MAX_PER_PUBLISHER: usize = 400;
/// Between one publisher's orders: about 4 × 80 a second, below the worker's pace.
const PACE: Duration = Duration::from_millis(10);
/// The worker holds each ack this long after writing the order, so that when A is
/// paused it has written orders whose acks A never reads: A redelivers them later.
const ACK_DELAY_MS: &str = "100";

/// One call of one publisher.
struct Outcome {
    code: String,
    confirmed: bool,
    republished: u32,
    error: Option<String>,
}

/// Publishes fresh codes one after another until `stop` (or the cap).
async fn publish_until(manager: StockManager, task: usize, stop: Arc<AtomicBool>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for seq in 0..MAX_PER_PUBLISHER {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let code = format!("failover-{task}-{seq:04}");
        let delivery = manager.replenish(&code, &inventory::new_request_id()).await;
        outcomes.push(Outcome {
            code,
            confirmed: delivery.result.is_ok(),
            republished: delivery.republished,
            error: delivery.result.err().map(|e| e.to_string()),
        });
        tokio::time::sleep(PACE).await;
    }
    outcomes
}

/// Both brokers, started side by side (each takes 4–13 s).
fn start_two() -> (Broker, Broker) {
    let start = || Broker::start(BrokerOptions::default()).expect("start a broker");
    std::thread::scope(|s| {
        let a = s.spawn(start);
        let b = s.spawn(start);
        (a.join().expect("broker A"), b.join().expect("broker B"))
    })
}

/// Waits until the worker consumes from `url` (as `/health` names it).
fn wait_consuming_from(worker: &WorkerProcess, url: &str) {
    let shown = amqp_link::redact(url);
    wait_until(&format!("the worker consumes from {shown}"), || {
        let (code, health) = worker.health();
        (code == 200 && health["broker"] == shown.as_str()).then_some(())
    });
}

#[test]
fn given_two_brokers_the_publisher_and_the_worker_survive_the_death_of_one() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let (mut a, mut b) = start_two();
    let (a_url, b_url) = (a.amqp_url(), b.amqp_url());
    let both = format!("{a_url},{b_url}");
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let worker = WorkerProcess::spawn(
        &both,
        &orders,
        &args(&[
            "--delivery",
            "reliable",
            "--prefetch",
            "50",
            "--ack-delay-ms",
            ACK_DELAY_MS,
        ]),
    );
    wait_consuming_from(&worker, &a_url);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let manager =
        StockManager::amqp_builder(AmqpUrls::parse(&both).unwrap(), DeliveryMode::Reliable)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
    runtime.block_on(manager.connect()).expect("connect to A");
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|task| runtime.spawn(publish_until(manager.clone(), task, Arc::clone(&stop))))
        .collect();

    // Orders flow through A; then A stops answering (its VM frozen, the publishers'
    // current calls wait for their confirms) and dies with them unconfirmed.
    std::thread::sleep(Duration::from_secs(1));
    let vm = a.pid().expect("A's VM") as i32;
    // SAFETY: kill(2) on the broker VM this test started; it is SIGKILLed right after.
    assert_eq!(unsafe { libc::kill(vm, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    a.kill().expect("kill A");
    // A comes back on its own data while the load goes on at B.
    let restarting = std::thread::spawn(move || a.restart().map(|()| a));
    wait_consuming_from(&worker, &b_url);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = runtime.block_on(async {
        let mut all = Vec::new();
        for publisher in publishers {
            all.extend(publisher.await.expect("a publisher task"));
        }
        all
    });
    let a = restarting.join().unwrap().expect("restart A");

    // B drained (everything it holds is in the worker's hands, so it gets written), then B
    // dies too: the worker goes round to A and takes what A kept.
    wait_until("B's queue is drained", || {
        (ready_in(&b_url, QUEUE) == 0).then_some(())
    });
    b.kill().expect("kill B");
    wait_consuming_from(&worker, &a_url);
    let confirmed: BTreeSet<&str> = outcomes
        .iter()
        .filter(|o| o.confirmed)
        .map(|o| o.code.as_str())
        .collect();
    wait_until("every confirmed order is written", || {
        let written = order_counts(&orders);
        confirmed
            .iter()
            .all(|code| written.contains_key(*code))
            .then_some(())
    });
    wait_until("A's queue is drained", || {
        (ready_in(&a_url, QUEUE) == 0 && worker.metric("orders_in_flight") == 0).then_some(())
    });

    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.error.as_deref()).collect();
    assert!(
        failed.is_empty(),
        "{} calls failed: {failed:?}",
        failed.len()
    );
    let republished: Vec<u32> = outcomes
        .iter()
        .map(|o| o.republished)
        .filter(|&n| n > 0)
        .collect();
    assert!(
        !republished.is_empty() && republished.iter().all(|&n| n == 1),
        "the calls waiting on A are republished once each on B: {republished:?}"
    );
    let written = order_counts(&orders);
    let twice: Vec<_> = written.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "written twice: {twice:?}");
    let published: BTreeSet<&str> = outcomes.iter().map(|o| o.code.as_str()).collect();
    let stray: Vec<_> = written
        .keys()
        .filter(|c| !published.contains(c.as_str()))
        .collect();
    assert!(stray.is_empty(), "never published: {stray:?}");
    assert_eq!(
        written.len(),
        confirmed.len(),
        "every confirmed order, once"
    );
    assert!(
        worker.metric("messages_replayed_total") > 0,
        "A redelivered orders already written, and the journal replayed them; log:\n{}",
        worker.log()
    );
    eprintln!(
        "failover: {} orders confirmed, {} republished after A died, {} replayed",
        confirmed.len(),
        republished.len(),
        worker.metric("messages_replayed_total")
    );
    drop((a, b));
}

/// Orders a faithful worker has in hand when its broker dies: the broker pushed them all at
/// once (no prefetch limit) and forgot them (auto-ack).
const FAITHFUL_BACKLOG: usize = 40;

/// Faithful: A pushes a backlog to the worker, then dies. The backlog is the worker's own
/// (auto-acknowledged), so it must still be written — and the worker must consume on B at
/// once, not only after working through it one order at a time (40 × 200 ms here; with
/// the faithful workload, minutes in which what is published to B waits for nobody).
#[test]
fn a_faithful_worker_moves_to_the_next_broker_at_once_and_still_writes_its_backlog() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let (mut a, b) = start_two();
    let (a_url, b_url) = (a.amqp_url(), b.amqp_url());
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let slow = [
        "--alloc-chars",
        "1000",
        "--delay-ms",
        "200",
        "--delivery",
        "faithful",
    ];
    let worker = WorkerProcess::spawn(&format!("{a_url},{b_url}"), &orders, &slow);
    wait_consuming_from(&worker, &a_url);

    let backlog: Vec<Message> = (0..FAITHFUL_BACKLOG).map(|_| Message::order()).collect();
    publish(&a_url, Delivery::Faithful, &backlog);
    wait_until("A has pushed the whole backlog to the worker", || {
        (ready_in(&a_url, QUEUE) == 0).then_some(())
    });
    a.kill().expect("kill A");
    wait_until("the worker consumes from B", || {
        let (code, health) = worker.health();
        (code == 200 && health["broker"] == amqp_link::redact(&b_url).as_str()).then_some(())
    });
    let written_when_moved = lines_in(&orders);
    assert!(
        written_when_moved < FAITHFUL_BACKLOG / 2,
        "the worker reached B only after {written_when_moved} of its {FAITHFUL_BACKLOG} \
         orders in hand were written"
    );

    let later: Vec<Message> = (0..5).map(|_| Message::order()).collect();
    publish(&b_url, Delivery::Faithful, &later);
    wait_for_lines(&orders, FAITHFUL_BACKLOG + later.len());
    assert_each_once(&orders, &backlog.iter().chain(&later).collect::<Vec<_>>());
    drop((a, b));
}
