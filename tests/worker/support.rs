//! What the worker tests share: one RabbitMQ for the whole test process (taken in turns),
//! AMQP from the test's side (declare, publish, count, take), the `purchasing-worker`
//! process, and the orders file read back with the persistence crate's parser.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once, PoisonError, mpsc};
use std::time::{Duration, Instant};

use crate::common::{TINY_WORKLOAD, bin_path, fresh_code};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use loadtest::broker::{Broker, BrokerOptions, require_installed_or_skip};
use wire_contract::amqp::{
    CONTENT_TYPE, DEAD_LETTER_QUEUE, DEFAULT_EXCHANGE, Delivery, PERSISTENT, QUEUE,
};

/// Longest wait for anything a test waits for: a drain, a health state, an exit.
pub const PATIENCE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ the shared broker

static BROKER: Mutex<Option<Broker>> = Mutex::new(None);
static STOP_AT_EXIT: Once = Once::new();

/// A test's turn with the shared broker: its queues deleted, its AMQP URL.
pub struct Turn {
    pub url: String,
    guard: MutexGuard<'static, Option<Broker>>,
}

impl Turn {
    pub fn broker(&mut self) -> &mut Broker {
        self.guard.as_mut().expect("the broker was started")
    }
}

/// Waits for this test's turn with the shared broker (starting it the first time, and
/// again if a failed test left it down) and deletes both queues; `None` when RabbitMQ
/// is not installed (the test then returns, having printed SKIPPED).
pub fn broker_turn() -> Option<Turn> {
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

pub fn block_on<F: Future>(future: F) -> F::Output {
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

pub async fn open(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let channel = connection.create_channel().await.expect("a channel");
    (connection, channel)
}

pub async fn close(connection: Connection) {
    connection
        .close(200, "test done".into())
        .await
        .expect("close the connection");
}

/// Declares the queues of `delivery` exactly as the worker does (a publisher declares
/// them too, so either may start first).
pub async fn declare(channel: &Channel, delivery: Delivery) {
    amqp_link::declare_queues(channel, delivery)
        .await
        .unwrap_or_else(|e| panic!("declare the {} queues: {e}", delivery.as_str()));
}

/// One message to publish: the body, and in reliable mode its message id.
pub struct Message {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
}

impl Message {
    /// A valid order with a fresh item code and a fresh message id.
    pub fn order() -> Self {
        Self {
            body: fresh_code().into_bytes(),
            message_id: Some(uuid::Uuid::new_v4().to_string()),
        }
    }

    pub fn raw(body: &[u8], message_id: Option<&str>) -> Self {
        Self {
            body: body.to_vec(),
            message_id: message_id.map(str::to_string),
        }
    }

    pub fn code(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

/// Publishes `messages` to the queue. Faithful: as the original (transient, no
/// properties, no confirms; the graceful close flushes them). Reliable: persistent with
/// the message id, each confirmed by the broker.
pub fn publish(url: &str, delivery: Delivery, messages: &[Message]) {
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
pub fn ready_in(url: &str, queue: &str) -> u32 {
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
pub fn take_all(url: &str, queue: &str) -> Vec<Vec<u8>> {
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
pub struct WorkerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl WorkerProcess {
    /// Starts the worker on `orders_file` (with `--http-bind 127.0.0.1:0`) and reads its
    /// address from the one line it prints.
    pub fn spawn(url: &str, orders_file: &Path, args: &[&str]) -> Self {
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
    pub fn get(&self, path: &str) -> (u16, String) {
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
    pub fn health(&self) -> (u16, serde_json::Value) {
        let (code, body) = self.get("/health");
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (code, json)
    }

    /// `/metrics` as name → value (all of ours are unlabelled).
    pub fn metrics(&self) -> HashMap<String, f64> {
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
    pub fn metric(&self, name: &str) -> u64 {
        let full = format!("purchasing_worker_{name}");
        *self
            .metrics()
            .get(&full)
            .unwrap_or_else(|| panic!("{full} is not in /metrics")) as u64
    }

    pub fn wait_consuming(&self) {
        wait_until("the worker consumes (/health ok)", || {
            (self.health().0 == 200).then_some(())
        });
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.child.id());
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
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

    pub fn log(&self) -> String {
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
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
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
pub fn order_counts(orders_file: &Path) -> BTreeMap<String, usize> {
    let file = purchasing_persistence::read_orders_file(orders_file).expect("read the orders");
    assert!(file.malformed.is_empty(), "{:?}", file.malformed);
    let mut counts = BTreeMap::new();
    for code in file.orders {
        *counts.entry(code.into_string()).or_insert(0) += 1;
    }
    counts
}

pub fn lines_in(orders_file: &Path) -> usize {
    order_counts(orders_file).values().sum()
}

/// Waits until the orders file has `n` lines.
pub fn wait_for_lines(orders_file: &Path, n: usize) {
    wait_until(&format!("{n} orders are in the file"), || {
        (lines_in(orders_file) >= n).then_some(())
    });
}

/// Asserts the file holds exactly `messages`' codes, each once.
pub fn assert_each_once(orders_file: &Path, messages: &[&Message]) {
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

pub fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut all = TINY_WORKLOAD.to_vec();
    all.extend_from_slice(extra);
    all
}
