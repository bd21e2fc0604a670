//! The API against slow, silent and hostile clients, over real sockets: read timeouts,
//! the connection cap, a bounded shutdown, admission after the body, honest
//! `Connection` headers, and start-up refusals.

mod common;
// The persistence tests' small-disk helpers (a tmpfs of 64 KiB, chattr), reused as they
// are rather than copied.
#[path = "../crates/purchasing-persistence/tests/common/mod.rs"]
mod store_fs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ApiServer, TINY_WORKLOAD, bin_path, fresh_code};

/// One HTTP/1.1 response read off a connection that may stay open.
#[derive(Debug)]
struct Response {
    status: u16,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// Reads exactly one response (status line, headers, `Content-Length` body).
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').expect("header line");
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn connect(server: &ApiServer) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    BufReader::new(stream)
}

fn send(conn: &mut BufReader<TcpStream>, bytes: &str) {
    conn.get_mut().write_all(bytes.as_bytes()).unwrap();
}

fn order_request(code: &str) -> String {
    let body = format!("={code}");
    format!(
        "POST /api/StockReplenishmentRequests HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// Waits until the server closes `conn`; returns how long that took. Anything the server
/// sends first is read and returned too.
fn wait_for_close(conn: &mut BufReader<TcpStream>, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    conn.get_ref().set_read_timeout(Some(limit)).unwrap();
    let mut rest = String::new();
    match conn.read_to_string(&mut rest) {
        Ok(_) => (started.elapsed(), rest),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => (started.elapsed(), rest),
        Err(e) => panic!("the server kept the connection open for {limit:?} ({e})"),
    }
}

/// The value of an unlabelled metric in `/metrics`.
fn metric(server: &ApiServer, name: &str) -> f64 {
    let mut conn = connect(server);
    send(
        &mut conn,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let response = read_response(&mut conn).unwrap();
    response
        .body
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{}", response.body))
}

#[test]
fn slow_uploads_hold_no_order_slot_and_teach_the_estimate_nothing() {
    // Four slots, four clients that announce 100 bytes and send two: before the fix
    // they held all four slots (taken before the body was read) and every real order
    // got 503 until they gave up.
    let server = ApiServer::spawn(&[
        "--protect",
        "--max-in-flight",
        "4",
        "--durable=false",
        "--alloc-chars",
        "1000",
        "--delay-ms",
        "50",
        "--body-idle-timeout-ms",
        "1500",
    ]);
    let mut slow: Vec<_> = (0..4)
        .map(|_| {
            let mut conn = connect(&server);
            send(
                &mut conn,
                "POST /api/StockReplenishmentRequests HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n=S",
            );
            conn
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    for _ in 0..6 {
        let mut conn = connect(&server);
        send(&mut conn, &order_request(&fresh_code()));
        let response = read_response(&mut conn).unwrap();
        assert_eq!(
            response.status,
            201,
            "a real order while four uploads stall: {response:?}\n{}",
            server.stderr()
        );
    }

    // The stalled uploads are answered 408 once they pause too long, and closed.
    for conn in &mut slow {
        let response = read_response(conn).unwrap();
        assert_eq!(response.status, 408, "{response:?}");
        assert!(response.says_close(), "{response:?}");
        assert!(response.body.contains("1500 ms"), "{}", response.body);
        wait_for_close(conn, Duration::from_secs(5));
    }
    // The 1.5 s stalls never entered the hold-time estimate: it follows the real
    // orders' ≈ 50 ms holds.
    let typical = metric(&server, "purchasing_admission_typical_hold_seconds");
    assert!(typical < 0.5, "typical hold {typical} s");
    assert_eq!(server.orders().orders.len(), 6);
}

#[test]
fn a_half_sent_header_and_an_idle_keep_alive_connection_are_closed() {
    let mut args = TINY_WORKLOAD.to_vec();
    args.extend(["--header-timeout-ms", "300"]);
    let server = ApiServer::spawn(&args);

    let mut half = connect(&server);
    send(
        &mut half,
        "POST /api/StockReplenishmentRequests HTTP/1.1\r\nHost:",
    );
    let (after, _) = wait_for_close(&mut half, Duration::from_secs(5));
    assert!(after < Duration::from_secs(3), "closed after {after:?}");

    let mut idle = connect(&server);
    send(&mut idle, HEALTH);
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    let (after, _) = wait_for_close(&mut idle, Duration::from_secs(5));
    assert!(after < Duration::from_secs(3), "closed after {after:?}");

    // A silent connection is closed too, and the server still answers.
    let mut silent = connect(&server);
    wait_for_close(&mut silent, Duration::from_secs(5));
    let mut conn = connect(&server);
    send(&mut conn, HEALTH);
    assert_eq!(read_response(&mut conn).unwrap().status, 200);
}

#[test]
fn silent_connections_beyond_the_open_files_limit_do_not_stop_the_server() {
    // 300 silent connections against a process allowed 256 open files: before the cap
    // and the header timeout, accept failed with "too many open files" and `/health`
    // went unanswered for as long as they stayed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PurchaseOrders.txt");
    let mut args = TINY_WORKLOAD.to_vec();
    args.extend(["--header-timeout-ms", "500"]);
    let server = ApiServer::spawn_wrapped(&["prlimit", "--nofile=256:256", "--"], &file, &args);
    let silent: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let mut conn = connect(&server);
    send(&mut conn, HEALTH);
    let response = read_response(&mut conn).unwrap();
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    send(&mut conn, &order_request(&fresh_code()));
    assert_eq!(read_response(&mut conn).unwrap().status, 201);
    drop(silent);
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

#[test]
fn sigterm_with_a_half_sent_request_exits_within_the_shutdown_timeout() {
    let mut args = TINY_WORKLOAD.to_vec();
    // Read timeouts far beyond the shutdown bound: only the bound can end the wait.
    args.extend([
        "--shutdown-timeout-ms",
        "500",
        "--header-timeout-ms",
        "60000",
        "--body-idle-timeout-ms",
        "60000",
        "--body-timeout-ms",
        "60000",
    ]);
    let mut server = ApiServer::spawn(&args);
    let mut conn = connect(&server);
    send(&mut conn, &order_request("A1"));
    assert_eq!(read_response(&mut conn).unwrap().status, 201);
    let mut half = connect(&server);
    send(
        &mut half,
        "POST /api/StockReplenishmentRequests HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n=S",
    );
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server.stderr().contains("shutdown timeout"),
        "{}",
        server.stderr()
    );
    let codes: Vec<String> = server
        .orders()
        .orders
        .into_iter()
        .map(|c| c.into_string())
        .collect();
    assert_eq!(codes, ["A1"], "the acknowledged order, whole");
}

#[test]
fn a_refusal_keeps_a_usable_connection_and_a_close_is_announced() {
    // One slot, no queue, orders of 1 s: the second order is refused at once.
    let server = ApiServer::spawn(&[
        "--max-in-flight",
        "1",
        "--queue",
        "0",
        "--alloc-chars",
        "1000",
        "--delay-ms",
        "1000",
    ]);
    let mut busy = connect(&server);
    send(&mut busy, &order_request("BUSY"));
    std::thread::sleep(Duration::from_millis(200));

    let mut conn = connect(&server);
    send(&mut conn, &order_request("REFUSED"));
    let refused = read_response(&mut conn).unwrap();
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.header("retry-after").is_some(), "{refused:?}");
    assert!(
        !refused.says_close(),
        "the body was read: keep-alive {refused:?}"
    );
    // The same connection serves the next request.
    send(&mut conn, HEALTH);
    assert_eq!(read_response(&mut conn).unwrap().status, 200);
    assert_eq!(read_response(&mut busy).unwrap().status, 201);

    // A response that leaves the body unread says so, and the connection ends.
    let mut conn = connect(&server);
    send(
        &mut conn,
        "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n=12",
    );
    let not_found = read_response(&mut conn).unwrap();
    assert_eq!(not_found.status, 404);
    assert!(not_found.says_close(), "{not_found:?}");
    wait_for_close(&mut conn, Duration::from_secs(5));
}

#[test]
fn a_huge_declared_body_is_refused_without_100_continue() {
    let server = ApiServer::spawn_tiny();
    let mut conn = connect(&server);
    send(
        &mut conn,
        "POST /api/StockReplenishmentRequests HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\
         Expect: 100-continue\r\n\r\n",
    );
    let response = read_response(&mut conn).unwrap();
    assert_eq!(response.status, 413, "no 100 Continue first: {response:?}");
    assert!(response.says_close(), "{response:?}");
    assert!(server.orders_bytes().is_empty());
}

#[test]
fn auto_sizing_refuses_to_start_when_not_one_order_fits() {
    // 100 TB per order fits in no memory limit: the server says so instead of starting
    // and being OOM-killed by its first order.
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(bin_path("purchasing-api"))
        .args(["--bind", "127.0.0.1:0", "--protect", "--delay-ms", "5"])
        .args(["--alloc-chars", "100000000000000", "--orders-file"])
        .arg(dir.path().join("o.txt"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "must not claim to listen");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.contains("not one order fits in memory") && last.contains("--alloc-chars"),
        "{stderr}"
    );
}

#[test]
fn a_store_that_refuses_orders_until_a_restart_says_so_in_health_metrics_and_answers() {
    const TEST: &str =
        "a_store_that_refuses_orders_until_a_restart_says_so_in_health_metrics_and_answers";
    let Some(fs) = store_fs::SmallFs::mount(TEST) else {
        return;
    };
    // Whole lines up to 10 bytes before a page boundary, a full disk, and the file made
    // append-only: the next line only partly fits and cannot be taken back.
    let orders = fs.path().join("PurchaseOrders.txt");
    std::fs::write(&orders, store_fs::whole_lines_of(store_fs::PAGE - 10)).unwrap();
    let server = ApiServer::spawn_with_file(&orders, &TINY_WORKLOAD);
    if let Err(why) = fs.chattr(&orders, "+a") {
        store_fs::cannot_run_here(TEST, &why);
        return;
    }
    let filler = fs.fill();

    let mut conn = connect(&server);
    send(&mut conn, &order_request("C000141"));
    let failed = read_response(&mut conn).unwrap();
    assert_eq!(failed.status, 500, "{failed:?}");
    assert!(
        failed.body.contains("until it is restarted") && !failed.body.contains("can be retried"),
        "{}",
        failed.body
    );
    send(&mut conn, HEALTH);
    let health = read_response(&mut conn).unwrap();
    assert_eq!(health.status, 503, "{health:?}");
    assert!(
        health.body.contains("\"failing\"") && health.body.contains("restart the server"),
        "{}",
        health.body
    );
    let gauge = "purchasing_store_failed{part=\"orders_file\"}";
    assert_eq!(metric(&server, gauge), 1.0);
    assert_eq!(
        metric(&server, "purchasing_store_failed{part=\"journal\"}"),
        0.0
    );

    // Space again does not make it append onto the partial line.
    std::fs::remove_file(filler).unwrap();
    send(&mut conn, &order_request("C000142"));
    assert_eq!(read_response(&mut conn).unwrap().status, 500);
    drop(server);
    fs.chattr(&orders, "-a").unwrap();
    // A restart repairs the file, warns about what it removed, and serves again.
    let server = ApiServer::spawn_with_file(&orders, &TINY_WORKLOAD);
    let mut conn = connect(&server);
    send(&mut conn, &order_request("C000143"));
    assert_eq!(read_response(&mut conn).unwrap().status, 201);
    send(&mut conn, HEALTH);
    assert_eq!(read_response(&mut conn).unwrap().status, 200);
    let log = server.stderr();
    assert!(
        log.contains("WARN") && log.contains("partial last line"),
        "{log}"
    );
    let file = server.orders();
    assert!(file.malformed.is_empty(), "{:?}", file.malformed);
    assert_eq!(file.orders.last().unwrap().as_str(), "C000143");
}

#[test]
fn keys_dropped_because_the_orders_file_changed_are_a_warning_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("PurchaseOrders.txt");
    let mut args = TINY_WORKLOAD.to_vec();
    args.extend(["--protect", "--durable=false"]);
    let server = ApiServer::spawn_with_file(&orders, &args);
    for key in ["k-1", "k-2"] {
        let mut conn = connect(&server);
        let request = order_request(&fresh_code()).replacen(
            "Host: x\r\n",
            &format!("Host: x\r\nIdempotency-Key: {key}\r\n"),
            1,
        );
        send(&mut conn, &request);
        assert_eq!(read_response(&mut conn).unwrap().status, 201);
    }
    drop(server);
    // Rotated: the orders the keys point at are gone.
    std::fs::write(&orders, "").unwrap();
    let server = ApiServer::spawn_with_file(&orders, &args);
    let log = server.stderr();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("truncated, rotated or edited"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("dropped 2 idempotency keys"), "{warning}");
}
