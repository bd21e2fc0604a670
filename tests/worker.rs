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

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once, PoisonError, mpsc};
use std::time::{Duration, Instant};

use common::{TINY_WORKLOAD, bin_path, fresh_code};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use loadtest::broker::{Broker, BrokerOptions, require_installed_or_skip};
use wire_contract::amqp::{
    CONTENT_TYPE, DEAD_LETTER_EXCHANGE_ARG, DEAD_LETTER_QUEUE, DEAD_LETTER_ROUTING_KEY_ARG,
    DEFAULT_EXCHANGE, Delivery, PERSISTENT, QUEUE,
};

/// Longest wait for anything a test waits for: a drain, a health state, an exit.
const PATIENCE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ the shared broker

static BROKER: Mutex<Option<Broker>> = Mutex::new(None);
static STOP_AT_EXIT: Once = Once::new();

/// A test's turn with the shared broker: its queues deleted, its AMQP URL.
struct Turn {
    url: String,
    guard: MutexGuard<'static, Option<Broker>>,
}

impl Turn {
    fn broker(&mut self) -> &mut Broker {
        self.guard.as_mut().expect("the broker was started")
    }
}

/// Waits for this test's turn with the shared broker (starting it the first time, and
/// again if a failed test left it down) and deletes both queues; `None` when RabbitMQ
/// is not installed (the test then returns, having printed SKIPPED).
fn broker_turn() -> Option<Turn> {
    require_installed_or_skip()?;
    // A test that failed during its turn poisons the mutex; the next one carries on.
    let mut guard = BROKER.lock().unwrap_or_else(PoisonError::into_inner);
    match guard.as_mut() {
        None => {
            let broker = Broker::start(BrokerOptions::default())
                .unwrap_or_else(|e| panic!("start RabbitMQ: {e}"));
            *guard = Some(broker);
            // SAFETY: registers a plain function; it runs once, at process exit.
            STOP_AT_EXIT.call_once(|| unsafe {
                libc::atexit(stop_shared_broker);
            });
        }
        Some(broker) if !broker.is_running() => {
            broker
                .restart()
                .unwrap_or_else(|e| panic!("restart RabbitMQ: {e}"));
        }
        Some(_) => {}
    }
    let url = guard.as_ref().unwrap().amqp_url();
    block_on(async {
        let (connection, channel) = open(&url).await;
        for queue in [QUEUE, DEAD_LETTER_QUEUE] {
            channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await
                .expect("delete a queue");
        }
        close(connection).await;
    });
    Some(Turn { url, guard })
}

/// Stops the shared broker when the test process exits (the harness has no teardown).
extern "C" fn stop_shared_broker() {
    let broker = BROKER.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(broker) = broker {
        // Never unwind out of an `extern "C"` function.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| broker.stop()));
    }
}

// ------------------------------------------------------------------ AMQP from the test

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            tokio::time::timeout(PATIENCE, future)
                .await
                .expect("the AMQP exchange finished in time")
        })
}

async fn open(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let channel = connection.create_channel().await.expect("a channel");
    (connection, channel)
}

async fn close(connection: Connection) {
    connection
        .close(200, "test done".into())
        .await
        .expect("close the connection");
}

/// Declares the queues of `delivery` exactly as the worker does (a publisher declares
/// them too, so either may start first).
async fn declare(channel: &Channel, delivery: Delivery) {
    for queue in delivery.queues() {
        let mut arguments = FieldTable::default();
        if let Some(target) = queue.dead_letter_to {
            arguments.insert(
                DEAD_LETTER_EXCHANGE_ARG.into(),
                AMQPValue::LongString(DEFAULT_EXCHANGE.into()),
            );
            arguments.insert(
                DEAD_LETTER_ROUTING_KEY_ARG.into(),
                AMQPValue::LongString(target.into()),
            );
        }
        let options = QueueDeclareOptions {
            durable: queue.durable,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.name.into(), options, arguments)
            .await
            .unwrap_or_else(|e| panic!("declare {}: {e}", queue.name));
    }
}

/// One message to publish: the body, and in reliable mode its message id.
struct Message {
    body: Vec<u8>,
    message_id: Option<String>,
}

impl Message {
    /// A valid order with a fresh item code and a fresh message id.
    fn order() -> Self {
        Self {
            body: fresh_code().into_bytes(),
            message_id: Some(uuid::Uuid::new_v4().to_string()),
        }
    }

    fn raw(body: &[u8], message_id: Option<&str>) -> Self {
        Self {
            body: body.to_vec(),
            message_id: message_id.map(str::to_string),
        }
    }

    fn code(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// Publishes `messages` to the queue. Faithful: as the original (transient, no
/// properties, no confirms; the graceful close flushes them). Reliable: persistent with
/// the message id, each confirmed by the broker.
fn publish(url: &str, delivery: Delivery, messages: &[Message]) {
    block_on(async {
        let (connection, channel) = open(url).await;
        declare(&channel, delivery).await;
        let reliable = delivery == Delivery::Reliable;
        if reliable {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("publisher confirms");
        }
        let mut confirms = Vec::new();
        for message in messages {
            let mut properties = BasicProperties::default();
            if reliable {
                properties = properties
                    .with_delivery_mode(PERSISTENT)
                    .with_content_type(CONTENT_TYPE.into());
                if let Some(id) = &message.message_id {
                    properties = properties.with_message_id(id.as_str().into());
                }
            }
            let confirm = channel
                .basic_publish(
                    DEFAULT_EXCHANGE.into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    &message.body,
                    properties,
                )
                .await
                .expect("publish");
            confirms.push(confirm);
        }
        if reliable {
            for confirm in confirms {
                let confirmation = confirm.await.expect("a publisher confirm");
                assert!(confirmation.is_ack(), "refused: {confirmation:?}");
            }
        }
        close(connection).await;
    });
}

/// Messages ready in `queue` (not those a consumer holds unacknowledged).
fn ready_in(url: &str, queue: &str) -> u32 {
    block_on(async {
        let (connection, channel) = open(url).await;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let count = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .expect("a passive declare")
            .message_count();
        close(connection).await;
        count
    })
}

/// Takes every message out of `queue` and returns their bodies.
fn take_all(url: &str, queue: &str) -> Vec<Vec<u8>> {
    block_on(async {
        let (connection, channel) = open(url).await;
        let mut bodies = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            bodies.push(message.delivery.data);
        }
        close(connection).await;
        bodies
    })
}

// ------------------------------------------------------------------ the worker process

/// A `purchasing-worker` process with its HTTP address; killed when dropped.
struct WorkerProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl WorkerProcess {
    /// Starts the worker on `orders_file` (with `--http-bind 127.0.0.1:0`) and reads its
    /// address from the one line it prints.
    fn spawn(url: &str, orders_file: &Path, args: &[&str]) -> Self {
        let log = orders_file.with_extension(format!("worker.{}.log", &fresh_code()[..8]));
        let stderr = std::fs::File::create(&log).expect("a log file");
        let mut child = Command::new(bin_path("purchasing-worker"))
            .args([
                "--amqp-url",
                url,
                "--http-bind",
                "127.0.0.1:0",
                "--orders-file",
            ])
            .arg(orders_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start purchasing-worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Anything more on stdout would break the one-line rule; keep draining so the
            // worker never blocks on a full pipe, and report it.
            for line in lines.map_while(Result::ok) {
                eprintln!("UNEXPECTED stdout line from purchasing-worker: {line}");
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "purchasing-worker printed no address ({other:?}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let addr = line
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self { child, addr, log }
    }

    /// `GET path`: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send a request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read a response");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// `/health`: status code and the JSON `status`.
    fn health(&self) -> (u16, serde_json::Value) {
        let (code, body) = self.get("/health");
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (code, json)
    }

    /// `/metrics` as name → value (all of ours are unlabelled).
    fn metrics(&self) -> HashMap<String, f64> {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "{body}");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (name, value) = l.split_once(' ').expect("name value");
                (name.to_string(), value.parse().expect("a number"))
            })
            .collect()
    }

    /// One counter or gauge, by its name after `purchasing_worker_`.
    fn metric(&self, name: &str) -> u64 {
        let full = format!("purchasing_worker_{name}");
        *self
            .metrics()
            .get(&full)
            .unwrap_or_else(|| panic!("{full} is not in /metrics")) as u64
    }

    fn wait_consuming(&self) {
        wait_until("the worker consumes (/health ok)", || {
            (self.health().0 == 200).then_some(())
        });
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not exit; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 20 ms until it returns `Some`, at most [`PATIENCE`].
fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The orders file: item code → how many lines name it (asserting every line is one).
fn order_counts(orders_file: &Path) -> BTreeMap<String, usize> {
    let file = purchasing_persistence::read_orders_file(orders_file).expect("read the orders");
    assert!(file.malformed.is_empty(), "{:?}", file.malformed);
    let mut counts = BTreeMap::new();
    for code in file.orders {
        *counts.entry(code.into_string()).or_insert(0) += 1;
    }
    counts
}

fn lines_in(orders_file: &Path) -> usize {
    order_counts(orders_file).values().sum()
}

/// Waits until the orders file has `n` lines.
fn wait_for_lines(orders_file: &Path, n: usize) {
    wait_until(&format!("{n} orders are in the file"), || {
        (lines_in(orders_file) >= n).then_some(())
    });
}

/// Asserts the file holds exactly `messages`' codes, each once.
fn assert_each_once(orders_file: &Path, messages: &[&Message]) {
    let counts = order_counts(orders_file);
    let duplicates: Vec<_> = counts.iter().filter(|&(_, &n)| n > 1).collect();
    assert!(duplicates.is_empty(), "written twice: {duplicates:?}");
    let want: BTreeSet<String> = messages.iter().map(|m| m.code()).collect();
    let missing: Vec<_> = want.iter().filter(|c| !counts.contains_key(*c)).collect();
    let unexpected: Vec<_> = counts.keys().filter(|c| !want.contains(*c)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{} orders missing: {missing:?}; {} not published: {unexpected:?}",
        missing.len(),
        unexpected.len()
    );
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = TINY_WORKLOAD.to_vec();
    all.extend_from_slice(extra);
    all
}

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
