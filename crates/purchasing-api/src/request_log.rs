//! Every request's id, span and log line, and the answer to a handler that panics — the
//! conventional tower-http layers, put around a router by [`around`] and
//! [`catch_panics`]:
//!
//! * **The request id** (`X-Request-Id`): a client's id is adopted when it is sensible
//!   ([`is_acceptable_request_id`]: visible ASCII, at most [`MAX_REQUEST_ID_LEN`] bytes,
//!   so it is safe to log and to echo), otherwise a UUID is generated
//!   (`SetRequestIdLayer`); the id is echoed in the response (`PropagateRequestIdLayer`)
//!   and recorded in every log line of the request, so the inventory's and the API's logs
//!   can be joined. tower-http adopts any id a client sends, so an unacceptable one is
//!   removed first ([`drop_unacceptable_request_id`]).
//! * **One span and one log line per request** (`TraceLayer`): request id, method, path,
//!   status and latency. Deliberate refusals (503, 504) are logged at debug and summed up
//!   once a second at info; server errors at warn; everything else at info.
//! * **A panicking handler answers 500** (`CatchPanicLayer`) with the API's usual
//!   `application/problem+json` body, instead of the connection being dropped without an
//!   answer.

use std::any::Any;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::problem::Problem;

/// The correlation id header (see the module doc).
pub const REQUEST_ID: HeaderName = HeaderName::from_static(wire_contract::http::REQUEST_ID_HEADER);

/// Longest client-supplied request id we adopt; longer ones are replaced, so a client
/// cannot make every log line arbitrarily long.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// `router` inside the request-id and tracing layers (outermost first: drop an
/// unacceptable client id; set the id, the client's or a new UUID; one span and log line
/// per request; echo the id in the response).
pub fn around(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::map_request(drop_unacceptable_request_id))
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(log_response)
                    .on_body_chunk(())
                    .on_eos(())
                    // Server errors are logged once, by `log_response`.
                    .on_failure(()),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
    )
}

/// `router` with a panic in any of its handlers answered `500` (see the module doc).
/// Innermost, so the answer is counted, logged and carries the request id like any other.
pub fn catch_panics(router: Router) -> Router {
    router.layer(CatchPanicLayer::custom(panic_response))
}

/// Removes a client's `X-Request-Id` that is not [acceptable](is_acceptable_request_id),
/// so that a fresh one is generated in its place. Only the first value counts, as in the
/// layers that read it.
async fn drop_unacceptable_request_id(mut request: Request) -> Request {
    let acceptable = request
        .headers()
        .get(&REQUEST_ID)
        .is_none_or(|id| id.to_str().is_ok_and(is_acceptable_request_id));
    if !acceptable {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// Visible ASCII only, bounded length: safe to log and to echo.
pub fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The span of one request; status and latency are recorded when it is answered.
fn request_span(request: &Request<Body>) -> Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

/// The request's one log line, in its span (entered by the trace layer).
fn log_response(response: &Response<Body>, latency: Duration, span: &Span) {
    let status = response.status();
    span.record("status", status.as_u16());
    // Microsecond resolution is plenty for a log line.
    let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
    span.record("latency_ms", latency_ms);
    if is_deliberate_refusal(status) {
        // Shedding and deadlines answer many requests in a spike by design: each is
        // counted in /metrics and logged at debug, and at info they are summed up once
        // a second. One info line per refusal was a quarter of a refusal's CPU under
        // a flood (formatting and writing 110 MB of log in 20 s).
        tracing::debug!("request refused");
        REFUSALS.count();
    } else if status.is_server_error() {
        tracing::warn!("request failed");
    } else {
        tracing::info!("request finished");
    }
}

/// The 500 for a handler that panicked; the panic's message goes to the log only.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "the request's handler panicked");
    Problem::internal(
        "the server failed while handling this request; if it was an order, it may or may \
         not be recorded: retry with the same Idempotency-Key, if you sent one (the server \
         log has the cause)",
    )
    .into_response()
}

/// Refusals since the last summary line, and when that was.
struct RefusalSummary {
    refused: AtomicU64,
    /// Milliseconds since [`RefusalSummary::epoch`] of the last summary.
    last_ms: AtomicU64,
    epoch: OnceLock<Instant>,
}

/// How often refusals are summed up in the log.
const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(1);

static REFUSALS: RefusalSummary = RefusalSummary {
    refused: AtomicU64::new(0),
    last_ms: AtomicU64::new(0),
    epoch: OnceLock::new(),
};

impl RefusalSummary {
    /// Counts one refusal; the first refusal after [`REFUSAL_SUMMARY_EVERY`] logs how many
    /// there were since the last line (itself included).
    fn count(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let epoch = *self.epoch.get_or_init(Instant::now);
        let now_ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_ms.load(Ordering::Relaxed);
        let every = REFUSAL_SUMMARY_EVERY.as_millis() as u64;
        if now_ms.saturating_sub(last) >= every
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.refused.swap(0, Ordering::Relaxed);
            tracing::info!(
                refused,
                "requests refused (503 at capacity, 504 deadline) since the last such line; \
                 each is in /metrics, and in the log at debug"
            );
        }
    }
}

/// 503 (shed) and 504 (deadline) are the protections working, not the server failing.
fn is_deliberate_refusal(status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    async fn call(router: Router, id: Option<&str>) -> Response {
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        if let Some(id) = id {
            request
                .headers_mut()
                .insert(REQUEST_ID, id.parse().unwrap());
        }
        router.oneshot(request).await.unwrap()
    }

    fn echoed(response: &Response) -> String {
        response.headers()[REQUEST_ID].to_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_sensible_client_id_is_echoed_any_other_is_replaced() {
        let router = around(Router::new().route("/", get(|| async { "ok" })));
        let longest = "k".repeat(MAX_REQUEST_ID_LEN);
        for id in ["abc-123", longest.as_str()] {
            assert_eq!(echoed(&call(router.clone(), Some(id)).await), id);
        }
        let too_long = "k".repeat(MAX_REQUEST_ID_LEN + 1);
        for id in [None, Some(""), Some("has space"), Some(too_long.as_str())] {
            let echoed = echoed(&call(router.clone(), id).await);
            assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{id:?}: {echoed}");
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_problem_with_the_request_id() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let router = around(catch_panics(Router::new().route("/", get(boom))));
        let response = call(router, Some("abc-123")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(echoed(&response), "abc-123");
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            wire_contract::http::PROBLEM_JSON
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["status"], 500);
        assert!(!body["detail"].as_str().unwrap().contains("boom"), "{body}");
    }
}
