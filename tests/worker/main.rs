//! The queue worker end to end: a real RabbitMQ (started by `loadtest::broker` as a child
//! process), the real `purchasing-worker` binary as a process, messages published with
//! raw lapin (what the original's `StockManager` sent in faithful mode; persistent, with
//! a `message_id` and publisher confirms in reliable mode), and the orders file read back
//! with the persistence crate's parser.
//!
//! One broker serves every test in this file: a start costs 4–13 s, and none of these
//! tests is about the broker's own life. The queue name is fixed, so the tests take turns
//! (a mutex) and each starts from deleted queues. The broker is stopped when the test
//! process exits (an `atexit` hook), so nothing is left: no process, no data directory.
//! Without rabbitmq-server these tests print `SKIPPED: …` and return, except under CI,
//! where they fail (`loadtest::broker::require_installed_or_skip`).
//!
//! The tests are here; the shared broker, AMQP from the test's side and the worker
//! process are in `support.rs`. `failover.rs` has two brokers of its own, one of which it
//! kills: the publisher and the worker given both URLs.

#[path = "../common/mod.rs"]
mod common;
mod failover;
mod foreign;
mod poison;
mod probes;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TINY_WORKLOAD, bin_path};
use support::*;
use wire_contract::amqp::{DEAD_LETTER_QUEUE, Delivery, QUEUE};

// ------------------------------------------------------------------ the tests

#[test]
fn faithful_round_trip_writes_each_message_once_and_loses_the_invalid_one() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let worker = WorkerProcess::spawn(&turn.url, &orders, &TINY_WORKLOAD);
    worker.wait_consuming();
    assert_eq!(worker.health().1["delivery"], "faithful");

    let mut messages: Vec<Message> = (0..200).map(|_| Message::order()).collect();
    // Faithful mode has no dead-letter queue: an invalid message was auto-acked, so it
    // is lost (and counted), and the worker carries on.
    messages.insert(
        100,
        Message::raw(b"forged\nPurchase order for item: 999", None),
    );
    publish(&turn.url, Delivery::Faithful, &messages);
    wait_for_lines(&orders, 200);
    wait_until("every message is counted", || {
        (worker.metric("messages_received_total") == 201).then_some(())
    });

    let valid: Vec<&Message> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| (i != 100).then_some(m))
        .collect();
    assert_each_once(&orders, &valid);
    assert_eq!(worker.metric("orders_written_total"), 200);
    assert_eq!(worker.metric("messages_lost_total"), 1);
    assert_eq!(worker.metric("messages_acked_total"), 0, "auto-ack");
    assert_eq!(worker.metric("prefetch"), 0, "no prefetch limit");
    let log = worker.log();
    assert!(
        log.contains(&format!("Handling message: {}", valid[0].code())),
        "{log}"
    );
    assert!(
        log.contains("it was auto-acknowledged, so it is lost"),
        "{log}"
    );
    assert_eq!(ready_in(&turn.url, QUEUE), 0);
}

#[test]
fn reliable_round_trip_acknowledges_each_message_after_writing_it() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let worker = WorkerProcess::spawn(
        &turn.url,
        &orders,
        &args(&["--delivery", "reliable", "--prefetch", "8"]),
    );
    worker.wait_consuming();

    let messages: Vec<Message> = (0..200).map(|_| Message::order()).collect();
    publish(&turn.url, Delivery::Reliable, &messages);
    wait_for_lines(&orders, 200);
    wait_until("every message is acknowledged", || {
        (worker.metric("messages_acked_total") == 200).then_some(())
    });
    assert_each_once(&orders, &messages.iter().collect::<Vec<_>>());
    assert_eq!(worker.metric("orders_written_total"), 200);
    assert_eq!(worker.metric("messages_replayed_total"), 0);
    assert_eq!(worker.metric("prefetch"), 8);
    assert_eq!(worker.metric("orders_in_flight"), 0);
    assert_eq!(ready_in(&turn.url, QUEUE), 0);
    assert_eq!(ready_in(&turn.url, DEAD_LETTER_QUEUE), 0);
    // The message ids are the keys of the journal beside the orders file.
    let journal = std::fs::read_to_string(dir.path().join("PurchaseOrders.txt.idempotency"))
        .expect("the idempotency journal");
    assert_eq!(journal.lines().count(), 200);
    assert!(journal.contains(messages[0].message_id.as_deref().unwrap()));
}

#[test]
fn a_killed_reliable_worker_loses_nothing_and_its_written_orders_are_replayed_not_rewritten() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let messages: Vec<Message> = (0..50).map(|_| Message::order()).collect();
    publish(&turn.url, Delivery::Reliable, &messages);

    // Slow orders, and each ack held back 300 ms after its line is written: at any moment
    // about half the messages in hand are written but not acknowledged.
    let mut first = WorkerProcess::spawn(
        &turn.url,
        &orders,
        &[
            "--alloc-chars",
            "1000",
            "--delay-ms",
            "200",
            "--delivery",
            "reliable",
            "--prefetch",
            "10",
            "--ack-delay-ms",
            "300",
        ],
    );
    wait_for_lines(&orders, 15);
    first.signal(libc::SIGKILL);
    first.wait_exit();
    let written_before_the_kill = lines_in(&orders);
    assert!(written_before_the_kill < 50, "the kill came too late");

    let second = WorkerProcess::spawn(
        &turn.url,
        &orders,
        &args(&["--delivery", "reliable", "--prefetch", "10"]),
    );
    wait_for_lines(&orders, 50);
    wait_until("the queue is drained", || {
        let acked = second.metric("messages_acked_total") as usize;
        (acked == 50 - written_before_the_kill + second.metric("messages_replayed_total") as usize
            && ready_in(&turn.url, QUEUE) == 0)
            .then_some(())
    });
    assert_each_once(&orders, &messages.iter().collect::<Vec<_>>());
    let replayed = second.metric("messages_replayed_total");
    let redelivered = second.metric("messages_redelivered_total");
    assert_eq!(
        second.metric("orders_written_total") as usize,
        50 - written_before_the_kill,
        "the second worker wrote exactly the orders the first had not"
    );
    // The messages written but not acknowledged when the first worker died came back
    // (redelivered) and were replayed from the journal instead of written again.
    assert!(
        replayed >= 1 && replayed as usize <= written_before_the_kill,
        "replayed {replayed} of {written_before_the_kill} written before the kill"
    );
    assert!(redelivered >= replayed, "{redelivered} < {replayed}");
    let log = second.log();
    assert!(log.contains("(already written: replayed)"), "{log}");
}

#[test]
fn poison_messages_are_dead_lettered_and_the_worker_keeps_consuming() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let worker = WorkerProcess::spawn(&turn.url, &orders, &args(&["--delivery", "reliable"]));
    worker.wait_consuming();

    let (good_1, good_2) = (Message::order(), Message::order());
    let forged = b"123\nPurchase order for item: 999".as_slice();
    let not_utf8 = b"\xff\xfe item".as_slice();
    let messages = [
        Message::raw(&good_1.body, good_1.message_id.as_deref()),
        Message::raw(forged, Some("poison-1")),
        Message::raw(not_utf8, Some("poison-2")),
        Message::raw(b"456", Some("not a visible-ASCII key")),
        Message::raw(&good_2.body, good_2.message_id.as_deref()),
    ];
    publish(&turn.url, Delivery::Reliable, &messages);
    wait_until("three are dead-lettered and two written", || {
        (worker.metric("messages_rejected_total") == 3
            && worker.metric("messages_acked_total") == 2)
            .then_some(())
    });
    assert_each_once(&orders, &[&good_1, &good_2]);
    assert_eq!(ready_in(&turn.url, QUEUE), 0, "nothing requeued for ever");
    let mut dead = take_all(&turn.url, DEAD_LETTER_QUEUE);
    dead.sort();
    let mut want = vec![forged.to_vec(), not_utf8.to_vec(), b"456".to_vec()];
    want.sort();
    assert_eq!(dead, want);
    assert_eq!(worker.health().0, 200, "still consuming");

    // And it keeps consuming.
    let after = Message::order();
    publish(&turn.url, Delivery::Reliable, std::slice::from_ref(&after));
    wait_for_lines(&orders, 3);
    assert_each_once(&orders, &[&good_1, &good_2, &after]);
    let log = worker.log();
    assert!(log.contains("dead-letters it to"), "{log}");
}

#[test]
fn a_copy_of_a_message_in_progress_is_requeued_then_replayed() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let worker = WorkerProcess::spawn(
        &turn.url,
        &orders,
        &[
            "--alloc-chars",
            "1000",
            "--delay-ms",
            "300",
            "--delivery",
            "reliable",
            "--prefetch",
            "4",
        ],
    );
    worker.wait_consuming();
    // A publisher's retry of the same order (same message id), delivered while the
    // first copy is being written: the store answers "in progress", a failure that
    // passes, so the copy goes back to the queue after a pause and is replayed then.
    let order = Message::order();
    let copy = Message::raw(&order.body, order.message_id.as_deref());
    publish(&turn.url, Delivery::Reliable, &[order, copy]);
    wait_until("both copies are acknowledged", || {
        (worker.metric("messages_acked_total") == 2).then_some(())
    });
    assert_eq!(lines_in(&orders), 1);
    assert_eq!(worker.metric("orders_written_total"), 1);
    assert_eq!(worker.metric("messages_replayed_total"), 1);
    assert_eq!(worker.metric("messages_requeued_total"), 1);
    assert_eq!(worker.metric("messages_redelivered_total"), 1);
    let log = worker.log();
    assert!(
        log.contains("requeueing the message after a pause"),
        "{log}"
    );
}

#[test]
fn sigterm_finishes_the_orders_in_hand_acknowledges_them_and_exits_0() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let messages: Vec<Message> = (0..20).map(|_| Message::order()).collect();
    publish(&turn.url, Delivery::Reliable, &messages);
    let mut worker = WorkerProcess::spawn(
        &turn.url,
        &orders,
        &[
            "--alloc-chars",
            "1000",
            "--delay-ms",
            "500",
            "--delivery",
            "reliable",
            "--prefetch",
            "5",
        ],
    );
    wait_until("five orders are in hand", || {
        (worker.metric("orders_in_flight") == 5).then_some(())
    });
    let started = Instant::now();
    worker.signal(libc::SIGTERM);
    let status = worker.wait_exit();
    assert!(status.success(), "{status:?}; log:\n{}", worker.log());
    assert!(started.elapsed() < Duration::from_secs(10));

    // The orders in hand were finished and acknowledged: exactly the written ones left
    // the queue, everything else is still in it for the next consumer.
    let written = lines_in(&orders);
    assert!(written >= 5, "only {written} orders were finished");
    assert_eq!(ready_in(&turn.url, QUEUE) as usize, 20 - written);
    let codes: Vec<String> = messages.iter().map(Message::code).collect();
    let counts = order_counts(&orders);
    assert!(
        counts
            .iter()
            .all(|(code, &n)| n == 1 && codes.contains(code)),
        "{counts:?}"
    );
    let log = worker.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("finishing the orders in hand"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn faithful_sigterm_finishes_the_order_in_progress_and_loses_what_was_pushed_as_the_original() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let mut worker = WorkerProcess::spawn(
        &turn.url,
        &orders,
        &["--alloc-chars", "1000", "--delay-ms", "300"],
    );
    worker.wait_consuming();
    let messages: Vec<Message> = (0..20).map(|_| Message::order()).collect();
    publish(&turn.url, Delivery::Faithful, &messages);
    wait_until("the first order is in progress", || {
        (worker.metric("orders_in_flight") == 1).then_some(())
    });
    worker.signal(libc::SIGTERM);
    let status = worker.wait_exit();
    assert!(status.success(), "{status:?}; log:\n{}", worker.log());

    // No prefetch limit: the broker pushed all 20 at once and forgot them (auto-ack).
    // The order in progress was finished; the rest were lost, as the original lost them.
    let written = lines_in(&orders);
    assert!(written >= 1, "the order in progress was not finished");
    assert_eq!(ready_in(&turn.url, QUEUE), 0, "all 20 had been pushed");
    let log = worker.log();
    let lost = 20 - written;
    if lost > 0 {
        assert!(log.contains(&format!("lost={lost}")), "{log}");
        assert!(log.contains("as in the original handler"), "{log}");
    }
}

#[test]
fn the_worker_reconnects_after_a_broker_restart_and_writes_nothing_twice() {
    let Some(mut turn) = broker_turn() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let messages: Vec<Message> = (0..40).map(|_| Message::order()).collect();
    publish(&turn.url, Delivery::Reliable, &messages);
    let worker = WorkerProcess::spawn(
        &turn.url,
        &orders,
        &[
            "--alloc-chars",
            "1000",
            "--delay-ms",
            "200",
            "--delivery",
            "reliable",
            "--prefetch",
            "5",
        ],
    );
    wait_for_lines(&orders, 5);

    // Restart the broker (durable queue, persistent messages: they survive) while the
    // worker has orders in hand, and watch /health while it is gone.
    let mut seen_down = None;
    std::thread::scope(|scope| {
        let broker = turn.broker();
        let restarting = scope.spawn(move || broker.restart());
        while !restarting.is_finished() {
            let (code, health) = worker.health();
            if code == 503 && seen_down.is_none() {
                seen_down = Some(health);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        restarting.join().unwrap().expect("restart the broker");
    });
    let seen_down = seen_down.expect("/health answered 503 while the broker was down");
    assert_eq!(seen_down["status"], "reconnecting", "{seen_down}");
    assert!(seen_down["reason"].is_string(), "{seen_down}");

    worker.wait_consuming();
    wait_for_lines(&orders, 40);
    wait_until("the queue is drained", || {
        (ready_in(&turn.url, QUEUE) == 0 && worker.metric("orders_in_flight") == 0).then_some(())
    });
    assert_each_once(&orders, &messages.iter().collect::<Vec<_>>());
    assert!(worker.metric("connections_lost_total") >= 1);
    assert_eq!(worker.metric("connected"), 1);
    let log = worker.log();
    assert!(
        log.contains("lost the broker connection; retrying"),
        "{log}"
    );
    // The orders in hand at the restart were written, their acks could not be sent, and
    // their redeliveries were replayed from the journal.
    let replayed = worker.metric("messages_replayed_total");
    assert!(replayed >= 1, "replayed {replayed}; log:\n{log}");
    assert_eq!(
        worker.metric("orders_written_total"),
        40,
        "each order written once"
    );
}

#[test]
fn two_workers_on_one_queue_and_one_file_write_every_message_once() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let reliable = args(&["--delivery", "reliable", "--prefetch", "4"]);
    let one = WorkerProcess::spawn(&turn.url, &orders, &reliable);
    let two = WorkerProcess::spawn(&turn.url, &orders, &reliable);
    one.wait_consuming();
    two.wait_consuming();

    let messages: Vec<Message> = (0..300).map(|_| Message::order()).collect();
    // A publisher's retries: the same message (same id) published again.
    let retries: Vec<Message> = messages[..30]
        .iter()
        .map(|m| Message::raw(&m.body, m.message_id.as_deref()))
        .collect();
    let mut all: Vec<Message> = messages
        .iter()
        .map(|m| Message::raw(&m.body, m.message_id.as_deref()))
        .collect();
    all.extend(retries);
    publish(&turn.url, Delivery::Reliable, &all);
    wait_until("all 330 messages are acknowledged", || {
        (one.metric("messages_acked_total") + two.metric("messages_acked_total") == 330)
            .then_some(())
    });
    assert_each_once(&orders, &messages.iter().collect::<Vec<_>>());
    let (received_1, received_2) = (
        one.metric("messages_received_total"),
        two.metric("messages_received_total"),
    );
    assert!(
        received_1 > 0 && received_2 > 0,
        "competing consumers share the queue: {received_1} / {received_2}"
    );
    assert_eq!(
        one.metric("messages_replayed_total") + two.metric("messages_replayed_total"),
        30,
        "each retry replayed, whichever worker had the first copy"
    );
}

#[test]
fn a_queue_declared_for_the_other_mode_stops_the_worker_with_what_to_do() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    publish(&turn.url, Delivery::Reliable, &[]);
    let mut worker = WorkerProcess::spawn(&turn.url, &orders, &TINY_WORKLOAD);
    let status = worker.wait_exit();
    assert_eq!(status.code(), Some(1));
    let log = worker.log();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("purchasing-worker: error: the broker already has the queue")
            && last.contains("delete_queue"),
        "{log}"
    );
}

// ------------------------------------------------------------------ without a broker

#[test]
fn a_worker_without_its_broker_keeps_trying_and_says_so() {
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let dir = tempfile::tempdir().unwrap();
    let mut worker =
        WorkerProcess::spawn(&url, &dir.path().join("PurchaseOrders.txt"), &TINY_WORKLOAD);
    let health = wait_until("the worker has tried twice", || {
        let (code, health) = worker.health();
        assert_eq!(code, 503, "{health}");
        (worker.log().matches("cannot reach the broker").count() >= 2).then_some(health)
    });
    assert_eq!(health["status"], "connecting", "{health}");
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{health}"
    );
    assert_eq!(worker.metric("connected"), 0);
    let log = worker.log();
    assert!(
        !log.contains("secret") && log.contains("retry_in_ms"),
        "{log}"
    );
    worker.signal(libc::SIGTERM);
    assert!(worker.wait_exit().success());
}

#[test]
fn start_up_failures_are_one_line_and_status_1() {
    let worker = bin_path("purchasing-worker");
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let orders = orders.to_str().unwrap();
    for (args, says) in [
        (
            &["--orders-file", "/nonexistent-dir/o.txt"][..],
            "cannot open for append /nonexistent-dir/o.txt",
        ),
        (
            &["--orders-file", "/dev/null"],
            "it is a character device, not a regular file",
        ),
        (
            &["--orders-file", orders, "--prefetch", "4"],
            "--prefetch needs --delivery reliable",
        ),
        (
            &[
                "--orders-file",
                orders,
                "--delivery",
                "reliable",
                "--alloc-chars",
                "100000000000000000",
            ],
            "not one order fits in memory",
        ),
    ] {
        let output = Command::new(&worker)
            .args(["--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run purchasing-worker");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
        assert!(
            last.starts_with("purchasing-worker: error: ") && last.contains(says),
            "{args:?}: {stderr}"
        );
    }
    // Values clap refuses: its own one-line error and status 2.
    let output = Command::new(&worker)
        .args(["--prefetch", "0"])
        .output()
        .expect("run purchasing-worker");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("from 1 to 1024"),
        "{output:?}"
    );
}
