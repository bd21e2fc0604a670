//! `POST /api/StockReplenishmentRequests`: the original controller's `Post` action.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use purchasing_persistence::{ItemCode, StoreError, SubmitOptions, Submitted};

use crate::body::{item_code_from_body, read_body};
use crate::deadline::Deadline;
use crate::idempotency::{IDEMPOTENT_REPLAYED, key_from_headers};
use crate::metrics::Stage;
use crate::problem::Problem;
use crate::state::AppState;

/// The route, spelled as the original's default ASP.NET route spells it. Requests match
/// it without regard to case (see [`crate::app`]).
pub const PATH: &str = wire_contract::http::REPLENISHMENT_PATH;

/// Reads and decodes the item code, takes an admission slot (with admission control
/// on), runs the store call on the blocking pool and answers `201 Created` once the order
/// line is in the file.
///
/// The order matters: the body is read (bounded in size and time) and validated before
/// a slot is asked for, so a slow or malformed request never holds one. With deadlines
/// on, the layer in front of this handler has left the deadline in the request's
/// extensions; it bounds the wait for a slot and is handed to the work.
pub async fn create(
    State(state): State<AppState>,
    deadline: Option<Extension<Deadline>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let body = read_body(&headers, body, state.body_timeouts).await?;
    let code = item_code_from_body(headers.get(header::CONTENT_TYPE), &body)?;
    let key = if state.idempotency {
        key_from_headers(&headers)?
    } else {
        None
    };
    let deadline = deadline.map(|Extension(deadline)| deadline);
    let permit = match &state.admission {
        Some(admission) => match admission.admit(deadline).await {
            Ok(slot) => Some(slot),
            Err(refusal) => return Ok(refusal.into_response()),
        },
        None => None,
    };
    let deadline = deadline.map(|Deadline(instant)| instant);

    // The store blocks its thread for the whole order (allocation + sleep + write), as
    // the original blocked an IIS worker thread. The work pool is that thread pool; its
    // size is `--max-blocking-threads`. If the client goes away, this task is
    // not cancelled: like the original, the order is still written (a "ghost" to a
    // client that gave up) — unless a deadline stops it first.
    let store = state.store.clone();
    let metrics = state.metrics.clone();
    let task_code = code.clone();
    // An adaptive limit learns from each order's wait for the CPU.
    let observer = state.admission.clone().filter(|a| a.is_adaptive());
    let outcome = state
        .work
        .run(move || {
            // Held until the closure ends, i.e. until the order's memory is freed: only
            // then may admission control let another order in.
            let _permit = permit;
            let _in_flight = metrics.order_started();
            let options = SubmitOptions {
                deadline,
                key: key.as_ref(),
            };
            match &observer {
                Some(admission) => {
                    store.submit_observed(&task_code, options, |fill| admission.observe_fill(fill))
                }
                None => store.submit(&task_code, options),
            }
        })
        .await;

    match outcome {
        Ok(Ok(Submitted::Written)) => {
            tracing::debug!(item_code = %code, "purchase order written");
            Ok(StatusCode::CREATED.into_response())
        }
        Ok(Ok(Submitted::Replayed)) => {
            tracing::debug!(item_code = %code, "purchase order replayed");
            state.metrics.replayed();
            let mut response = StatusCode::CREATED.into_response();
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            Ok(response)
        }
        Ok(Err(error)) => Err(store_error(&state, &code, error)),
        Err(lost) => {
            tracing::error!(item_code = %code, error = %lost, "store task failed");
            Err(Problem::internal(
                "the purchase order could not be stored because the worker failed; it was \
                 not recorded and can be retried",
            ))
        }
    }
}

/// One place maps each store failure to its status.
fn store_error(state: &AppState, code: &ItemCode, error: StoreError) -> Problem {
    match error {
        StoreError::DeadlineExceeded { stage } => {
            state.metrics.deadline_rejected(Stage::Store);
            tracing::info!(item_code = %code, stage, "deadline passed; order not written");
            Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request's deadline passed {stage}; nothing was recorded. Retry \
                     with a larger budget, or later"
                ),
            )
        }
        // The IETF draft's answer to a duplicate that arrives while the first is still
        // being worked on: try again shortly, the first outcome will then be replayed.
        StoreError::KeyInProgress { key } => Problem::new(
            StatusCode::CONFLICT,
            format!(
                "an order with Idempotency-Key {key} is still in progress; retry shortly to \
                 get its outcome"
            ),
        )
        .with_retry_after(1),
        StoreError::KeyReused { key, original_code } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Idempotency-Key {key} was already used for item code {original_code:?}, \
                 not {:?}; nothing was recorded. Use a new key for a different order",
                code.as_str()
            ),
        ),
        // Durable mode: the line was appended but `sync_data` failed. Whether it survives
        // is unknown, so the answer must not invite a blind retry (which could duplicate
        // it); with its key, a retry cannot.
        StoreError::Sync { ref path, .. } if path == state.store.path() => {
            tracing::error!(item_code = %code, %error, "purchase order written but not synced");
            Problem::internal(
                "the purchase order was written but the disk could not confirm it; whether it \
                 is recorded is unknown. Retry only with the same Idempotency-Key (the server \
                 log has the cause)",
            )
        }
        // The store refuses these until a restart: saying "retry" would send the client
        // into the same wall. (`/health` answers 503 meanwhile, so a balancer moves
        // traffic elsewhere.)
        StoreError::OrdersFileBroken { .. } | StoreError::JournalFailed { .. } => {
            tracing::error!(item_code = %code, %error, "purchase order refused until a restart");
            Problem::internal(
                "the purchase order was not recorded: this server cannot record orders of \
                 this kind until it is restarted, so retrying here will fail until then (the \
                 server log and /health have the cause)",
            )
        }
        // Allocation refused, I/O failed (or a kind added later): the server's fault.
        error => {
            tracing::error!(item_code = %code, %error, "purchase order could not be stored");
            Problem::internal(
                "the purchase order could not be stored; it was not recorded and can be \
                 retried (the server log has the cause)",
            )
        }
    }
}
