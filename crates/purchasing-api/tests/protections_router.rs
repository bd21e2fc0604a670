//! The protections called in-process through the router (`oneshot`, no socket): each
//! layer's answers and that none of them does work it should not. Behaviour that needs a
//! real socket or a real process (the limit under concurrent connections, restarts,
//! kill -9) is tested end to end in the workspace's `tests/protections.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use purchasing_api::admission::AdmissionLimits;
use purchasing_api::{AppState, Protections, app};
use purchasing_persistence::{PurchaseOrderStore, StoreOptions, Workload};
use tower::ServiceExt;

const FORM: &str = wire_contract::http::FORM_CONTENT_TYPE;
const BUDGET: &str = wire_contract::http::REQUEST_BUDGET_HEADER;
const KEY: &str = wire_contract::http::IDEMPOTENCY_KEY_HEADER;
const ORDERS: &str = wire_contract::http::REPLENISHMENT_PATH;

struct TestApp {
    router: Router,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn workload(delay_ms: u64) -> Workload {
    Workload {
        alloc_chars: 1000,
        delay: Duration::from_millis(delay_ms),
        release_early: false,
    }
}

fn test_app(delay_ms: u64, protections: Protections) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("PurchaseOrders.txt");
    let options = StoreOptions {
        durable: false,
        idempotency: protections.idempotency,
        max_concurrent_fills: None,
    };
    let store = PurchaseOrderStore::open_with(&path, workload(delay_ms), options).unwrap();
    TestApp {
        router: app(AppState::with_protections(Arc::new(store), &protections)),
        path,
        _dir: dir,
    }
}

/// Admission control only, with the work estimated as the delay.
fn admission(
    max_in_flight: usize,
    queue: usize,
    queue_timeout_ms: u64,
    delay_ms: u64,
) -> Protections {
    Protections {
        admission: Some(AdmissionLimits {
            max_in_flight,
            queue,
            queue_timeout: Duration::from_millis(queue_timeout_ms),
            adaptive: None,
        }),
        work_estimate: Some(Duration::from_millis(delay_ms)),
        ..Protections::default()
    }
}

/// Deadlines only.
fn deadlines(max_ms: u64, delay_ms: u64) -> Protections {
    Protections {
        max_request: Some(Duration::from_millis(max_ms)),
        work_estimate: Some(Duration::from_millis(delay_ms)),
        ..Protections::default()
    }
}

impl TestApp {
    async fn call(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    fn lines(&self) -> usize {
        std::fs::read_to_string(&self.path).unwrap().lines().count()
    }

    async fn metrics(&self) -> String {
        let response = self
            .call(
                Request::get(wire_contract::http::METRICS_PATH)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        text(response).await
    }
}

fn order(code: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post(ORDERS).header(header::CONTENT_TYPE, FORM);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from(format!("={code}"))).unwrap()
}

/// Sends an order without headers in the background; its status, when it is answered.
fn spawn_order(app: &Arc<TestApp>, code: &str) -> tokio::task::JoinHandle<StatusCode> {
    let app = Arc::clone(app);
    let request = order(code, &[]);
    tokio::spawn(async move { app.call(request).await.status() })
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn problem(response: Response<Body>) -> serde_json::Value {
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    serde_json::from_str(&text(response).await).unwrap()
}

/// The value of one unlabelled (or exactly labelled) sample in an exposition text.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_baseline_ignores_the_protection_headers() {
    let app = test_app(5, Protections::default());
    for headers in [
        &[(BUDGET, "0")][..],
        &[(BUDGET, "not a number")],
        &[(KEY, "same")],
        &[(KEY, "same")],
        &[(KEY, "not a valid key")],
    ] {
        let response = app.call(order("1", headers)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{headers:?}");
        assert!(
            response
                .headers()
                .get(wire_contract::http::IDEMPOTENT_REPLAYED_HEADER)
                .is_none()
        );
    }
    assert_eq!(app.lines(), 5);
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, "purchasing_admission_limit"), 0.0);
    assert!(!metrics.contains("purchasing_work_estimate_seconds"));
    assert!(!metrics.contains("purchasing_admission_typical_hold_seconds"));
}

#[tokio::test]
async fn a_malformed_budget_is_400() {
    let app = test_app(5, deadlines(10_000, 5));
    for budget in ["", "-5", "1.5", "soon", "5000ms"] {
        let response = app.call(order("1", &[(BUDGET, budget)])).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{budget:?}");
        let body = problem(response).await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("X-Request-Budget-Ms"),
            "{body}"
        );
    }
    assert_eq!(app.lines(), 0);
}

#[tokio::test]
async fn a_spent_budget_is_504_at_once_and_nothing_is_recorded() {
    let app = test_app(200, deadlines(10_000, 200));
    let started = Instant::now();
    let response = app.call(order("1", &[(BUDGET, "1")])).await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "no work done"
    );
    let body = problem(response).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was recorded")
    );
    // The same request with room for the work goes through.
    let response = app.call(order("2", &[(BUDGET, "5000")])).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(app.lines(), 1);
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "purchasing_deadline_rejected_total{stage=\"arrival\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn the_server_maximum_caps_the_clients_budget() {
    // A 100 ms maximum cannot fit a 200 ms order, whatever budget the client offers.
    let app = test_app(200, deadlines(100, 200));
    for headers in [&[][..], &[(BUDGET, "60000")]] {
        let response = app.call(order("1", headers)).await;
        assert_eq!(
            response.status(),
            StatusCode::GATEWAY_TIMEOUT,
            "{headers:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.lines(), 0);
}

#[tokio::test]
async fn the_limit_is_shared_by_every_clone_of_the_router() {
    // axum rebuilds a router's layers per connection; oneshot on clones does the same.
    let app = Arc::new(test_app(300, admission(2, 0, 250, 300)));
    let started = Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let response = app.call(order(&i.to_string(), &[])).await;
                (response.status(), started.elapsed(), response)
            })
        })
        .collect();
    let mut created = 0;
    for call in calls {
        let (status, elapsed, response) = call.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    elapsed < Duration::from_millis(150),
                    "shed fast: {elapsed:?}"
                );
                let retry_after: u64 = response.headers()[header::RETRY_AFTER]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry_after >= 1);
                let body = problem(response).await;
                assert_eq!(body["status"], 503);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 2);
    assert_eq!(app.lines(), 2);
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, "purchasing_shed_total"), 4.0);
    assert_eq!(sample(&metrics, "purchasing_admission_limit"), 2.0);
    // The two real holds have been measured into what the queue predicts from.
    assert!(sample(&metrics, "purchasing_admission_typical_hold_seconds") > 0.0);
    assert!(sample(&metrics, "purchasing_admission_hold_deviation_seconds") >= 0.0);
    assert_eq!(
        sample(
            &metrics,
            "purchasing_requests_total{route=\"orders\",status=\"503\"}"
        ),
        4.0
    );
}

#[tokio::test]
async fn a_queued_order_takes_the_next_free_slot() {
    // One slot, one queue place: the second order waits for the first; a third, arriving
    // while both are taken, is refused at once.
    let app = Arc::new(test_app(200, admission(1, 1, 1000, 200)));
    let first = spawn_order(&app, "1");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = spawn_order(&app, "2");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        sample(&app.metrics().await, "purchasing_admission_queued"),
        1.0
    );
    let third = app.call(order("3", &[])).await;
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        problem(third).await["detail"]
            .as_str()
            .unwrap()
            .contains("queue is full")
    );
    assert_eq!(first.await.unwrap(), StatusCode::CREATED);
    assert_eq!(second.await.unwrap(), StatusCode::CREATED);
    assert_eq!(app.lines(), 2);
}

#[tokio::test]
async fn a_queue_wait_that_times_out_is_503() {
    // The estimate (10 ms, give or take 4 × 5 ms) says a slot frees in time, so the order
    // waits; the real work (400 ms) holds the slot past the 100 ms queue timeout.
    let app = Arc::new(test_app(400, admission(1, 4, 100, 10)));
    let first = spawn_order(&app, "1");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = Instant::now();
    let second = app.call(order("2", &[])).await;
    let waited = started.elapsed();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        waited >= Duration::from_millis(90) && waited < Duration::from_millis(300),
        "{waited:?}"
    );
    assert_eq!(first.await.unwrap(), StatusCode::CREATED);
    assert_eq!(app.lines(), 1);
}

#[tokio::test]
async fn a_wait_predicted_to_exceed_the_queue_timeout_is_refused_at_once() {
    // One slot busy for 400 ms: the next order would wait ~400 ms, more than the 100 ms
    // the queue allows, so it is refused immediately rather than after 100 ms.
    let app = Arc::new(test_app(400, admission(1, 4, 100, 400)));
    let first = spawn_order(&app, "1");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = Instant::now();
    let second = app.call(order("2", &[])).await;
    let waited = started.elapsed();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key(header::RETRY_AFTER));
    assert!(waited < Duration::from_millis(60), "{waited:?}");
    assert!(
        text(second)
            .await
            .contains("none is expected to free within the 100 ms")
    );
    assert_eq!(first.await.unwrap(), StatusCode::CREATED);
    assert_eq!(app.lines(), 1);
}

#[tokio::test]
async fn at_the_start_of_a_burst_the_next_order_is_refused_at_once() {
    // Four orders start together and hold their slots for 300 ms. An average-rate guess
    // (300 ms / 4 slots = 75 ms) would let the fifth wait — and time out after 100 ms.
    // The slots' real start times say none frees for ~300 ms: refused at once.
    let app = Arc::new(test_app(300, admission(4, 4, 100, 300)));
    let burst: Vec<_> = (0..4)
        .map(|i| spawn_order(&app, &format!("b{i}")))
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = Instant::now();
    let fifth = app.call(order("5", &[])).await;
    let waited = started.elapsed();
    assert_eq!(fifth.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(waited < Duration::from_millis(60), "{waited:?}");
    assert!(
        text(fifth)
            .await
            .contains("none is expected to free within the 100 ms")
    );
    for order in burst {
        assert_eq!(order.await.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(app.lines(), 4);
}

#[tokio::test]
async fn waiting_stops_when_the_deadline_no_longer_leaves_room() {
    let protections = Protections {
        max_request: Some(Duration::from_secs(10)),
        ..admission(1, 4, 5000, 300)
    };
    let app = Arc::new(test_app(300, protections));
    let first = spawn_order(&app, "1");
    tokio::time::sleep(Duration::from_millis(30)).await;
    // 450 ms of budget: it fits on arrival, but after 150 ms of waiting it no longer does.
    let started = Instant::now();
    let second = app.call(order("2", &[(BUDGET, "450")])).await;
    let waited = started.elapsed();
    assert_eq!(second.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(waited < Duration::from_millis(400), "{waited:?}");
    assert_eq!(first.await.unwrap(), StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.lines(), 1);
    assert_eq!(
        sample(
            &app.metrics().await,
            "purchasing_deadline_rejected_total{stage=\"queue\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn a_slot_is_held_until_the_work_ends_even_when_the_client_left() {
    let app = Arc::new(test_app(400, admission(1, 0, 250, 400)));
    // The client gives up after 50 ms: its request future is dropped, but the blocking
    // work cannot be stopped and still holds the memory — and so the slot.
    let abandoned =
        tokio::time::timeout(Duration::from_millis(50), app.call(order("1", &[]))).await;
    assert!(abandoned.is_err());
    let response = app.call(order("2", &[])).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        sample(&app.metrics().await, "purchasing_orders_in_flight"),
        1.0
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let response = app.call(order("3", &[])).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // The abandoned order was written (a ghost: no deadline here) and the third one.
    assert_eq!(app.lines(), 2);
}

#[tokio::test]
async fn health_and_metrics_never_wait_for_a_slot() {
    let app = Arc::new(test_app(500, admission(1, 0, 250, 500)));
    let busy = spawn_order(&app, "1");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let health = app
        .call(
            Request::get(wire_contract::http::HEALTH_PATH)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = app.metrics().await;
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(sample(&metrics, "purchasing_orders_in_flight"), 1.0);
    assert_eq!(sample(&metrics, "purchasing_work_bytes_in_flight"), 1000.0);
    // A wrong method on the orders path is answered without a slot too.
    let wrong = app
        .call(Request::get(ORDERS).body(Body::empty()).unwrap())
        .await;
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(busy.await.unwrap(), StatusCode::CREATED);
}

#[tokio::test]
async fn with_idempotency_a_malformed_key_is_400_and_nothing_is_recorded() {
    let protections = Protections {
        idempotency: true,
        ..Protections::default()
    };
    let app = test_app(5, protections);
    for key in ["has space", &"k".repeat(256)] {
        let response = app.call(order("1", &[(KEY, key)])).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = problem(response).await;
        assert!(
            body["detail"].as_str().unwrap().contains("Idempotency-Key"),
            "{body}"
        );
    }
    let twice = Request::post(ORDERS)
        .header(header::CONTENT_TYPE, FORM)
        .header(KEY, "a")
        .header(KEY, "b")
        .body(Body::from("=1"))
        .unwrap();
    assert_eq!(app.call(twice).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.lines(), 0);
}

#[tokio::test]
async fn metrics_are_text_format_and_count_every_route() {
    let app = test_app(5, Protections::default());
    app.call(order("1", &[])).await;
    app.call(Request::get("/nowhere").body(Body::empty()).unwrap())
        .await;
    let response = app
        .call(Request::get("/METRICS").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let metrics = text(response).await;
    assert_eq!(
        sample(
            &metrics,
            "purchasing_requests_total{route=\"orders\",status=\"201\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            "purchasing_requests_total{route=\"other\",status=\"404\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&metrics, "purchasing_request_duration_seconds_count"),
        1.0
    );
    assert!(sample(&metrics, "process_resident_memory_bytes") > 0.0);
}
