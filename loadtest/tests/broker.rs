//! A real RabbitMQ (Debian's rabbitmq-server) started by `loadtest::broker` as a child
//! process, talked to with lapin, and checked to leave nothing behind: no `beam.smp`, no
//! `epmd` (by PID), no data directory. Without rabbitmq-server these tests print
//! "SKIPPED: …" and return, except under CI (`CI` set), where they fail
//! (`loadtest::broker::require_installed_or_skip`).
//!
//! Each test needs a broker of its own, because each one's subject is the broker's life
//! (stop, restart, kill, drop, the command's exit): none could share one without
//! weakening it. Starts cost seconds, so the restart test also covers `kill`.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use loadtest::broker::{Broker, BrokerError, BrokerOptions, require_installed_or_skip};

/// AMQP delivery mode of a message the broker writes to disk.
const PERSISTENT: u8 = 2;
/// Longest wait for any single AMQP operation in these tests.
const AMQP_TIMEOUT: Duration = Duration::from_secs(30);

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            tokio::time::timeout(AMQP_TIMEOUT, future)
                .await
                .expect("the AMQP exchange finished in time")
        })
}

/// A connection and a channel with publisher confirms on.
async fn open(url: &str) -> (Connection, Channel) {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let channel = connection.create_channel().await.expect("a channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("publisher confirms");
    (connection, channel)
}

async fn declare_durable(channel: &Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .expect("declare a durable queue")
        .message_count()
}

/// Publishes one persistent message to `queue` (default exchange) and waits for the
/// broker's confirm, i.e. until it has the message on disk.
async fn publish_persistent(channel: &Channel, queue: &str, body: &[u8]) {
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(PERSISTENT),
        )
        .await
        .expect("publish")
        .await
        .expect("the publisher confirm");
    assert!(
        confirmation.is_ack(),
        "the broker refused the message: {confirmation:?}"
    );
}

async fn close(connection: Connection) {
    connection
        .close(200, "test done".into())
        .await
        .expect("close the connection");
}

/// Whether `pid` is a live (not zombie) process called `name`. A PID reused by another
/// program does not count.
fn alive_as(pid: u32, name: &str) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    match (comm, stat) {
        (Ok(comm), Ok(stat)) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            comm.trim() == name && state != Some("Z")
        }
        _ => false,
    }
}

/// Processes whose working directory is `dir` or below (the broker and its epmd run in
/// their data directory).
fn processes_in(dir: &Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            found.push((pid, comm.trim().to_string()));
        }
    }
    found
}

/// The children of `parent` (PID, name), from /proc.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After ')': state, ppid, …
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            let name = stat[..close]
                .split_once('(')
                .map_or("", |(_, n)| n)
                .to_string();
            found.push((pid, name));
        }
    }
    found
}

/// What a running broker consists of, to check afterwards that none of it is left.
struct Footprint {
    beam: u32,
    epmd: u32,
    dir: PathBuf,
}

impl Footprint {
    fn of(broker: &Broker) -> Footprint {
        let footprint = Footprint {
            beam: broker.pid().expect("the broker runs"),
            epmd: broker.epmd_pid().expect("its epmd runs"),
            dir: broker.data_dir().to_path_buf(),
        };
        assert!(alive_as(footprint.beam, "beam.smp"), "{}", footprint.beam);
        assert!(alive_as(footprint.epmd, "epmd"), "{}", footprint.epmd);
        assert!(footprint.dir.is_dir());
        footprint
    }

    fn assert_gone(&self) {
        assert!(
            !alive_as(self.beam, "beam.smp"),
            "beam.smp {} is still running",
            self.beam
        );
        assert!(
            !alive_as(self.epmd, "epmd"),
            "epmd {} is still running",
            self.epmd
        );
        assert!(!self.dir.exists(), "{} was not removed", self.dir.display());
    }
}

#[test]
fn a_persistent_message_goes_through_and_the_stop_leaves_nothing() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let broker = Broker::start(BrokerOptions::default()).expect("the broker starts");
    eprintln!(
        "ready in {:.1} s at {}",
        broker.ready_after().as_secs_f64(),
        broker.amqp_url()
    );
    assert!(
        broker
            .amqp_url()
            .starts_with("amqp://guest:guest@127.0.0.1:"),
        "{}",
        broker.amqp_url()
    );
    let footprint = Footprint::of(&broker);
    assert!(
        broker.log_file().starts_with(&footprint.dir),
        "{}",
        broker.log_file().display()
    );

    let queue = "stock-replenishment-requests";
    let received = block_on(async {
        let (connection, channel) = open(&broker.amqp_url()).await;
        assert_eq!(declare_durable(&channel, queue).await, 0);
        publish_persistent(&channel, queue, b"123").await;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "test-consumer".into(),
                BasicConsumeOptions::default(), // manual ack
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let delivery = consumer
            .next()
            .await
            .expect("a delivery")
            .expect("a delivery without error");
        assert_eq!(
            delivery.properties.delivery_mode(),
            &Some(PERSISTENT),
            "the message kept its persistence"
        );
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        close(connection).await;
        delivery.data.clone()
    });
    assert_eq!(received, b"123");

    let stopped = broker.stop().expect("the broker stops");
    eprintln!("stopped in {:.1} s", stopped.elapsed.as_secs_f64());
    assert!(stopped.graceful, "RabbitMQ had to be killed: {stopped:?}");
    footprint.assert_gone();
}

#[test]
fn durable_messages_survive_a_restart_and_a_kill() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let mut broker = Broker::start(BrokerOptions::default()).expect("the broker starts");
    let url = broker.amqp_url();
    let queue = "survives-restarts";
    block_on(async {
        let (connection, channel) = open(&url).await;
        declare_durable(&channel, queue).await;
        publish_persistent(&channel, queue, b"first").await;
        close(connection).await;
    });

    // A clean restart on the same data directory and ports.
    let before = broker.pid().expect("running");
    broker.restart().expect("the broker restarts");
    let after = broker.pid().expect("running again");
    assert_ne!(before, after, "a new broker process");
    assert!(!alive_as(before, "beam.smp"), "the old broker ended");
    assert_eq!(broker.amqp_url(), url, "same port after a restart");
    eprintln!("restarted in {:.1} s", broker.ready_after().as_secs_f64());
    block_on(async {
        let (connection, channel) = open(&url).await;
        assert_eq!(declare_durable(&channel, queue).await, 1, "after a restart");
        publish_persistent(&channel, queue, b"second").await;
        close(connection).await;
    });

    // A crash: SIGKILL. Confirmed persistent messages are on disk.
    broker.kill().expect("the broker is killed");
    assert!(!alive_as(after, "beam.smp"), "the killed broker is gone");
    assert_eq!(broker.pid(), None);
    assert!(!broker.is_running());
    let error = broker.kill().expect_err("nothing to kill");
    assert!(matches!(error, BrokerError::NotRunning(_)), "{error}");
    // Someone else (another broker starting in a parallel test) takes our distribution
    // port while we are down: the restart picks another one, the AMQP port stays.
    let dist = broker.distribution_port();
    let squatter = std::net::TcpListener::bind(("127.0.0.1", dist))
        .expect("the dead broker's distribution port is free");
    broker
        .restart()
        .expect("the broker comes back after a kill, on another distribution port");
    assert_ne!(broker.distribution_port(), dist);
    assert_eq!(broker.amqp_url(), url, "same AMQP port");
    drop(squatter);
    let bodies = block_on(async {
        let (connection, channel) = open(&url).await;
        assert_eq!(declare_durable(&channel, queue).await, 2, "after a kill");
        let mut bodies = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
            .expect("get")
        {
            message
                .delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            bodies.push(String::from_utf8_lossy(&message.delivery.data).into_owned());
        }
        close(connection).await;
        bodies
    });
    assert_eq!(bodies, ["first", "second"]);

    let footprint = Footprint::of(&broker);
    broker.stop().expect("the broker stops");
    footprint.assert_gone();
}

#[test]
fn dropping_a_broker_without_stopping_it_leaves_nothing() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let broker = Broker::start(BrokerOptions::default()).expect("the broker starts");
    let footprint = Footprint::of(&broker);
    drop(broker);
    footprint.assert_gone();
}

#[test]
fn a_broker_not_ready_in_time_is_killed_and_says_why() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("broker");
    let options = BrokerOptions {
        // RabbitMQ needs seconds to boot.
        ready_timeout: Duration::from_millis(500),
        data_dir: Some(data.clone()),
        ..BrokerOptions::default()
    };
    let error = Broker::start(options).expect_err("not ready in 0.5 s");
    let message = error.to_string();
    eprintln!("{message}");
    assert!(matches!(error, BrokerError::Start(_)), "{message}");
    assert!(message.contains("was not ready within 0.5 s"), "{message}");
    assert!(message.contains("so it was killed"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    let data = data.canonicalize().expect("the data directory exists");
    assert_eq!(
        processes_in(&data),
        [],
        "nothing runs in {}",
        data.display()
    );
    assert!(data.join("node-name").is_file(), "a kept directory stays");
}

#[test]
fn the_broker_command_prints_its_url_and_stops_cleanly_on_sigterm() {
    let Some(_) = require_installed_or_skip() else {
        return;
    };
    // Its temporary data directory goes here, so the test can see it is removed.
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("broker")
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loadtest broker");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (line_tx, line_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line.clone());
            lines.push(line);
        }
        lines
    });
    let (error_tx, error_rx) = mpsc::channel();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = error_tx.send(line.clone());
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let url = match line_rx.recv_timeout(Duration::from_secs(90)) {
        Ok(url) => url,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no URL from loadtest broker ({e}); stderr: {}",
                errors.join().unwrap_or_default()
            );
        }
    };
    assert!(url.starts_with("amqp://guest:guest@127.0.0.1:"), "{url}");
    let queue = "declared-by-the-test";
    block_on(async {
        let (connection, channel) = open(&url).await;
        declare_durable(&channel, queue).await;
        close(connection).await;
    });
    // The line it prints for rabbitmqctl reaches this broker as it is, through a shell.
    let rabbitmqctl = std::iter::from_fn(|| error_rx.recv_timeout(Duration::from_secs(10)).ok())
        .find_map(|line| line.strip_prefix("rabbitmqctl: ").map(str::to_string))
        .expect("a rabbitmqctl line on stderr");
    assert!(rabbitmqctl.ends_with(" list_queues"), "{rabbitmqctl}");
    let listed = Command::new("sh")
        .arg("-c")
        .arg(&rabbitmqctl)
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    let listed_out = String::from_utf8_lossy(&listed.stdout);
    let listed_err = String::from_utf8_lossy(&listed.stderr);
    assert!(
        listed.status.success(),
        "{rabbitmqctl}: {}; {listed_out} {listed_err}",
        listed.status
    );
    assert!(
        listed_out
            .lines()
            .any(|l| l.split_whitespace().next() == Some(queue)),
        "{rabbitmqctl} lists {queue}: {listed_out}"
    );
    let children = children_of(pid);
    let names: Vec<&str> = children.iter().map(|(_, n)| n.as_str()).collect();
    assert!(
        names.contains(&"beam.smp") && names.contains(&"epmd"),
        "{children:?}"
    );
    let data_dirs: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("TMPDIR")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(data_dirs.len(), 1, "{data_dirs:?}");

    // SAFETY: plain syscall; the child is not reaped yet, so the PID is its.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loadtest broker did not exit within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = reader.join().expect("stdout reader");
    let stderr = errors.join().expect("stderr reader");
    eprintln!("{stderr}");
    assert_eq!(status.code(), Some(0), "{status}; stderr: {stderr}");
    assert_eq!(lines, [url], "the URL is the only line on stdout");
    assert!(stderr.contains("stop it with Ctrl-C"), "{stderr}");
    assert!(stderr.contains("RabbitMQ stopped"), "{stderr}");
    for (child_pid, name) in &children {
        assert!(
            !alive_as(*child_pid, name),
            "{name} {child_pid} was left running"
        );
    }
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("TMPDIR")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(
        left,
        Vec::<PathBuf>::new(),
        "the data directory was removed"
    );
}
