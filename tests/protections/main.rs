//! The opt-in protections of the purchasing API as a real process on a real socket:
//! admission control under concurrent connections, shedding, deadlines, idempotent
//! replay (also after a restart), durable acknowledgements through repeated `kill -9`,
//! `/metrics` as Prometheus text, and a small protected spike.
//!
//! Every test checks the orders file with the persistence crate's parser: a protection
//! that answers correctly but writes the wrong lines fails here. `/metrics` is read with
//! the strict exposition parser in `prometheus.rs`.

#[path = "../common/mod.rs"]
mod common;
mod prometheus;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{ApiServer, fresh_code};
use prometheus::{parse_exposition, value};

const FORM: &str = "application/x-www-form-urlencoded";
const TINY: [&str; 2] = ["--alloc-chars", "1000"];

/// A client that opens a new connection per request, so concurrent requests really are
/// concurrent connections (what `axum::serve` rebuilds its layers for).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// What a test looks at in a response.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
    elapsed: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn problem(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let body: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        assert_eq!(body["status"], self.status, "{self:?}");
        body
    }

    fn detail(&self) -> String {
        self.problem()["detail"].as_str().unwrap().to_string()
    }

    fn retry_after(&self) -> u64 {
        self.header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {self:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("Retry-After is not whole seconds ({e}): {self:?}"))
    }
}

async fn try_order(
    client: &reqwest::Client,
    url: &str,
    code: &str,
    headers: &[(&str, &str)],
) -> reqwest::Result<Answer> {
    let started = Instant::now();
    let mut request = client
        .post(url)
        .header("content-type", FORM)
        .body(format!("={code}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await?;
    Ok(Answer {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

async fn order(server: &ApiServer, code: &str, headers: &[(&str, &str)]) -> Answer {
    try_order(&client(), &server.orders_url(), code, headers)
        .await
        .expect("the server answers")
}

/// Sends `count` orders at once (fresh codes, one connection each) and returns the answers.
async fn burst(server: &ApiServer, count: usize, headers: &[(&str, &str)]) -> Vec<Answer> {
    let client = client();
    let url = server.orders_url();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (client, url, headers) = (client.clone(), url.clone(), headers.clone());
            tokio::spawn(async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                try_order(&client, &url, &fresh_code(), &headers).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().expect("every request is answered"));
    }
    answers
}

fn count(answers: &[Answer], status: u16) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

async fn get(server: &ApiServer, path: &str) -> Answer {
    let started = Instant::now();
    let response = client()
        .get(format!("{}{path}", server.url()))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Answer {
        status,
        headers,
        body: response.text().await.unwrap(),
        elapsed: started.elapsed(),
    }
}

fn lines(server: &ApiServer) -> usize {
    let orders = server.orders();
    assert!(orders.malformed.is_empty(), "{:?}", orders.malformed);
    orders.orders.len()
}

// ---------------------------------------------------------------- admission control

#[tokio::test]
async fn the_limit_is_global_across_connections_and_the_excess_is_shed_fast() {
    let server = ApiServer::spawn(&[
        TINY[0],
        TINY[1],
        "--delay-ms",
        "500",
        "--max-in-flight",
        "2",
        "--queue",
        "0",
    ]);
    let answers = burst(&server, 6, &[]).await;
    assert_eq!(count(&answers, 201), 2, "{answers:#?}");
    assert_eq!(count(&answers, 503), 4, "{answers:#?}");
    for shed in answers.iter().filter(|a| a.status == 503) {
        // Answered long before the 500 ms of work of the admitted two could end.
        assert!(shed.elapsed < Duration::from_millis(300), "{shed:?}");
        assert!(shed.retry_after() >= 1);
        assert!(shed.detail().contains("Nothing was recorded"), "{shed:?}");
    }
    assert_eq!(lines(&server), 2, "a shed order must leave no line");
}

#[tokio::test]
async fn health_and_metrics_answer_while_every_slot_is_taken() {
    let server = ApiServer::spawn(&[
        TINY[0],
        TINY[1],
        "--delay-ms",
        "800",
        "--max-in-flight",
        "1",
        "--queue",
        "0",
    ]);
    let busy = {
        let url = server.orders_url();
        tokio::spawn(async move { try_order(&client(), &url, "busy", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let health = get(&server, "/health").await;
    assert_eq!(health.status, 200);
    let metrics = get(&server, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(health.elapsed < Duration::from_millis(200), "{health:?}");
    assert!(metrics.elapsed < Duration::from_millis(200), "{metrics:?}");
    let samples = parse_exposition(&metrics.body).unwrap();
    assert_eq!(value(&samples, "purchasing_orders_in_flight", &[]), 1.0);
    assert_eq!(value(&samples, "purchasing_admission_limit", &[]), 1.0);

    assert_eq!(order(&server, "refused", &[]).await.status, 503);
    assert_eq!(busy.await.unwrap().unwrap().status, 201);
    assert_eq!(lines(&server), 1);
}

// ---------------------------------------------------------------- deadlines

#[tokio::test]
async fn the_baseline_ignores_the_budget_header() {
    let server = ApiServer::spawn(&[TINY[0], TINY[1], "--delay-ms", "50"]);
    let answer = order(&server, "1", &[("x-request-budget-ms", "1")]).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(lines(&server), 1);
}

#[tokio::test]
async fn a_spent_budget_is_refused_without_doing_the_work() {
    let server = ApiServer::spawn(&[
        TINY[0],
        TINY[1],
        "--delay-ms",
        "200",
        "--max-request-ms",
        "10000",
    ]);
    let answer = order(&server, "late", &[("x-request-budget-ms", "1")]).await;
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(answer.elapsed < Duration::from_millis(150), "{answer:?}");
    assert!(
        answer.detail().contains("nothing was recorded"),
        "{answer:?}"
    );
    // Long after the work would have ended: still no (ghost) order.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(lines(&server), 0);
}

#[tokio::test]
async fn a_budget_shorter_than_the_work_leaves_no_order() {
    let server = ApiServer::spawn(&[
        TINY[0],
        TINY[1],
        "--delay-ms",
        "300",
        "--max-request-ms",
        "10000",
    ]);
    let answer = order(&server, "short", &[("x-request-budget-ms", "100")]).await;
    assert_eq!(answer.status, 504, "{answer:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lines(&server), 0);
}

#[tokio::test]
async fn a_deadline_that_passes_during_the_work_stops_the_append() {
    // One blocking thread: the second order fits its budget on arrival (450 ms for 300 ms
    // of work), then waits 300 ms for the thread, so its deadline passes while it works.
    // The store's last check, just before the append, must catch it.
    let server = ApiServer::spawn(&[
        TINY[0],
        TINY[1],
        "--delay-ms",
        "300",
        "--max-request-ms",
        "10000",
        "--max-blocking-threads",
        "1",
    ]);
    let first = {
        let url = server.orders_url();
        tokio::spawn(async move { try_order(&client(), &url, "first", &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = order(&server, "second", &[("x-request-budget-ms", "450")]).await;
    assert_eq!(second.status, 504, "{second:?}");
    assert!(
        second.detail().contains("nothing was recorded"),
        "{second:?}"
    );
    assert_eq!(first.await.unwrap().unwrap().status, 201);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let orders = server.orders();
    assert_eq!(
        orders.orders.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        ["first"]
    );
    let samples = parse_exposition(&get(&server, "/metrics").await.body).unwrap();
    assert_eq!(
        value(
            &samples,
            "purchasing_deadline_rejected_total",
            &[("stage", "store")]
        ),
        1.0
    );
}

// ---------------------------------------------------------------- idempotency

#[tokio::test]
async fn a_repeated_key_replays_without_a_second_line_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PurchaseOrders.txt");
    let args = [TINY[0], TINY[1], "--delay-ms", "5", "--idempotency"];
    let key = fresh_code();
    let code = fresh_code();
    {
        let server = ApiServer::spawn_with_file(&file, &args);
        let first = order(&server, &code, &[("idempotency-key", &key)]).await;
        assert_eq!(first.status, 201, "{first:?}");
        assert_eq!(first.header("idempotent-replayed"), None);
        let second = order(&server, &code, &[("idempotency-key", &key)]).await;
        assert_eq!(second.status, 201, "{second:?}");
        assert_eq!(second.header("idempotent-replayed"), Some("true"));
        assert_eq!(lines(&server), 1);
        // Dropping the server kills it (SIGKILL): no clean shutdown to rely on.
    }
    let server = ApiServer::spawn_with_file(&file, &args);
    let after_restart = order(&server, &code, &[("idempotency-key", &key)]).await;
    assert_eq!(after_restart.status, 201, "{after_restart:?}");
    assert_eq!(after_restart.header("idempotent-replayed"), Some("true"));
    assert_eq!(lines(&server), 1);
    // A new key is a new order.
    let other = order(&server, &code, &[("idempotency-key", &fresh_code())]).await;
    assert_eq!(other.status, 201);
    assert_eq!(other.header("idempotent-replayed"), None);
    assert_eq!(lines(&server), 2);
}

#[tokio::test]
async fn a_duplicate_while_the_first_is_in_progress_is_409() {
    let server = ApiServer::spawn(&[TINY[0], TINY[1], "--delay-ms", "500", "--idempotency"]);
    let key = fresh_code();
    let first = {
        let (url, key) = (server.orders_url(), key.clone());
        tokio::spawn(
            async move { try_order(&client(), &url, "42", &[("idempotency-key", &key)]).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let duplicate = order(&server, "42", &[("idempotency-key", &key)]).await;
    assert_eq!(duplicate.status, 409, "{duplicate:?}");
    assert_eq!(duplicate.retry_after(), 1);
    assert!(duplicate.detail().contains("in progress"), "{duplicate:?}");
    assert_eq!(first.await.unwrap().unwrap().status, 201);
    // Once the first is done, the duplicate's retry gets its outcome.
    let retry = order(&server, "42", &[("idempotency-key", &key)]).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(lines(&server), 1);
}

#[tokio::test]
async fn a_key_reused_for_another_item_code_is_422() {
    let server = ApiServer::spawn(&[TINY[0], TINY[1], "--delay-ms", "5", "--idempotency"]);
    let key = fresh_code();
    assert_eq!(
        order(&server, "first", &[("idempotency-key", &key)])
            .await
            .status,
        201
    );
    let reused = order(&server, "second", &[("idempotency-key", &key)]).await;
    assert_eq!(reused.status, 422, "{reused:?}");
    let detail = reused.detail();
    assert!(
        detail.contains(&key) && detail.contains("first") && detail.contains("second"),
        "{detail}"
    );
    assert_eq!(lines(&server), 1);
}

// ---------------------------------------------------------------- durability

/// A tiny pseudo-random generator (xorshift), seeded per run; the seed is printed so a
/// failure can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        eprintln!("kill -9 test seed: {seed}");
        Self(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

type KeyedAnswer = (String, reqwest::Result<Answer>);

/// Sends every pending (key, code) at once, each with its key.
fn send_keyed(
    client: &reqwest::Client,
    server: &ApiServer,
    pending: &BTreeMap<String, String>,
) -> Vec<tokio::task::JoinHandle<KeyedAnswer>> {
    let url = server.orders_url();
    pending
        .iter()
        .map(|(key, code)| {
            let (client, url, key, code) = (client.clone(), url.clone(), key.clone(), code.clone());
            tokio::spawn(async move {
                let answer = try_order(&client, &url, &code, &[("idempotency-key", &key)]).await;
                (key, answer)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn durable_acknowledged_orders_survive_repeated_kill_9() {
    const CYCLES: usize = 40;
    const NEW_PER_CYCLE: usize = 8;
    const TIME_LIMIT: Duration = Duration::from_secs(60);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("PurchaseOrders.txt");
    let args = [
        TINY[0],
        TINY[1],
        "--delay-ms",
        "20",
        "--durable",
        "--idempotency",
    ];
    let mut rng = Rng::new();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // key → item code, for every logical request not yet acknowledged.
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut acknowledged: HashMap<String, String> = HashMap::new();
    let mut interrupted = 0;
    // Acknowledged only on a re-send, because the kill came between the append and the
    // answer: the case idempotency exists for.
    let mut replayed = 0;

    for cycle in 0..=CYCLES {
        let last = cycle == CYCLES;
        let server = ApiServer::spawn_with_file(&file, &args);
        if !last {
            for _ in 0..NEW_PER_CYCLE {
                pending.insert(fresh_code(), fresh_code());
            }
        }
        let tasks = send_keyed(&client, &server, &pending);
        if !last {
            tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
            server.signal(libc::SIGKILL);
        }
        for task in tasks {
            let (key, answer) = task.await.unwrap();
            match answer {
                Ok(answer) if answer.status == 201 => {
                    if answer.header("idempotent-replayed") == Some("true") {
                        replayed += 1;
                    }
                    let code = pending.remove(&key).unwrap();
                    acknowledged.insert(key, code);
                }
                Ok(answer) => panic!("cycle {cycle}: unexpected answer {answer:?}"),
                Err(e) => {
                    assert!(!last, "without a kill every request is answered: {e}");
                    interrupted += 1;
                }
            }
        }
        drop(server);
        assert!(
            started.elapsed() < TIME_LIMIT,
            "too slow: {cycle} cycles in {:?}",
            started.elapsed()
        );
    }

    assert!(pending.is_empty(), "never acknowledged: {pending:?}");
    assert!(
        interrupted > 0,
        "no kill ever interrupted a request: the test proved nothing"
    );
    let orders = purchasing_persistence::read_orders_file(&file).unwrap();
    assert!(
        orders.malformed.is_empty(),
        "torn lines: {:?}",
        orders.malformed
    );
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for code in &orders.orders {
        *seen.entry(code.as_str()).or_default() += 1;
    }
    let expected: HashSet<&str> = acknowledged.values().map(String::as_str).collect();
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<_> = expected.iter().filter(|c| !seen.contains_key(*c)).collect();
    let unexpected: Vec<_> = seen.keys().filter(|c| !expected.contains(*c)).collect();
    assert!(duplicated.is_empty(), "written twice: {duplicated:?}");
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
    assert!(unexpected.is_empty(), "never requested: {unexpected:?}");
    assert_eq!(orders.orders.len(), CYCLES * NEW_PER_CYCLE);
    eprintln!(
        "{} orders, {interrupted} requests interrupted by kill -9, {replayed} acknowledged \
         by a replay, in {:?}",
        orders.orders.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------- metrics

#[test]
fn the_exposition_parser_is_strict() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"\\\\\\n\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\n\
                h_count 2\n";
    let samples = parse_exposition(good).unwrap();
    assert_eq!(samples[0].labels[0].1, "1\"\\\n");
    for bad in [
        "a 1",                                                            // no final newline
        "a 1\n",                                                          // undeclared
        "# TYPE a counter\na -1\n",                                       // negative counter
        "# TYPE a gauge\na{x=1} 1\n",                                     // unquoted label
        "# TYPE a gauge\na{x=\"1\"} one\n",                               // bad value
        "# TYPE a gauge\na 1\n# TYPE a gauge\n",                          // second TYPE
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"\"} 1\n",        // split family
        "# TYPE a gauge\na 1\na 2\n",                                     // repeated series
        "# TYPE 1a gauge\n",                                              // bad name
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", // no +Inf
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let server = ApiServer::spawn(&[
        TINY[0],
        TINY[1],
        "--delay-ms",
        "5",
        "--max-in-flight",
        "2",
        "--max-request-ms",
        "5000",
    ]);
    let before = get(&server, "/metrics").await;
    assert_eq!(
        before.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let before = parse_exposition(&before.body).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        assert_eq!(order(&server, &fresh_code(), &[]).await.status, 201);
    }
    assert_eq!(
        order(&server, "x", &[("x-request-budget-ms", "0")])
            .await
            .status,
        504
    );
    let after = get(&server, "/metrics").await;
    let after = parse_exposition(&after.body).unwrap_or_else(|e| panic!("{e}"));

    let created = [("route", "orders"), ("status", "201")];
    assert_eq!(value(&after, "purchasing_requests_total", &created), 3.0);
    assert!(!before.iter().any(|s| s.name == "purchasing_requests_total"
        && s.labels.contains(&("status".into(), "201".into()))));
    assert_eq!(
        value(&after, "purchasing_request_duration_seconds_count", &[])
            - value(&before, "purchasing_request_duration_seconds_count", &[]),
        4.0
    );
    assert!(value(&after, "purchasing_request_duration_seconds_sum", &[]) > 0.015);
    assert_eq!(
        value(
            &after,
            "purchasing_deadline_rejected_total",
            &[("stage", "arrival")]
        ),
        1.0
    );
    assert!(value(&after, "process_resident_memory_bytes", &[]) > 1e6);
    assert_eq!(value(&after, "purchasing_admission_limit", &[]), 2.0);
    assert_eq!(value(&after, "purchasing_orders_in_flight", &[]), 0.0);
    // Counters never go down between scrapes.
    for sample in &before {
        if sample.name.ends_with("_total") || sample.name.ends_with("_count") {
            let later = after
                .iter()
                .find(|s| s.name == sample.name && s.labels == sample.labels)
                .unwrap();
            assert!(later.value >= sample.value, "{sample:?} went down");
        }
    }
}

#[tokio::test]
async fn auto_sizing_is_exposed() {
    let server = ApiServer::spawn(&[TINY[0], TINY[1], "--delay-ms", "5", "--protect"]);
    let samples = parse_exposition(&get(&server, "/metrics").await.body).unwrap();
    let limit = value(&samples, "purchasing_admission_limit", &[]);
    let n_mem = value(&samples, "purchasing_sizing_memory_max_in_flight", &[]);
    let n_cpu = value(&samples, "purchasing_sizing_cpu_max_in_flight", &[]);
    // A tiny workload: neither memory nor CPU binds; the cap (the blocking pool) does.
    assert!((1.0..=512.0).contains(&limit), "{limit}");
    assert_eq!(limit, n_mem.min(n_cpu).clamp(1.0, 512.0));
    assert!(value(&samples, "purchasing_sizing_memory_limit_bytes", &[]) > 0.0);
    assert!(value(&samples, "purchasing_sizing_cpus", &[]) > 0.0);
}

// ---------------------------------------------------------------- a protected spike

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_protected_spike_gets_only_orders_or_clean_refusals() {
    const SPIKE: usize = 100;
    let server = ApiServer::spawn(&[
        TINY[0],
        TINY[1],
        "--delay-ms",
        "50",
        "--protect",
        "--max-in-flight",
        "4",
    ]);
    let started = Instant::now();
    let answers = tokio::time::timeout(Duration::from_secs(15), burst(&server, SPIKE, &[]))
        .await
        .expect("no request hangs");
    let created = count(&answers, 201);
    let shed = count(&answers, 503);
    assert_eq!(created + shed, SPIKE, "only 201 or 503: {answers:#?}");
    assert!(created >= 4, "{created} created");
    for refusal in answers.iter().filter(|a| a.status == 503) {
        assert!(refusal.retry_after() >= 1);
        refusal.problem();
    }
    assert_eq!(lines(&server), created, "one line per 201, none for a 503");
    eprintln!(
        "spike of {SPIKE}: {created} created, {shed} shed in {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------- adaptive admission

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adaptive_limit_moves_both_ways_and_never_past_its_cap() {
    // Fills of 4 MB (milliseconds each, at most one per CPU at a time behind the fill
    // gate) and short sleeps: the limit starts where auto sizing puts it, grows while
    // bursts are refused and orders hardly wait for the CPU, and comes down when they
    // queue for it longer than the two-fill target — never past its cap of 8 (the blocking
    // threads here), and every order is written once or cleanly refused.
    let server = ApiServer::spawn(&[
        "--alloc-chars",
        "4000000",
        "--delay-ms",
        "5",
        "--protect",
        "--durable=false",
        "--max-blocking-threads",
        "8",
    ]);
    let before = parse_exposition(&get(&server, "/metrics").await.body).unwrap();
    assert_eq!(value(&before, "purchasing_admission_limit_cap", &[]), 8.0);
    let mut created = 0;
    let mut limits = Vec::new();
    for _ in 0..20 {
        let answers = tokio::time::timeout(Duration::from_secs(30), burst(&server, 24, &[]))
            .await
            .expect("no request hangs");
        assert_eq!(count(&answers, 201) + count(&answers, 503), 24);
        created += count(&answers, 201);
        let now = parse_exposition(&get(&server, "/metrics").await.body).unwrap();
        limits.push(value(&now, "purchasing_admission_limit", &[]));
    }
    let after = parse_exposition(&get(&server, "/metrics").await.body).unwrap();
    let moved = |direction| {
        value(
            &after,
            "purchasing_admission_limit_changes_total",
            &[("direction", direction)],
        )
    };
    let (up, down) = (moved("up"), moved("down"));
    let wait = value(&after, "purchasing_admission_gate_wait_seconds", &[]);
    let target = value(&after, "purchasing_admission_gate_wait_target_seconds", &[]);
    assert!(
        up >= 1.0 && down >= 1.0,
        "limits {limits:?}, {up} up, {down} down, gate wait {wait} s, target {target} s"
    );
    assert!(
        limits.iter().all(|&n| (1.0..=8.0).contains(&n)),
        "{limits:?}"
    );
    assert!(target > 0.0 && value(&after, "purchasing_fill_seconds", &[]) > 0.0);
    assert_eq!(lines(&server), created, "one line per 201");
}
