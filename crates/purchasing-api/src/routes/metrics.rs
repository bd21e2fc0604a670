//! `GET /metrics`: gathers what the state knows as plain numbers and has
//! [`crate::metrics`] render it in the Prometheus text format.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::metrics::{self, render_store_failures};
use crate::state::AppState;

pub const PATH: &str = wire_contract::http::METRICS_PATH;

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    let mut text = state.metrics.render();
    text.push_str(&render_store_failures(
        state.store.orders_file_failure().is_some(),
        state.store.journal_failure().is_some(),
    ));
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}
