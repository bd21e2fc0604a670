//! `POST /api/StockReplenishmentRequests`: the original controller's `Post` action.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};

use crate::app::AppState;
use crate::body::{MAX_BODY_BYTES, item_code_from_body};
use crate::problem::Problem;

/// The route, spelled as the original's default ASP.NET route spells it. Requests match
/// it without regard to case (see [`crate::app`]).
pub const PATH: &str = "/api/StockReplenishmentRequests";

/// Decodes the item code, runs the store call on the blocking pool and answers
/// `201 Created` once the order line is in the file.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    let body = body.map_err(body_rejection)?;
    let code = item_code_from_body(headers.get(header::CONTENT_TYPE), &body)?;

    // The store blocks its thread for the whole order (allocation + sleep + write), as
    // the original blocked an IIS worker thread. tokio's blocking pool is that thread
    // pool; its size is `--max-blocking-threads`. If the client goes away, this task is
    // not cancelled: like the original, the order is still written (a "ghost" to a
    // client that gave up).
    let store = state.store.clone();
    let task_code = code.clone();
    let outcome =
        tokio::task::spawn_blocking(move || store.submit_purchase_order(&task_code)).await;

    match outcome {
        Ok(Ok(())) => {
            tracing::debug!(item_code = %code, "purchase order written");
            Ok(StatusCode::CREATED)
        }
        Ok(Err(error)) => {
            tracing::error!(item_code = %code, %error, "purchase order could not be stored");
            Err(Problem::internal(
                "the purchase order could not be stored; it was not recorded and can be \
                 retried (the server log has the cause)",
            ))
        }
        Err(join_error) => {
            tracing::error!(item_code = %code, error = %join_error, "store task failed");
            Err(Problem::internal(
                "the purchase order could not be stored because the worker failed; it was \
                 not recorded and can be retried",
            ))
        }
    }
}

fn body_rejection(rejection: BytesRejection) -> Problem {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            status,
            format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes; a purchase order \
                 carries one item code of at most 100 characters"
            ),
        )
    } else {
        // Any other failure to read the body (e.g. the client broke the upload) is the
        // request's fault, never a 422 or 500.
        Problem::bad_request(format!("the request body could not be read: {rejection}"))
    }
}
