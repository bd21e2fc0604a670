//! The store's hardening seen from outside, with real processes: two `purchasing-api`
//! servers writing one orders file (API nodes behind a load balancer) honour one
//! `Idempotency-Key` together — the same key sent to both at once writes one line.

mod common;

use std::time::Duration;

use common::{ApiServer, TINY_WORKLOAD, fresh_code};

const FORM: &str = "application/x-www-form-urlencoded";

/// How a server answered one keyed order in the end.
#[derive(Debug)]
struct Outcome {
    status: u16,
    replayed: bool,
}

/// Posts `code` with `key` until the answer is final: a 503 (shed) or 409 (in progress)
/// is retried as a client would, after a short pause.
async fn keyed_order(
    client: &reqwest::Client,
    server: &ApiServer,
    code: &str,
    key: &str,
) -> Outcome {
    for _ in 0..50 {
        let response = client
            .post(server.orders_url())
            .header("content-type", FORM)
            .header("idempotency-key", key)
            .body(format!("={code}"))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("{} does not answer: {e}\n{}", server.url(), server.stderr())
            });
        let status = response.status().as_u16();
        if status == 503 || status == 409 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        return Outcome { status, replayed };
    }
    panic!(
        "{} kept refusing key {key}\n{}",
        server.url(),
        server.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_orders_file_write_one_line_per_idempotency_key() {
    const KEYS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let orders_file = dir.path().join("PurchaseOrders.txt");
    let args: Vec<&str> = ["--protect"].into_iter().chain(TINY_WORKLOAD).collect();
    let servers = [
        ApiServer::spawn_with_file(&orders_file, &args),
        ApiServer::spawn_with_file(&orders_file, &args),
    ];
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    let mut codes = Vec::new();
    for _ in 0..KEYS {
        let (code, key) = (fresh_code(), fresh_code());
        let (first, second) = tokio::join!(
            keyed_order(&client, &servers[0], &code, &key),
            keyed_order(&client, &servers[1], &code, &key),
        );
        assert_eq!(
            (first.status, second.status),
            (201, 201),
            "{first:?} {second:?}"
        );
        assert!(
            first.replayed != second.replayed,
            "one server writes, the other replays: {first:?} {second:?}"
        );
        codes.push(code);
    }

    let file = servers[0].orders();
    assert!(file.malformed.is_empty(), "{:?}", file.malformed);
    let written: Vec<String> = file.orders.into_iter().map(|c| c.into_string()).collect();
    assert_eq!(
        written,
        codes,
        "exactly one line per key\n{}\n{}",
        servers[0].stderr(),
        servers[1].stderr()
    );
}
