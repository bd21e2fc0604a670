//! The router: routes, path matching, body limit, per-request ids, metrics and the
//! opt-in protections, composed in one place so the whole HTTP surface can be read here.
//!
//! The faithful baseline is this same router with [`Protections::default()`]: no
//! admission layer, no deadline layer, idempotency keys ignored.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tracing::Instrument;

use crate::body::MAX_BODY_BYTES;
use crate::routes::{self, health, metrics as metrics_route, orders};
use crate::state::AppState;
use crate::{connection, deadline, metrics};

/// The correlation id header: taken from the client when it sends a sensible one,
/// generated otherwise, echoed in the response and recorded in every log line of the
/// request, so the inventory's and the API's logs can be joined.
pub const REQUEST_ID: HeaderName = HeaderName::from_static(wire_contract::http::REQUEST_ID_HEADER);

/// Longest client-supplied request id we adopt; longer ones are replaced, so a client
/// cannot make every log line arbitrarily long.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Every path the router serves, in its canonical spelling.
const ROUTES: [&str; 3] = [orders::PATH, health::PATH, metrics_route::PATH];

/// The complete application: everything [`crate::server`] serves and tests call.
pub fn app(state: AppState) -> Router {
    // The deadline layer wraps the orders route only (`route_layer`: a 405 on this path
    // is answered without it); it sets the deadline on arrival and refuses hopeless
    // requests before their body is read. Admission control is not a layer: the handler
    // asks for a slot once the body is read and valid (see `crate::admission`), so
    // `/health` and `/metrics` never wait for an order slot, and neither does a slow
    // upload hold one.
    let mut orders_route = post(orders::create);
    if let Some(deadlines) = &state.deadlines {
        orders_route = orders_route.route_layer(middleware::from_fn_with_state(
            deadlines.clone(),
            deadline::enforce,
        ));
    }

    let metrics = state.metrics.clone();
    let routes = Router::new()
        .route(orders::PATH, orders_route)
        .route(health::PATH, get(health::health))
        .route(metrics_route::PATH, get(metrics_route::render))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        // axum's default limit is 2 MB; an order needs a few bytes.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);

    // Path rewriting must happen before routing, and a `Router::layer` only runs after
    // a route matched; so the routes sit inside an outer router as its fallback service
    // and the outer router's layers wrap all of it. (Layers run outermost-last-added.)
    // Metrics sit inside the path rewriting, so every spelling counts as its route.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .layer(middleware::map_request(canonicalize_path))
        .layer(middleware::from_fn(connection::close_if_body_unread))
        .layer(middleware::from_fn(request_span))
}

/// ASP.NET routing ignores case, so `/api/stockreplenishmentrequests` reached the
/// original controller; axum matches exactly. Rewrite any spelling of a known path to
/// the canonical one (query string kept) before the router sees it.
async fn canonicalize_path(mut request: Request) -> Request {
    let path = request.uri().path();
    if let Some(canonical) = ROUTES
        .iter()
        .find(|route| **route != path && route.eq_ignore_ascii_case(path))
    {
        let path_and_query = match request.uri().query() {
            Some(query) => format!("{canonical}?{query}"),
            None => canonical.to_string(),
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// One tracing span per request (request id, method, path, status, latency), one log
/// line when it completes, and the request id echoed in the response.
async fn request_span(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_acceptable_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("status", status.as_u16());
    // Microsecond resolution is plenty for a log line.
    let latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    span.record("latency_ms", latency_ms);
    span.in_scope(|| {
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
    });

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
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

/// Visible ASCII only, bounded length: safe to log and to echo.
fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}
