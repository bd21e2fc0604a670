//! `GET /health`: a cheap probe for load balancers. It touches neither the blocking pool
//! nor the disk, so it answers even while every order is in progress.
//!
//! `200 {"status":"ok"}` while the server can take orders. `503 {"status":"failing",
//! "problems":[…]}` while part of the store refuses orders until a restart — the orders
//! file (a partial line could not be removed, so every order fails) or the idempotency
//! journal (an fsync failed, so keyed orders fail; with `--protect` clients send keys, so
//! that is most traffic). A balancer then takes the node out of rotation instead of
//! sending it orders it can only refuse, and an operator sees why.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::state::AppState;

pub const PATH: &str = wire_contract::http::HEALTH_PATH;

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    /// What refuses orders until a restart, and why; absent when nothing does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let problems: Vec<String> = [
        state.store.orders_file_failure(),
        state.store.journal_failure(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let (status, text) = if problems.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "failing")
    };
    (
        status,
        Json(Health {
            status: text,
            version: env!("CARGO_PKG_VERSION"),
            problems,
        }),
    )
}
