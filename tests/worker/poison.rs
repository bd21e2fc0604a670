//! Messages the client library cannot parse (a `message_id` that is not UTF-8, which
//! RabbitMQ accepts and confirms): lapin drops the connection on them, so the worker
//! never sees them as deliveries. Reliable: the quorum queue counts each of those
//! deliveries and dead-letters the message past its delivery limit; every valid order
//! behind it is written once. Faithful: the message was auto-acknowledged and is gone —
//! counted as lost, and the orders behind it still written. And bodies: one larger than any
//! order is dead-lettered unread; one past the lab broker's limit is refused at the door.

use std::time::{Duration, Instant};

use crate::common::TINY_WORKLOAD;
use crate::foreign::publish_with_raw_message_id;
use crate::support::*;
use wire_contract::amqp::{DEAD_LETTER_QUEUE, Delivery, QUEUE};

const POISON_BODY: &[u8] = b"poison";

/// Publishes `before` valid orders, the unreadable message, then `after` valid orders.
fn publish_around_poison(turn: &mut Turn, delivery: Delivery) -> Vec<Message> {
    let port = turn.broker().amqp_addr().port();
    let before: Vec<Message> = (0..3).map(|_| Message::order()).collect();
    let after: Vec<Message> = (0..3).map(|_| Message::order()).collect();
    publish(&turn.url, delivery, &before);
    publish_with_raw_message_id(port, b"\xff\xfe", POISON_BODY);
    publish(&turn.url, delivery, &after);
    before.into_iter().chain(after).collect()
}

#[test]
fn an_unreadable_message_is_dead_lettered_and_the_orders_behind_it_are_written() {
    let Some(mut turn) = broker_turn() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let reliable = args(&["--delivery", "reliable", "--prefetch", "4"]);
    publish(&turn.url, Delivery::Reliable, &[]);
    let messages = publish_around_poison(&mut turn, Delivery::Reliable);
    assert_eq!(ready_in(&turn.url, QUEUE), 7);

    let mut worker = WorkerProcess::spawn(&turn.url, &orders, &reliable);
    wait_for_lines(&orders, messages.len());
    assert_each_once(&orders, &messages.iter().collect::<Vec<_>>());
    wait_until("the worker consumes again (/health ok)", || {
        (worker.health().0 == 200).then_some(())
    });
    // lapin cannot read the message back either; the broker's count says it is there.
    wait_until("the message is in the dead-letter queue", || {
        (ready_in(&turn.url, DEAD_LETTER_QUEUE) == 1).then_some(())
    });
    assert_eq!(ready_in(&turn.url, QUEUE), 0);
    assert!(worker.metric("unreadable_deliveries_total") >= 1);
    let log = worker.log();
    assert!(log.contains("cannot parse"), "{log}");
    // The backoff grew while the same message kept taking the connection down.
    let pauses: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("retry_in_ms=").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(pauses.iter().any(|&p| p >= 1_000), "{pauses:?}\n{log}");

    worker.signal(libc::SIGTERM);
    let asked = Instant::now();
    assert!(worker.wait_exit().success(), "{}", worker.log());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn a_faithful_worker_counts_an_unreadable_message_as_lost_and_carries_on() {
    let Some(mut turn) = broker_turn() else {
        return;
    };
    let port = turn.broker().amqp_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let worker = WorkerProcess::spawn(&turn.url, &orders, &TINY_WORKLOAD);
    worker.wait_consuming();
    // One at a time: a faithful session that dies loses whatever the broker had already
    // pushed to it (auto-ack), so the valid orders go before and after, not alongside.
    let before = Message::order();
    publish(&turn.url, Delivery::Faithful, std::slice::from_ref(&before));
    wait_for_lines(&orders, 1);
    publish_with_raw_message_id(port, b"\xff\xfe", POISON_BODY);
    wait_until("the loss is counted", || {
        (worker.metric("messages_lost_total") >= 1).then_some(())
    });
    assert_eq!(worker.metric("unreadable_deliveries_total"), 1);
    worker.wait_consuming();
    let after = Message::order();
    publish(&turn.url, Delivery::Faithful, std::slice::from_ref(&after));
    wait_for_lines(&orders, 2);
    assert_each_once(&orders, &[&before, &after]);
    assert_eq!(ready_in(&turn.url, QUEUE), 0);
}

#[test]
fn a_body_larger_than_any_order_is_dead_lettered_and_the_broker_refuses_a_huge_one() {
    let Some(turn) = broker_turn() else { return };
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let worker = WorkerProcess::spawn(&turn.url, &orders, &args(&["--delivery", "reliable"]));
    worker.wait_consuming();
    // One byte past what the worker reads: refused unread and dead-lettered.
    let big = vec![b'7'; 4097];
    let (before, after) = (Message::order(), Message::order());
    let messages = [
        Message::raw(&before.body, before.message_id.as_deref()),
        Message::raw(&big, Some("too-big")),
        Message::raw(&after.body, after.message_id.as_deref()),
    ];
    publish(&turn.url, Delivery::Reliable, &messages);
    wait_until("one dead-lettered and two written", || {
        (worker.metric("messages_rejected_total") == 1
            && worker.metric("messages_acked_total") == 2)
            .then_some(())
    });
    assert_each_once(&orders, &[&before, &after]);
    assert_eq!(take_all(&turn.url, DEAD_LETTER_QUEUE), vec![big]);
    let log = worker.log();
    assert!(log.contains("body too large"), "{log}");

    // The lab's broker itself refuses what nobody should queue at all.
    let huge = vec![b'7'; loadtest::broker::MAX_MESSAGE_SIZE_BYTES as usize + 1];
    let refused = block_on(async {
        let (connection, channel) = open(&turn.url).await;
        channel
            .confirm_select(Default::default())
            .await
            .expect("publisher confirms");
        let outcome = match channel
            .basic_publish(
                "".into(),
                QUEUE.into(),
                Default::default(),
                &huge,
                Default::default(),
            )
            .await
        {
            Ok(confirm) => confirm.await.map(|c| c.is_ack()),
            Err(error) => Err(error),
        };
        let _ = connection.close(200, "test".into()).await;
        outcome
    });
    assert!(!matches!(refused, Ok(true)), "{refused:?}");
    assert_eq!(ready_in(&turn.url, QUEUE), 0);
    assert_eq!(worker.metric("messages_acked_total"), 2);
}
