//! The router: routes, path matching, body limit, per-request ids and logs
//! ([`crate::request_log`]), metrics and the opt-in protections, composed in one place so
//! the whole HTTP surface can be read here.
//!
//! The faithful baseline is this same router with
//! [`Protections::default()`](crate::state::Protections::default): no
//! admission layer, no deadline layer, idempotency keys ignored.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Uri;
use axum::middleware;
use axum::routing::{get, post};

use crate::body::MAX_BODY_BYTES;
use crate::routes::{self, health, metrics as metrics_route, orders};
use crate::state::AppState;
use crate::{connection, deadline, metrics, request_log};

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
    // A panic is caught innermost, so its 500 is counted, logged and carries the request
    // id like any other answer.
    let routes = request_log::catch_panics(Router::new().fallback_service(routes));
    request_log::around(
        routes
            .layer(middleware::from_fn_with_state(metrics, metrics::track))
            .layer(middleware::map_request(canonicalize_path))
            .layer(middleware::from_fn(connection::close_if_body_unread)),
    )
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
