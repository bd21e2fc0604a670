//! The purchasing API as a real process: the article's smoke request, bad inputs over a
//! real socket, the faithful workload, two processes on one file, shutdown, a SIGKILL
//! during durable writes, start-up failures.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ApiServer, TINY_WORKLOAD, bin_path, fresh_code};

const FORM: &str = "application/x-www-form-urlencoded";

/// Sends raw bytes and returns the whole response (the server closes after answering
/// because the request says `Connection: close`).
fn raw_http(server: &ApiServer, request: &str) -> String {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn the_articles_smoke_request_creates_the_order() {
    let server = ApiServer::spawn_tiny();
    // The request of the article's Fiddler smoke test, byte for byte (absolute-form
    // request target, as Fiddler shows it), plus the Host and Connection headers a
    // plain HTTP/1.1 client adds.
    let request = format!(
        "POST http://{addr}/api/StockReplenishmentRequests HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Content-Length: 4\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Connection: close\r\n\
         \r\n\
         =123",
        addr = server.addr
    );
    let response = raw_http(&server, &request);
    assert!(
        response.starts_with("HTTP/1.1 201 Created\r\n"),
        "{response}"
    );
    assert_eq!(server.orders_bytes(), b"Purchase order for item: 123\n");
}

#[tokio::test]
async fn bad_inputs_get_their_status_and_change_nothing() {
    let server = ApiServer::spawn_tiny();
    let client = reqwest::Client::new();
    let url = server.orders_url();
    let too_long = format!("={}", "x".repeat(101));
    let oversized = format!("={}", "a".repeat(10_000));
    // (method, path, content type, body, expected status)
    type Case<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "POST",
            url.clone(),
            Some(FORM),
            b"=123%0APurchase+order+for+item:+forged".to_vec(),
            400,
        ),
        (
            "POST",
            url.clone(),
            Some(FORM),
            b"=123%0D%0APurchase+order+for+item:+x".to_vec(),
            400,
        ),
        (
            "POST",
            url.clone(),
            Some("application/json"),
            b"\"1\\nPurchase order for item: 2\"".to_vec(),
            400,
        ),
        ("POST", url.clone(), Some(FORM), b"=a%00b".to_vec(), 400),
        ("POST", url.clone(), Some(FORM), b"=a%09b".to_vec(), 400),
        ("POST", url.clone(), Some(FORM), b"=".to_vec(), 400),
        ("POST", url.clone(), Some(FORM), b"".to_vec(), 400),
        ("POST", url.clone(), Some(FORM), too_long.into_bytes(), 400),
        ("POST", url.clone(), Some(FORM), b"=%FF%FE".to_vec(), 400),
        ("POST", url.clone(), Some(FORM), b"=%G1".to_vec(), 400),
        ("POST", url.clone(), Some(FORM), b"=1&=2".to_vec(), 400),
        (
            "POST",
            url.clone(),
            Some("application/json"),
            b"123".to_vec(),
            400,
        ),
        (
            "POST",
            url.clone(),
            Some("application/json"),
            b"{\"itemCode\":\"1\"}".to_vec(),
            400,
        ),
        (
            "POST",
            url.clone(),
            Some("application/json"),
            b"\"12".to_vec(),
            400,
        ),
        ("POST", url.clone(), None, b"=123".to_vec(), 415),
        (
            "POST",
            url.clone(),
            Some("text/plain"),
            b"=123".to_vec(),
            415,
        ),
        ("POST", url.clone(), Some(FORM), oversized.into_bytes(), 413),
        ("GET", url.clone(), None, vec![], 405),
        ("PUT", url.clone(), Some(FORM), b"=123".to_vec(), 405),
        ("DELETE", url.clone(), None, vec![], 405),
        (
            "POST",
            format!("{}/api/purchaseorders", server.url()),
            Some(FORM),
            b"=123".to_vec(),
            404,
        ),
        (
            "POST",
            format!("{}/health", server.url()),
            Some(FORM),
            b"=123".to_vec(),
            405,
        ),
    ];
    for (method, url, content_type, body, status) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let mut request = client.request(method.parse().unwrap(), &url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status().as_u16(),
            status,
            "{method} {url} {content_type:?} {shown:?}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{shown:?}"
        );
        if status == 405 {
            assert!(response.headers().contains_key("allow"), "{method} {url}");
        }
        let problem: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(problem["status"], status);
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        server.orders_bytes(),
        b"",
        "no bad request may write anything"
    );

    // ...and the server still takes a good order afterwards.
    let code = fresh_code();
    let response = client
        .post(&url)
        .header("content-type", FORM)
        .body(format!("={code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(server.orders().orders.len(), 1);
}

/// The one heavy test: the faithful workload (150,000,000 characters, 500 ms) really
/// happens. Bounds only from below, so a slow machine cannot make it fail.
#[tokio::test]
async fn the_default_workload_is_really_done() {
    let server = ApiServer::spawn(&[]);
    let before = server.rss_bytes();
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(server.orders_url())
        .header("content-type", FORM)
        .body("=heavy")
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status().as_u16(), 201);
    let grown = server.peak_rss_bytes().saturating_sub(before);
    assert!(
        elapsed >= Duration::from_millis(500),
        "one order took only {elapsed:?}"
    );
    assert!(
        grown >= 150_000_000,
        "peak RSS grew by only {grown} bytes over the idle RSS"
    );
    assert_eq!(server.orders_bytes(), b"Purchase order for item: heavy\n");
}

#[tokio::test]
async fn two_processes_on_one_file_write_one_whole_line_per_order() {
    const ORDERS: usize = 400;
    const CONCURRENCY: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PurchaseOrders.txt");
    let servers = [
        ApiServer::spawn_with_file(&file, &TINY_WORKLOAD),
        ApiServer::spawn_with_file(&file, &TINY_WORKLOAD),
    ];
    let urls: Vec<String> = servers.iter().map(ApiServer::orders_url).collect();

    let client = reqwest::Client::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    let mut codes = Vec::new();
    for i in 0..ORDERS {
        let code = fresh_code();
        codes.push(code.clone());
        let (client, url, permits) = (client.clone(), urls[i % 2].clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            client
                .post(url)
                .header("content-type", FORM)
                .body(format!("={code}"))
                .send()
                .await
        }));
    }
    for task in tasks {
        let response = task.await.unwrap().expect("request completes");
        assert_eq!(response.status().as_u16(), 201);
    }

    let orders = servers[0].orders();
    assert!(
        orders.malformed.is_empty(),
        "torn or interleaved lines: {:?}",
        orders.malformed
    );
    let mut written: Vec<String> = orders.orders.into_iter().map(|c| c.into_string()).collect();
    written.sort();
    codes.sort();
    assert_eq!(written, codes, "every order exactly once");
}

/// Durable acknowledgements are group-committed (one fsync covers the lines appended while
/// the previous one ran); a SIGKILL in the middle of a burst must still leave every order
/// answered 201 in the file exactly once, with no torn line, and a restart on the file
/// accepts orders again. (A SIGKILL keeps the page cache, so this checks that nothing is
/// acknowledged before it is written; that the flush covers it is the unit tests' part.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_durable_burst_loses_no_acknowledged_order() {
    const CONNECTIONS: usize = 32;
    const KILL_AFTER_ACKS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PurchaseOrders.txt");
    let durable = ["--durable", "--alloc-chars", "0", "--delay-ms", "0"];
    let mut server = ApiServer::spawn_with_file(&file, &durable);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    // Bounded in time whatever happens; each loop ends at its first failed request.
    let give_up = Instant::now() + Duration::from_secs(20);
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, acked) = (client.clone(), server.orders_url(), acked.clone());
            tokio::spawn(async move {
                while Instant::now() < give_up {
                    let code = fresh_code();
                    let sent = client.post(&url).header("content-type", FORM);
                    match sent.body(format!("={code}")).send().await {
                        Ok(response) if response.status().as_u16() == 201 => {
                            acked.lock().unwrap().push(code)
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < KILL_AFTER_ACKS && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.signal(libc::SIGKILL);
    server.wait_exit(Duration::from_secs(10));
    for sender in senders {
        sender.await.unwrap();
    }

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= KILL_AFTER_ACKS,
        "only {} acknowledged",
        acked.len()
    );
    let orders = server.orders();
    assert!(
        orders.malformed.is_empty(),
        "torn lines: {:?}",
        orders.malformed
    );
    let mut count = std::collections::HashMap::new();
    for code in &orders.orders {
        *count.entry(code.as_str().to_owned()).or_insert(0) += 1;
    }
    let missing = acked.iter().filter(|c| !count.contains_key(*c)).count();
    assert_eq!(missing, 0, "acknowledged orders missing of {}", acked.len());
    assert!(count.values().all(|&n| n == 1), "an order written twice");

    let restarted = ApiServer::spawn_with_file(&file, &durable);
    let response = client
        .post(restarted.orders_url())
        .header("content-type", FORM)
        .body(format!("={}", fresh_code()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201, "{}", restarted.stderr());
    assert_eq!(restarted.orders().orders.len(), orders.orders.len() + 1);
}

#[tokio::test]
async fn sigterm_lets_orders_in_flight_finish_and_exits_zero() {
    const IN_FLIGHT: usize = 5;
    let mut server = ApiServer::spawn(&["--alloc-chars", "1000", "--delay-ms", "1500"]);
    let client = reqwest::Client::new();
    let codes: Vec<String> = (0..IN_FLIGHT).map(|_| fresh_code()).collect();
    let tasks: Vec<_> = codes
        .iter()
        .map(|code| {
            let request = client
                .post(server.orders_url())
                .header("content-type", FORM)
                .body(format!("={code}"));
            tokio::spawn(request.send())
        })
        .collect();

    // Let every request reach the server and start its 1.5 s of work, then ask it to stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "a stopping server must not accept new connections"
    );

    for task in tasks {
        let response = task.await.unwrap().expect("in-flight request is answered");
        assert_eq!(response.status().as_u16(), 201);
    }
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        server.stderr()
    );

    let mut written: Vec<String> = server
        .orders()
        .orders
        .into_iter()
        .map(|c| c.into_string())
        .collect();
    let mut codes = codes;
    written.sort();
    codes.sort();
    assert_eq!(written, codes);
}

/// Runs the binary expecting it to fail at start-up; returns its stderr.
fn start_expecting_failure(args: &[&str]) -> String {
    let output = Command::new(bin_path("purchasing-api"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(
        output.stdout.is_empty(),
        "must not claim to listen: {:?}",
        output.stdout
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn fails_fast_with_one_clear_line() {
    let server = ApiServer::spawn_tiny();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("o.txt");
    let taken = server.addr.to_string();
    let stderr =
        start_expecting_failure(&["--bind", &taken, "--orders-file", file.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!("cannot listen on {taken}")) && stderr.contains("--bind"),
        "{stderr}"
    );

    let stderr = start_expecting_failure(&[
        "--bind",
        "127.0.0.1:0",
        "--orders-file",
        "/nonexistent-directory/PurchaseOrders.txt",
    ]);
    let line = stderr.lines().last().unwrap();
    assert!(
        line.contains("/nonexistent-directory/PurchaseOrders.txt")
            && line.contains("--orders-file"),
        "{stderr}"
    );

    let stderr = start_expecting_failure(&["--bind", "nonsense"]);
    assert!(stderr.contains("--bind"), "{stderr}");
}
