//! The inventory side over AMQP against a real RabbitMQ (`loadtest::broker`, a child
//! process): what each delivery mode puts on the queue, read back with a plain lapin
//! client; a queue declared by the other mode; a queue deleted under the publisher; one
//! connection for many publishes (and the latency of 1000 confirmed ones); the `inventory`
//! command end to end; what it refuses and how it words it (`hardening`); and a broker that pauses, dies and comes back.
//!
//! Brokers: the queue name is fixed by the contract, so tests on one broker would see each
//! other's messages. The tests that only publish and read share one broker, started on
//! first use, and take turns (`Shared::lock`), each deleting both queues first; it is
//! stopped when the test process exits. The fault test pauses, kills and restarts its
//! broker, which no other test could tolerate, so it has one of its own. Without
//! rabbitmq-server the broker tests print "SKIPPED: …" and return, except under CI (`CI`
//! set), where they fail (`loadtest::broker::require_installed_or_skip`).

// Its `unsafe` calls into libc (atexit, kill) each say why they are sound.
#![warn(clippy::undocumented_unsafe_blocks)]

mod common;
// The helpers live beside this file, in a directory cargo does not take for a test of its
// own; `#[path]` keeps this file where the docs point.
#[path = "inventory_amqp/broker.rs"]
mod broker;
#[path = "inventory_amqp/hardening.rs"]
mod hardening;
#[path = "inventory_amqp/raw.rs"]
mod raw;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use inventory::{AmqpUrl, DeliveryMode, ReplenishmentError, RetryPolicy, StockManager};
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use loadtest::broker::{Broker, BrokerOptions, require_installed_or_skip};

use broker::{Shared, TEST_LIMIT, run};
use raw::{
    DEAD_LETTER_QUEUE, QUEUE, declare, delete_queues, depth, get, log_fence,
    publisher_connections_between, quorum_arguments, raw, reliable_arguments, text,
};

fn manager(url: &str, mode: DeliveryMode) -> StockManager {
    StockManager::amqp_builder(AmqpUrl::parse(url).expect("the broker's URL"), mode)
        .build()
        .expect("an AMQP manager")
}

/// A reliable manager with the original's connection per call, closed after it.
fn per_call_manager(url: &str) -> StockManager {
    StockManager::amqp_builder(
        AmqpUrl::parse(url).expect("the broker's URL"),
        DeliveryMode::Reliable,
    )
    .new_connection_per_request(true)
    .build()
    .expect("an AMQP manager")
}

fn fresh_code() -> String {
    uuid::Uuid::new_v4().to_string()
}

// ---------------------------------------------------------------------------------------
// What each mode puts on the queue

#[test]
fn faithful_publishes_the_bare_code_to_a_transient_queue_as_the_original() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    run(async {
        let code = fresh_code();
        let delivery = manager(&shared.url, DeliveryMode::Faithful)
            .replenish(&code, "req-faithful")
            .await;
        assert!(delivery.result.is_ok(), "{:?}", delivery.result);
        assert_eq!(
            delivery.idempotency_key, None,
            "a faithful message has no id"
        );

        // A plain consumer, as the original's QueueHandler.
        let (connection, channel) = raw(&shared.url).await;
        let mut consumer = channel
            .basic_consume(
                QUEUE.into(),
                "test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let message = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a message within 10 s")
            .expect("the stream is open")
            .expect("a delivery");
        assert_eq!(message.data, code.as_bytes(), "the body is the code, UTF-8");
        assert_eq!(message.exchange.as_str(), "", "the default exchange");
        assert_eq!(message.routing_key.as_str(), QUEUE);
        assert_eq!(
            message.properties,
            BasicProperties::default(),
            "no properties at all: transient, no id, no content type"
        );
        message.ack(BasicAckOptions::default()).await.expect("ack");
        let _ = connection.close(200, "test".into()).await;

        // The queue is the original's: not durable, no arguments. Declaring it so succeeds;
        // declaring it durable is refused as inequivalent.
        declare(&shared.url, QUEUE, false, FieldTable::default())
            .await
            .expect("the faithful declaration is equivalent");
        let durable = declare(&shared.url, QUEUE, true, FieldTable::default())
            .await
            .expect_err("a durable declaration is not");
        assert!(
            durable.contains("406") || durable.contains("PRECONDITION"),
            "{durable}"
        );
    });
}

#[test]
fn reliable_publishes_persistent_identified_messages_to_a_durable_dead_lettering_queue() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    run(async {
        let code = fresh_code();
        let delivery = manager(&shared.url, DeliveryMode::Reliable)
            .replenish(&code, "req-reliable")
            .await;
        assert!(delivery.result.is_ok(), "{:?}", delivery.result);
        let message_id = delivery
            .idempotency_key
            .expect("a reliable message has an id");

        let (connection, channel) = raw(&shared.url).await;
        let message = get(&channel, QUEUE).await;
        assert_eq!(message.delivery.data, code.as_bytes());
        let properties = &message.delivery.properties;
        assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            text(properties.message_id()),
            Some(message_id.to_string().as_str())
        );
        assert_eq!(text(properties.correlation_id()), Some("req-reliable"));
        assert_eq!(
            text(properties.content_type()),
            Some("text/plain; charset=utf-8")
        );
        let headers = properties.headers().clone().unwrap_or_default();
        assert_eq!(
            headers.inner().get("x-request-id"),
            Some(&AMQPValue::LongString("req-reliable".into()))
        );

        // A message the worker rejects goes to the dead-letter queue: the arguments work.
        message
            .delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        let dead = get(&channel, DEAD_LETTER_QUEUE).await;
        assert_eq!(dead.delivery.data, code.as_bytes());
        dead.delivery
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
        let _ = connection.close(200, "test".into()).await;

        // Both queues are durable, the main one with exactly the contract's arguments:
        // the same declaration is accepted, any other refused.
        declare(&shared.url, DEAD_LETTER_QUEUE, true, quorum_arguments())
            .await
            .expect("the dead-letter queue is a durable quorum queue");
        declare(&shared.url, QUEUE, true, reliable_arguments())
            .await
            .expect("the main queue is a quorum queue that dead-letters as the contract says");
        let without = declare(&shared.url, QUEUE, true, FieldTable::default())
            .await
            .expect_err("declaring it as a classic queue is inequivalent");
        assert!(without.contains("inequivalent arg"), "{without}");
    });
}

#[test]
fn a_queue_declared_by_the_other_mode_is_refused_with_a_one_line_hint() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    run(async {
        // A faithful worker (or publisher) was there first.
        declare(&shared.url, QUEUE, false, FieldTable::default())
            .await
            .expect("declare the faithful queue");
        let delivery = manager(&shared.url, DeliveryMode::Reliable)
            .replenish(&fresh_code(), "req")
            .await;
        let error = delivery
            .result
            .expect_err("the reliable declaration is refused");
        assert_eq!(error.kind(), "queue_mismatch", "{error}");
        let text = error.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert_hint(&text, DeliveryMode::Reliable);
        // The line names the property the broker named.
        let named = text
            .split("inequivalent arg '")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("the broker names an argument: {text}"));
        assert!(text.contains(&format!("and its {named} differs")), "{text}");
        assert_eq!(depth(&shared.url, QUEUE).await, 0, "nothing was published");

        // And the other way round.
        delete_queues(&shared.url).await;
        declare(&shared.url, DEAD_LETTER_QUEUE, true, quorum_arguments())
            .await
            .expect("declare the reliable dead-letter queue");
        declare(&shared.url, QUEUE, true, reliable_arguments())
            .await
            .expect("declare the reliable queue");
        let error = manager(&shared.url, DeliveryMode::Faithful)
            .replenish(&fresh_code(), "req")
            .await
            .result
            .expect_err("the faithful declaration is refused");
        assert_hint(&error.to_string(), DeliveryMode::Faithful);
    });
}

/// Checks `text` against the hint the contract prescribes for a mismatch, rebuilt from
/// its published wording so the test does not pass merely by calling the same function.
fn assert_hint(text: &str, wanted: DeliveryMode) {
    let start = format!("the broker already has the queue {QUEUE} and its ");
    assert!(text.starts_with(&start), "{text}");
    assert!(
        text.contains(&format!("differs from what --delivery {wanted} declares")),
        "{text}"
    );
    assert!(
        text.contains(&format!("rabbitmqctl delete_queue {QUEUE}")),
        "{text}"
    );
}

#[test]
fn a_queue_deleted_under_the_publisher_returns_the_message_and_the_next_call_redeclares() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    run(async {
        let manager = manager(&shared.url, DeliveryMode::Reliable);
        let first = manager.replenish(&fresh_code(), "req-1").await;
        assert!(first.result.is_ok(), "{:?}", first.result);
        // An operator deletes the queue; the publisher's session still believes in it.
        delete_queues(&shared.url).await;
        let lost = manager.replenish(&fresh_code(), "req-2").await;
        let error = lost.result.expect_err("the message had nowhere to go");
        assert!(
            matches!(
                error,
                ReplenishmentError::Returned {
                    reply_code: 312,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.kind(), "returned_unroutable");
        let third = fresh_code();
        let again = manager.replenish(&third, "req-3").await;
        assert!(again.result.is_ok(), "{:?}", again.result);
        let (connection, channel) = raw(&shared.url).await;
        assert_eq!(get(&channel, QUEUE).await.delivery.data, third.as_bytes());
        let _ = connection.close(200, "test".into()).await;

        // Under a retry policy the returned message is published again, with the same id.
        let retrying = StockManager::amqp_builder(
            AmqpUrl::parse(&shared.url).unwrap(),
            DeliveryMode::Reliable,
        )
        .retry_policy(Some(RetryPolicy::with_max_attempts(3)))
        .build()
        .unwrap();
        assert!(
            retrying
                .replenish(&fresh_code(), "req-4")
                .await
                .result
                .is_ok()
        );
        delete_queues(&shared.url).await;
        let code = fresh_code();
        let retried = retrying.replenish(&code, "req-5").await;
        assert!(retried.result.is_ok(), "{:?}", retried.result);
        assert_eq!(retried.attempts, 2, "returned once, then queued");
        let (connection, channel) = raw(&shared.url).await;
        let message = get(&channel, QUEUE).await;
        assert_eq!(message.delivery.data, code.as_bytes());
        assert_eq!(
            text(message.delivery.properties.message_id()),
            retried.idempotency_key.map(|k| k.to_string()).as_deref()
        );
        let _ = connection.close(200, "test".into()).await;
    });
}

// ---------------------------------------------------------------------------------------
// Connections

#[test]
fn one_connection_carries_a_thousand_confirmed_publishes_unless_the_original_is_asked_for() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    let mut latencies = run(async {
        let before = log_fence(&shared.url, &shared.log).await;
        let manager = manager(&shared.url, DeliveryMode::Reliable);
        let mut latencies = Vec::with_capacity(1000);
        for n in 0..1000 {
            let delivery = manager.replenish(&format!("code-{n}"), "req").await;
            assert!(
                delivery.result.is_ok(),
                "publish {n}: {:?}",
                delivery.result
            );
            latencies.push(delivery.last_attempt);
        }
        // Clones share the session, concurrent publishes too.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..50 {
            let manager = manager.clone();
            tasks.spawn(async move { manager.replenish(&format!("burst-{n}"), "req").await });
        }
        while let Some(done) = tasks.join_next().await {
            let delivery = done.expect("the task ran");
            assert!(delivery.result.is_ok(), "{:?}", delivery.result);
        }
        assert_eq!(depth(&shared.url, QUEUE).await, 1050);
        let after = log_fence(&shared.url, &shared.log).await;
        assert_eq!(
            publisher_connections_between(&shared.log, &before, &after),
            1,
            "1050 publishes through one manager and its clones use one connection"
        );
        latencies
    });
    let first = latencies.remove(0);
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    eprintln!(
        "reliable publish, confirm each, one connection: first (with connect) {:.2} ms; \
         next 999: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        first.as_secs_f64() * 1e3,
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
    );

    // The original's behaviour on request: a connection per call, closed after it.
    run(async {
        let before = log_fence(&shared.url, &shared.log).await;
        let per_call = per_call_manager(&shared.url);
        for n in 0..5 {
            let delivery = per_call.replenish(&format!("per-call-{n}"), "req").await;
            assert!(delivery.result.is_ok(), "{:?}", delivery.result);
        }
        let after = log_fence(&shared.url, &shared.log).await;
        assert_eq!(
            publisher_connections_between(&shared.log, &before, &after),
            5
        );
    });
}

#[test]
fn connect_opens_the_one_connection_before_any_publish_and_is_a_no_op_per_call() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    run(async {
        let before = log_fence(&shared.url, &shared.log).await;
        let manager = manager(&shared.url, DeliveryMode::Reliable);
        manager.connect().await.expect("connect");
        // Connected and declared before any publish: both queues exist, empty.
        assert_eq!(depth(&shared.url, QUEUE).await, 0);
        assert_eq!(depth(&shared.url, DEAD_LETTER_QUEUE).await, 0);
        manager
            .connect()
            .await
            .expect("connect again: the open session is kept");
        for n in 0..10 {
            let delivery = manager
                .replenish(&format!("after-connect-{n}"), "req")
                .await;
            assert!(delivery.result.is_ok(), "{:?}", delivery.result);
        }
        assert_eq!(depth(&shared.url, QUEUE).await, 10);
        let after = log_fence(&shared.url, &shared.log).await;
        assert_eq!(
            publisher_connections_between(&shared.log, &before, &after),
            1,
            "connect() and the publishes after it share one connection"
        );

        // A connection per call (the original): nothing to open ahead of the calls.
        delete_queues(&shared.url).await;
        let before = log_fence(&shared.url, &shared.log).await;
        let per_call = per_call_manager(&shared.url);
        per_call.connect().await.expect("a no-op");
        let after = log_fence(&shared.url, &shared.log).await;
        assert_eq!(
            publisher_connections_between(&shared.log, &before, &after),
            0
        );
    });
}

#[test]
fn connect_to_a_closed_port_fails_at_once_naming_the_broker() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("amqp://{}", listener.local_addr().unwrap())
    };
    let error = run(manager(&closed, DeliveryMode::Reliable).connect()).unwrap_err();
    assert!(
        matches!(error, ReplenishmentError::AmqpConnect { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("127.0.0.1:"), "{error}");
}

// ---------------------------------------------------------------------------------------
// The command

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn inventory(args: &[&str]) -> Run {
    let output = Command::new(common::bin_path("inventory"))
        .args(args)
        .env_remove(inventory::PURCHASING_API_URL)
        .env_remove(inventory::PURCHASING_AMQP_URL)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run inventory");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn the_command_publishes_each_code_reliably_and_reports_it() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let shared = Shared::lock();
    let run_ = inventory(&[
        "request",
        "--amqp-url",
        &shared.url,
        "--delivery",
        "reliable",
        "--timeout",
        "10",
        "A",
        "B",
    ]);
    assert_eq!(
        run_.code,
        Some(0),
        "stdout:\n{}stderr:\n{}",
        run_.stdout,
        run_.stderr
    );
    let lines: Vec<&str> = run_.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run_.stdout);
    assert!(
        lines[0].starts_with("ok      A  (request id "),
        "{}",
        run_.stdout
    );
    assert!(
        lines[1].starts_with("ok      B  (request id "),
        "{}",
        run_.stdout
    );
    let request_id = lines[0]
        .trim_start_matches("ok      A  (request id ")
        .trim_end_matches(')');
    let request_id_b = lines[1]
        .trim_start_matches("ok      B  (request id ")
        .trim_end_matches(')');
    run(async {
        let (connection, channel) = raw(&shared.url).await;
        for (code, id) in [(b"A", request_id), (b"B", request_id_b)] {
            let message = get(&channel, QUEUE).await;
            assert_eq!(message.delivery.data, code);
            assert_eq!(text(message.delivery.properties.correlation_id()), Some(id));
            message
                .delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
        }
        let _ = connection.close(200, "test".into()).await;
    });

    // Faithful retries are refused before anything is sent.
    let refused = inventory(&["request", "--amqp-url", &shared.url, "--retries", "1", "C"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("--retries needs --delivery reliable"),
        "{}",
        refused.stderr
    );
    assert!(refused.stdout.is_empty());
    assert_eq!(run(depth(&shared.url, QUEUE)), 0);
}

#[test]
fn the_command_with_no_broker_fails_as_could_not_connect() {
    // No broker needed: a loopback port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let shown = format!("amqp://guest:***@127.0.0.1:{port}/%2f");
    let run = inventory(&[
        "request",
        "--amqp-url",
        &url,
        "--delivery",
        "reliable",
        "A",
        "B",
    ]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    for (line, code) in lines.iter().zip(["A", "B"]) {
        assert!(
            line.starts_with(&format!("failed  {code}  (request id "))
                && line.contains(&format!(
                    "could not connect to the RabbitMQ broker at {shown}: connection refused"
                )),
            "{line}"
        );
    }
    assert!(
        run.stderr
            .contains(&format!("the RabbitMQ broker at {shown} is not reachable"))
            && run.stderr.contains("loadtest -- broker"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stdout.contains(":guest@") && !run.stderr.contains(":guest@"),
        "the password is never printed"
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------
// Faults

/// Resumes a paused broker when dropped, so a failing assertion cannot leave it frozen.
struct Paused(u32);

impl Paused {
    fn pause(broker: &Broker) -> Paused {
        let pid = broker.pid().expect("the broker runs");
        // SAFETY: plain syscall on our own child's PID (it is reaped only by us).
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

#[test]
fn a_paused_a_restarted_and_a_dead_broker_fail_in_time_and_the_next_call_reconnects() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let mut broker = Broker::start(BrokerOptions::default()).expect("a broker of its own");
    let url = broker.amqp_url();
    let timeout = Duration::from_secs(2);
    let reliable =
        StockManager::amqp_builder(AmqpUrl::parse(&url).unwrap(), DeliveryMode::Reliable)
            .timeout(timeout)
            .build()
            .unwrap();
    // One runtime for the whole test: the manager's connection belongs to the runtime that
    // opened it. Multi-threaded, as the lab's: its workers keep serving the connection's
    // socket between publishes, so a close by the broker is seen when it happens.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let publish = |code: &str| {
        runtime.block_on(async {
            tokio::time::timeout(TEST_LIMIT, reliable.replenish(code, "req"))
                .await
                .expect("the publish finished in time")
        })
    };
    let queued = || runtime.block_on(depth(&url, QUEUE));

    assert!(publish("before").result.is_ok());

    // Paused: the message goes into the socket, no confirm comes back.
    let paused = Paused::pause(&broker);
    let started = Instant::now();
    let unconfirmed = publish("while-paused");
    let took = started.elapsed();
    let error = unconfirmed
        .result
        .expect_err("no confirm from a paused broker");
    assert_eq!(error.kind(), "confirm_timed_out", "{error}");
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "failed after {took:?}, the timeout is {timeout:?}"
    );
    drop(paused);
    // "Timed out" is not "not queued": the broker took the message once it resumed. Its
    // message id lets a retry be told apart from a new order.
    assert!(publish("after-pause").result.is_ok());
    assert_eq!(queued(), 3);

    // A clean restart closes the connection; the next call opens a new one.
    broker.restart().expect("restart");
    let after_restart = publish("after-restart");
    assert!(after_restart.result.is_ok(), "{:?}", after_restart.result);
    assert_eq!(queued(), 4, "durable queue, persistent messages");

    // Killed: the call fails at once, as a refused connection or a lost one.
    broker.kill().expect("kill");
    let started = Instant::now();
    let down = publish("while-dead");
    let error = down.result.expect_err("no broker");
    assert!(
        matches!(error.kind(), "amqp_connect" | "connection_lost"),
        "{error}"
    );
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    let again = publish("still-dead").result.expect_err("still no broker");
    assert_eq!(again.kind(), "amqp_connect", "{again}");

    // Back: the next call reconnects, and what was confirmed survived the kill.
    broker.restart().expect("restart after the kill");
    assert!(publish("after-kill").result.is_ok());
    assert_eq!(queued(), 5);

    broker.stop().expect("stop");
}
