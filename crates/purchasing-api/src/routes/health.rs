//! `GET /health`: a cheap liveness probe for load balancers. It touches neither the
//! store nor the blocking pool, so it answers even while every order is in progress.

use axum::Json;
use serde::Serialize;

pub const PATH: &str = "/health";

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}
