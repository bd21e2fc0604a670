//! `GET /metrics`: gathers what the state knows as plain numbers and has
//! [`crate::metrics`] render it in the Prometheus text format.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::limits;
use crate::metrics::{self, AdmissionNow, Scrape};
use crate::state::AppState;

pub const PATH: &str = wire_contract::http::METRICS_PATH;

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    let scrape = Scrape {
        admission: state.admission.as_ref().map(|admission| {
            let (typical_hold, hold_deviation) = admission.typical_hold();
            AdmissionNow {
                queued: admission.queued(),
                typical_hold,
                hold_deviation,
            }
        }),
        resident_memory_bytes: limits::resident_memory_bytes(),
        orders_file_failed: state.store.orders_file_failure().is_some(),
        journal_failed: state.store.journal_failure().is_some(),
    };
    let mut response = state.metrics.render(&scrape).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}
