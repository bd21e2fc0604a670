//! Spawning, confining, sampling and supervising the real `purchasing-api` binary. Tiny
//! workloads except where memory is the point; only 127.0.0.1; every wait is bounded.
//! Confined tests need cgroups (root); elsewhere they print one "SKIPPED: <test>: …" line
//! and return, except under CI, where they fail (`loadtest::prerequisite`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loadtest::confine::Limits;
use loadtest::prerequisite;
use loadtest::server::{ServerHandle, ServerObservations, ServerSpec, SutKind};

use common::sibling_binary;

const MIB: u64 = 1024 * 1024;

fn spec(dir: &Path, args: &[&str], limits: Limits, restart_on_crash: bool) -> ServerSpec {
    ServerSpec {
        kind: SutKind::Api,
        binary: sibling_binary("purchasing-api"),
        orders_file: dir.join("PurchaseOrders.txt"),
        lab_args: Vec::new(),
        args: args.iter().map(|a| a.to_string()).collect(),
        limits,
        restart_on_crash,
        sample_every: Duration::from_millis(50),
        log_file: Some(dir.join("server.log")),
        core_slot: 0,
        link: None,
    }
}

fn addr_of(url: &str) -> SocketAddr {
    url.strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected url {url}"))
}

/// One HTTP/1.1 exchange on a fresh connection; returns the status code.
fn http(url: &str, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr_of(url), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {text:?}")))
}

fn order(url: &str, code: &str) -> std::io::Result<u16> {
    http(
        url,
        "POST",
        "/api/StockReplenishmentRequests",
        &format!("={code}"),
    )
}

fn health(url: &str) -> std::io::Result<u16> {
    http(url, "GET", "/health", "")
}

/// Polls `condition` every 20 ms for at most `limit`.
fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

fn assert_removed(paths: &[PathBuf]) {
    for path in paths {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
}

fn assert_samples_make_sense(observations: &ServerObservations) {
    let samples = &observations.samples;
    assert!(!samples.is_empty());
    assert!(
        samples.windows(2).all(|w| w[0].t_s < w[1].t_s),
        "sample times must increase: {samples:?}"
    );
    assert!(
        samples
            .iter()
            .filter_map(|s| s.cpu_percent)
            .all(|p| p.is_finite() && p >= 0.0),
        "{samples:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_memory_limit_the_server_is_oom_killed_and_stays_down() {
    if !prerequisite::cgroups() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        cpus: None,
        memory_bytes: Some(64 * MIB),
    };
    let server = ServerHandle::start(spec(
        dir.path(),
        &["--alloc-chars", "200000000", "--delay-ms", "100"],
        limits,
        false,
    ))
    .await
    .expect("start the API confined");
    let url = server.url().to_string();
    let paths = server.cgroup_paths();
    assert!(!paths.is_empty());
    assert_eq!(server.memory_limit_bytes(), Some(64 * MIB));
    assert!(server.confinement().starts_with("cgroup v"));
    assert_eq!(health(&url).unwrap(), 200);
    let epoch = Instant::now();

    // 200 MB for one order in a 64 MiB cgroup: the kernel kills the server mid-request.
    let answer = order(&url, "TOO-BIG");
    assert!(!matches!(answer, Ok(201)), "{answer:?}");
    assert!(wait_for(Duration::from_secs(10), || server
        .crashes_so_far()
        == 1));
    assert_eq!(server.pid(), None);
    // Nobody restarts it: connections are refused.
    let refused = health(&url).expect_err("the server must be down");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

    let observations = server.stop(Duration::from_secs(5), epoch).await;
    eprintln!("observations: {observations:#?}");
    assert_eq!(observations.crashes.len(), 1, "{observations:?}");
    let crash = &observations.crashes[0];
    assert!(crash.oom_killed, "{crash:?}");
    assert!(crash.cause.contains("OOM"), "{crash:?}");
    assert!(crash.t_s >= 0.0 && crash.t_s < 10.0, "{crash:?}");
    assert_eq!(observations.restarts, 0);
    assert!(!observations.stopped_cleanly);
    assert!(observations.oom_kills >= Some(1));
    assert_eq!(observations.memory_limit_bytes, Some(64 * MIB));
    assert!(
        observations
            .peak_memory_bytes
            .is_some_and(|peak| peak > 32 * MIB && peak <= 64 * MIB),
        "{:?}",
        observations.peak_memory_bytes
    );
    assert!(observations.confinement.starts_with("cgroup v"));
    assert!(observations.stop_outcome.contains("not running"));
    assert_samples_make_sense(&observations);
    assert_removed(&paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_is_restarted_on_the_same_url() {
    if !prerequisite::cgroups() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        cpus: Some(1.0),
        memory_bytes: Some(64 * MIB),
    };
    let server = ServerHandle::start(spec(
        dir.path(),
        &["--alloc-chars", "200000000", "--delay-ms", "100"],
        limits,
        true,
    ))
    .await
    .expect("start the API confined");
    let url = server.url().to_string();
    let paths = server.cgroup_paths();
    let first_pid = server.pid().expect("running");
    let epoch = Instant::now();

    let answer = order(&url, "TOO-BIG");
    assert!(!matches!(answer, Ok(201)), "{answer:?}");
    assert!(wait_for(Duration::from_secs(10), || server
        .crashes_so_far()
        == 1));
    // Back on the same address, in the same cgroup.
    assert!(wait_for(Duration::from_secs(15), || matches!(
        health(&url),
        Ok(200)
    )));
    // Sampling goes on across the restart.
    std::thread::sleep(Duration::from_millis(300));
    let second_pid = server.pid().expect("restarted");
    assert_ne!(first_pid, second_pid);
    let in_cgroup = std::fs::read_to_string(paths[0].join("cgroup.procs")).unwrap();
    assert!(
        in_cgroup
            .split_whitespace()
            .any(|p| p == second_pid.to_string()),
        "{in_cgroup}"
    );

    let observations = server.stop(Duration::from_secs(10), epoch).await;
    eprintln!("observations: {observations:#?}");
    assert_eq!(observations.crashes.len(), 1, "{observations:?}");
    assert!(observations.crashes[0].oom_killed);
    assert_eq!(observations.restarts, 1);
    assert!(observations.stopped_cleanly, "{observations:?}");
    assert_eq!(observations.cpu_limit, Some(1.0));
    assert!(observations.gave_up_restarting.is_none());
    assert_samples_make_sense(&observations);
    let crash_t = observations.crashes[0].t_s;
    let after_restart: Vec<_> = observations
        .samples
        .iter()
        .filter(|s| s.t_s > crash_t && s.threads.is_some())
        .collect();
    assert!(after_restart.len() >= 2, "{:?}", observations.samples);
    assert!(
        after_restart
            .iter()
            .all(|s| s.rss_bytes.is_some_and(|r| r > 0))
    );
    assert_removed(&paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_orders_in_flight_finish_and_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(
        dir.path(),
        &["--alloc-chars", "1000", "--delay-ms", "1000"],
        Limits::default(),
        false,
    );
    let orders_file = spec.orders_file.clone();
    let server = ServerHandle::start(spec).await.expect("start the API");
    assert_eq!(server.confinement(), "none");
    let url = server.url().to_string();
    let epoch = Instant::now();

    let codes: Vec<String> = (0..3).map(|i| format!("IN-FLIGHT-{i}")).collect();
    let clients: Vec<_> = codes
        .iter()
        .map(|code| {
            let (url, code) = (url.clone(), code.clone());
            std::thread::spawn(move || order(&url, &code))
        })
        .collect();
    // The orders take 1 s each: stop while they are being worked on.
    std::thread::sleep(Duration::from_millis(300));
    let started_stop = Instant::now();
    let observations = server.stop(Duration::from_secs(10), epoch).await;
    assert!(started_stop.elapsed() >= Duration::from_millis(500));
    for client in clients {
        assert_eq!(client.join().unwrap().unwrap(), 201);
    }
    assert!(observations.stopped_cleanly, "{observations:?}");
    assert!(observations.crashes.is_empty());
    assert!(
        observations.stop_outcome.contains("exited with status 0"),
        "{}",
        observations.stop_outcome
    );
    let file = purchasing_persistence::read_orders_file(&orders_file).unwrap();
    let persisted: Vec<&str> = file.orders.iter().map(|c| c.as_str()).collect();
    for code in &codes {
        assert!(
            persisted.contains(&code.as_str()),
            "{code} in {persisted:?}"
        );
    }
    // The server's log went to the log file.
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(!log.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_show_memory_threads_and_cpu_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(spec(
        dir.path(),
        &["--alloc-chars", "5000000", "--delay-ms", "0"],
        Limits::default(),
        false,
    ))
    .await
    .expect("start the API");
    let url = server.url().to_string();
    let epoch = Instant::now();
    for i in 0..20 {
        assert_eq!(order(&url, &format!("SAMPLE-{i}")).unwrap(), 201);
    }
    std::thread::sleep(Duration::from_millis(400));
    let observations = server.stop(Duration::from_secs(10), epoch).await;

    assert!(observations.samples.len() >= 5, "{observations:?}");
    assert_samples_make_sense(&observations);
    // At most one sample from before the epoch.
    assert!(observations.samples.iter().skip(1).all(|s| s.t_s >= 0.0));
    // The last sample may show the server already gone (it is taken while it stops).
    let (_last, while_running) = observations.samples.split_last().unwrap();
    for sample in while_running {
        assert!(sample.rss_bytes.is_some_and(|rss| rss > 0), "{sample:?}");
        assert!(sample.threads.is_some_and(|t| t > 0), "{sample:?}");
    }
    for sample in &observations.samples {
        assert_eq!(sample.memory_bytes, sample.rss_bytes, "unconfined: RSS");
    }
    assert!(
        observations
            .samples
            .iter()
            .skip(1)
            .all(|s| s.cpu_percent.is_some())
    );
    assert!(
        observations.cpu_seconds.is_some_and(|cpu| cpu > 0.0),
        "{:?}",
        observations.cpu_seconds
    );
    assert!(observations.peak_memory_bytes.is_some_and(|p| p > 0));
    assert!(observations.stopped_cleanly);
    assert_eq!(observations.confinement, "none");
    assert_eq!(observations.memory_limit_bytes, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confined_samples_show_the_cgroup_memory() {
    if !prerequisite::cgroups() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        cpus: Some(0.5),
        memory_bytes: Some(256 * MIB),
    };
    let server = ServerHandle::start(spec(
        dir.path(),
        &["--alloc-chars", "1000", "--delay-ms", "0"],
        limits,
        false,
    ))
    .await
    .expect("start the API confined");
    let paths = server.cgroup_paths();
    let epoch = Instant::now();
    assert_eq!(order(server.url(), "CONFINED").unwrap(), 201);
    std::thread::sleep(Duration::from_millis(300));
    let observations = server.stop(Duration::from_secs(10), epoch).await;
    assert_samples_make_sense(&observations);
    // The last sample may show the server already gone (it is taken while it stops).
    let (_last, while_running) = observations.samples.split_last().unwrap();
    for sample in while_running {
        assert!(sample.memory_bytes.is_some_and(|m| m > 0), "{sample:?}");
        assert!(sample.rss_bytes.is_some_and(|m| m > 0), "{sample:?}");
    }
    assert_eq!(observations.cpu_limit, Some(0.5));
    assert_eq!(observations.memory_limit_bytes, Some(256 * MIB));
    assert!(observations.cpu_throttled_s.is_some());
    assert_eq!(observations.oom_kills, Some(0));
    assert!(observations.stopped_cleanly);
    assert_removed(&paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_is_a_crash_but_not_an_oom_kill() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::start(spec(
        dir.path(),
        &["--alloc-chars", "1000", "--delay-ms", "0"],
        Limits::default(),
        false,
    ))
    .await
    .expect("start the API");
    let pid = server.pid().expect("running");
    // SAFETY: plain syscall on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    assert!(wait_for(Duration::from_secs(10), || server
        .crashes_so_far()
        == 1));
    let observations = server.stop(Duration::from_secs(5), Instant::now()).await;
    eprintln!("crashes: {:?}", observations.crashes);
    assert_eq!(observations.crashes.len(), 1);
    let crash = &observations.crashes[0];
    assert!(!crash.oom_killed);
    assert!(crash.cause.contains("SIGKILL"), "{crash:?}");
    assert!(crash.t_s <= 0.0, "crashed before the epoch: {crash:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let limits = if prerequisite::cgroups() {
        Limits {
            cpus: Some(1.0),
            memory_bytes: Some(128 * MIB),
        }
    } else {
        Limits::default()
    };
    let server = ServerHandle::start(spec(
        dir.path(),
        &["--alloc-chars", "1000", "--delay-ms", "0"],
        limits,
        true,
    ))
    .await
    .expect("start the API");
    let url = server.url().to_string();
    let pid = server.pid().expect("running");
    let paths = server.cgroup_paths();
    drop(server);
    // SAFETY: signal 0 only checks whether the process exists.
    let gone = unsafe { libc::kill(pid as i32, 0) } != 0;
    assert!(gone, "the server {pid} outlived its handle");
    assert!(health(&url).is_err());
    assert_removed(&paths);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors_say_what_failed() {
    let dir = tempfile::tempdir().unwrap();

    // The lab owns --bind and --orders-file.
    for args in [&["--bind", "0.0.0.0:9"][..], &["--orders-file=x"]] {
        let error = ServerHandle::start(spec(dir.path(), args, Limits::default(), false))
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("lab chooses"), "{error}");
    }

    // A server that exits at once: the error carries its own explanation.
    let mut bad = spec(dir.path(), &[], Limits::default(), false);
    bad.orders_file = dir.path().join("missing-dir").join("orders.txt");
    let error = ServerHandle::start(bad)
        .await
        .expect_err("no such directory");
    let message = error.to_string();
    eprintln!("start error: {message}");
    assert!(message.contains("exited with status 1"), "{message}");
    assert!(message.contains("before it was ready"), "{message}");
    assert!(message.contains("directory"), "{message}");

    // A binary that is not there.
    let mut missing = spec(dir.path(), &[], Limits::default(), false);
    missing.binary = dir.path().join("no-such-binary");
    let error = ServerHandle::start(missing).await.expect_err("no binary");
    assert!(error.to_string().contains("no-such-binary"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_server_has_its_core_to_itself() {
    if !prerequisite::cgroups() {
        return;
    }
    // The machine's cores, not this process's: an earlier test may have moved the test
    // process off a server's core already.
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let cores = if online.trim() == "0" { 1 } else { 2 };
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        cpus: Some(1.0),
        memory_bytes: None,
    };
    let server = ServerHandle::start(spec(dir.path(), &[], limits, false))
        .await
        .expect("start the API confined");
    let confinement = server.confinement();
    if cores < 2 {
        assert!(!confinement.contains("pinned"), "{confinement}");
        return;
    }
    // The server on the last core, the lab (its generator included) on the others.
    let allowed = |status: &str| -> String {
        let line = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap_or_else(|| panic!("no Cpus_allowed_list in {status}"));
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let pid = server.pid().expect("server running");
    let theirs = allowed(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap());
    let ours = allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    assert!(
        confinement.contains(&format!("pinned to core {theirs}"))
            && confinement.contains("the lab runs on"),
        "{confinement}; the server runs on {theirs}, the lab on {ours}"
    );
    assert!(
        !ours.split([',', '-']).any(|c| c == theirs),
        "the lab ({ours}) stays off the server's core ({theirs})"
    );
}
