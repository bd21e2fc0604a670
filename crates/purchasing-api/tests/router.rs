//! The router called in-process with `tower::ServiceExt::oneshot` (no socket needed),
//! against a real store writing a real file. Real-socket behaviour (shutdown, several
//! processes, the exact smoke request) is tested end to end in the workspace's tests/.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use purchasing_api::{AppState, app};
use purchasing_persistence::{PurchaseOrderStore, Workload};
use tower::ServiceExt;
use wire_contract::http::{HEALTH_PATH, REPLENISHMENT_PATH, REQUEST_ID_HEADER};

const TINY: Workload = Workload {
    alloc_chars: 1000,
    delay: Duration::from_millis(5),
    release_early: false,
};

struct TestApp {
    router: Router,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn test_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("PurchaseOrders.txt");
    let store = PurchaseOrderStore::open(&path, TINY).unwrap();
    TestApp {
        router: app(AppState::new(Arc::new(store))),
        path,
        _dir: dir,
    }
}

impl TestApp {
    async fn call(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap()
    }
}

fn post(path: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

async fn json(response: Response<Body>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

const FORM: &str = wire_contract::http::FORM_CONTENT_TYPE;

#[tokio::test]
async fn any_spelling_of_the_path_reaches_the_controller() {
    let app = test_app();
    for path in [
        REPLENISHMENT_PATH.to_owned(),
        REPLENISHMENT_PATH.to_lowercase(),
        format!("{}?x=1", REPLENISHMENT_PATH.to_uppercase()),
    ] {
        let response = app.call(post(&path, FORM, "=123")).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{path}");
    }
    assert_eq!(app.file(), "Purchase order for item: 123\n".repeat(3));
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_and_a_problem_body() {
    let app = test_app();
    let response = app
        .call(
            Request::get(REPLENISHMENT_PATH)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "POST");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body = json(response).await;
    assert_eq!(body["status"], 405);
    assert_eq!(body["title"], "Method Not Allowed");
    assert!(body["detail"].as_str().unwrap().contains("GET"));
}

#[tokio::test]
async fn unknown_path_is_404_problem() {
    let app = test_app();
    let response = app.call(post("/api/PurchaseOrders", FORM, "=1")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(
        json(response).await["detail"]
            .as_str()
            .unwrap()
            .contains("StockReplenishmentRequests")
    );
    assert_eq!(app.file(), "");
}

#[tokio::test]
async fn health_answers_status_and_version() {
    let app = test_app();
    let response = app
        .call(Request::get(HEALTH_PATH).body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let app = test_app();
    let mut request = post(REPLENISHMENT_PATH, FORM, "=1");
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, "abc-123".parse().unwrap());
    let response = app.call(request).await;
    assert_eq!(response.headers()[REQUEST_ID_HEADER], "abc-123");

    // No id, or one that is not safe to log (too long): a fresh UUID is generated.
    let mut request = post(REPLENISHMENT_PATH, FORM, "=1");
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, "x".repeat(500).parse().unwrap());
    for request in [post(REPLENISHMENT_PATH, FORM, "=1"), request] {
        let response = app.call(request).await;
        let id = response.headers()[REQUEST_ID_HEADER].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
}

#[tokio::test]
async fn oversized_body_is_413_before_any_work() {
    let app = test_app();
    let body = format!("={}", "a".repeat(purchasing_api::body::MAX_BODY_BYTES));
    let response = app.call(post(REPLENISHMENT_PATH, FORM, &body)).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(app.file(), "");
}

#[tokio::test]
async fn store_failure_is_500_and_the_app_keeps_serving() {
    // The orders file is replaced by a directory after the store opened it: every
    // order's open for append then fails (EISDIR), as a vanished or unwritable file would.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("PurchaseOrders.txt");
    let store = PurchaseOrderStore::open(&path, TINY).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let router = app(AppState::new(Arc::new(store)));
    let response = router
        .clone()
        .oneshot(post(REPLENISHMENT_PATH, FORM, "=1"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(
        json(response).await["detail"]
            .as_str()
            .unwrap()
            .contains("not recorded")
    );

    let health = router
        .oneshot(Request::get(HEALTH_PATH).body(Body::empty()).unwrap())
        .await;
    assert_eq!(health.unwrap().status(), StatusCode::OK);
}
