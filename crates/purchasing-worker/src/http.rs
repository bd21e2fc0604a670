//! The worker's small HTTP server: `GET /health` and `GET /metrics`, nothing else (orders
//! arrive through the queue). Probes answer from memory — no broker round trip, no disk,
//! no blocking pool — so they answer while every prefetched order is in progress.
//!
//! `/health` is `200 {"status":"ok",…}` only while the worker is connected and consuming;
//! otherwise `503` with the phase as `status` (`connecting`, `reconnecting`, `failing`,
//! `stopping`) and a `reason`. A supervisor or the lab can thus tell a worker that is
//! merely waiting for its broker from one whose store needs a restart (`failing`, with
//! the store's own message in `problems`).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics;
use crate::state::{Phase, Shared};

/// The routes, on the wire contract's paths (the same as the API's probes).
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route(wire_contract::http::HEALTH_PATH, get(health))
        .route(wire_contract::http::METRICS_PATH, get(render_metrics))
        .with_state(shared)
}

#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok` while consuming, else the phase (see the module doc).
    pub status: &'static str,
    /// The worker's version, to tell deployments apart.
    pub version: &'static str,
    /// `faithful` or `reliable`: what an acknowledgement means here.
    pub delivery: &'static str,
    /// The queue consumed.
    pub queue: &'static str,
    /// The broker node the worker is on (or trying to reach), without its password: with
    /// several `--amqp-url`s, the one it failed over to.
    pub broker: String,
    /// Why the worker is not consuming; absent while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What in the store refuses orders until a restart; absent when nothing does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

async fn health(State(shared): State<Shared>) -> (StatusCode, Json<Health>) {
    let (mut phase, reason) = shared.status.get();
    let problems = shared.store_problems();
    if !problems.is_empty() && phase == Phase::Consuming {
        // Between the failure and the consumer's cancel: already not healthy.
        phase = Phase::Failing;
    }
    let code = if phase == Phase::Consuming {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Health {
            status: phase.label(),
            version: env!("CARGO_PKG_VERSION"),
            delivery: shared.delivery.as_str(),
            queue: wire_contract::amqp::QUEUE,
            broker: shared.broker.get(),
            reason,
            problems,
        }),
    )
}

async fn render_metrics(State(shared): State<Shared>) -> Response {
    let text = shared.metrics.render(
        !shared.store_problems().is_empty(),
        capacity::resident_memory_bytes(),
    );
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use purchasing_persistence::{PurchaseOrderStore, Workload};
    use tower::ServiceExt;
    use wire_contract::amqp::Delivery;

    use super::*;
    use crate::metrics::Metrics;
    use crate::state::{Node, Status};

    fn shared(dir: &tempfile::TempDir) -> Shared {
        let workload = Workload {
            alloc_chars: 1000,
            delay: std::time::Duration::from_millis(5),
            release_early: false,
        };
        Shared {
            store: Arc::new(PurchaseOrderStore::open(dir.path().join("o.txt"), workload).unwrap()),
            metrics: Arc::new(Metrics::new(1000, 0)),
            status: Arc::new(Status::default()),
            delivery: Delivery::Faithful,
            broker: Arc::new(Node::new(
                &amqp_link::AmqpUrl::parse("amqp://guest@127.0.0.1:5672/%2f").unwrap(),
            )),
            backlog: Default::default(),
        }
    }

    async fn get(shared: &Shared, path: &str) -> (StatusCode, String) {
        let response = router(shared.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_is_ok_only_while_consuming() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(&dir);
        let (status, body) = get(&shared, wire_contract::http::HEALTH_PATH).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "connecting");

        shared.status.set(Phase::Consuming, None);
        let (status, body) = get(&shared, wire_contract::http::HEALTH_PATH).await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["queue"], "stock-replenishment-requests");
        assert_eq!(json["delivery"], "faithful");
        assert!(json.get("reason").is_none(), "{body}");

        shared
            .status
            .set(Phase::Reconnecting, Some("connection reset".into()));
        let (status, body) = get(&shared, wire_contract::http::HEALTH_PATH).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "reconnecting");
        assert_eq!(json["reason"], "connection reset");
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text_and_other_paths_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(&dir);
        let (status, body) = get(&shared, wire_contract::http::METRICS_PATH).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("\npurchasing_worker_store_failed 0\n"),
            "{body}"
        );
        let (status, _) = get(&shared, wire_contract::http::REPLENISHMENT_PATH).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
