//! The router: routes, path matching, body limit and per-request ids, composed in one
//! place so the whole HTTP surface can be read here.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use purchasing_persistence::PurchaseOrderStore;
use tracing::Instrument;

use crate::body::MAX_BODY_BYTES;
use crate::routes::{self, health, orders};

/// The correlation id header: taken from the client when it sends a sensible one,
/// generated otherwise, echoed in the response and recorded in every log line of the
/// request, so the inventory's and the API's logs can be joined.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id we adopt; longer ones are replaced, so a client
/// cannot make every log line arbitrarily long.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Every path the router serves, in its canonical spelling.
const ROUTES: [&str; 2] = [orders::PATH, health::PATH];

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The store is `Sync` and serialises its own appends; handlers share one instance.
    pub store: Arc<PurchaseOrderStore>,
}

/// The complete application: everything [`crate::server`] serves and tests call.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route(orders::PATH, post(orders::create))
        .route(health::PATH, get(health::health))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        // axum's default limit is 2 MB; an order needs a few bytes.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);

    // Path rewriting must happen before routing, and a `Router::layer` only runs after
    // a route matched; so the routes sit inside an outer router as its fallback service
    // and the outer router's layers wrap all of it. (Layers run outermost-last-added.)
    Router::new()
        .fallback_service(routes)
        .layer(middleware::map_request(canonicalize_path))
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
        if status.is_server_error() {
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

/// Visible ASCII only, bounded length: safe to log and to echo.
fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}
