//! The HTTP transport: the original's `HttpClient` call — the client built once, one
//! `POST` per attempt, the answer read into success or a classified error.

use std::time::{Duration, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::delivery::Answer;
use crate::base_url::BaseUrl;
use crate::error::{ConfigError, ReplenishmentError};
use crate::retry;
use crate::wire;

/// The HTTP transport: the original's `HttpClient` call.
#[derive(Debug, Clone)]
pub(super) struct Http {
    /// Where the API lives; also names the server in connect errors.
    pub(super) base_url: BaseUrl,
    /// The endpoint, built once from `base_url`.
    pub(super) endpoint: reqwest::Url,
    /// One client for the manager's life. Even when every call gets a new connection, the
    /// client (its configuration, resolver and connector) is built once, not per call.
    client: reqwest::Client,
}

impl Http {
    /// One `POST` of `item_code` under `request_id`. `guarded` carries, under a retry
    /// policy, the idempotency key's header value and the time left: then the attempt may
    /// take no longer and the deadline header is sent. Without it the request is the
    /// original's, bounded by the client's `timeout`.
    pub(super) async fn attempt(
        &self,
        item_code: &str,
        request_id: &HeaderValue,
        guarded: Option<(&HeaderValue, Duration)>,
        timeout: Duration,
    ) -> Answer {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, wire::FORM_CONTENT_TYPE)
            .header(wire::REQUEST_ID_HEADER, request_id.clone())
            .body(wire::form_body(item_code));
        if let Some((key, remaining)) = guarded {
            let budget = retry::request_budget(remaining);
            request = request
                .header(wire::IDEMPOTENCY_KEY_HEADER, key.clone())
                .header(
                    wire::REQUEST_BUDGET_HEADER,
                    wire::request_budget_value(budget),
                )
                .timeout(remaining);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Answer::plain(Err(self.classify(error, timeout))),
        };
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let replayed = header(wire::IDEMPOTENT_REPLAYED_HEADER).is_some_and(wire::is_replayed);
        if response.status().is_success() {
            return Answer {
                result: Ok(()),
                retry_after: None,
                replayed,
                republished: 0,
            };
        }
        let retry_after = header(RETRY_AFTER.as_str())
            .and_then(|v| wire::parse_retry_after(v, SystemTime::now()));
        Answer {
            result: Err(rejection(response).await),
            retry_after,
            replayed,
            republished: 0,
        }
    }

    /// Sorts a failed exchange by what the operator should do about it. A timeout comes
    /// first: a connect attempt that runs out of time is "no answer in time", not "refused".
    fn classify(&self, error: reqwest::Error, timeout: Duration) -> ReplenishmentError {
        if error.is_timeout() {
            ReplenishmentError::TimedOut { after: timeout }
        } else if error.is_connect() {
            ReplenishmentError::Connect {
                url: self.base_url.to_string(),
                source: error,
            }
        } else {
            ReplenishmentError::Transport { source: error }
        }
    }
}

/// The HTTP client for `base_url`, with the original's connection behaviour when
/// `new_connection_per_request`.
pub(super) fn http_transport(
    base_url: BaseUrl,
    timeout: Duration,
    new_connection_per_request: bool,
) -> Result<Http, ConfigError> {
    let mut client = reqwest::Client::builder()
        .timeout(timeout)
        // The API answers 201 or an error, never a redirect; following one would turn the
        // POST into a GET elsewhere. A 3xx is reported as what it is.
        .redirect(reqwest::redirect::Policy::none())
        // A proxy picked up from the environment would sit between the load and the API
        // and silently change every measurement; the API is addressed directly.
        .no_proxy();
    if new_connection_per_request {
        // The original built a new HttpClient per call, so each call paid a TCP handshake
        // and the server saw one connection per request. Keeping no idle connection gives
        // that behaviour with one client: after each answer the connection is closed
        // instead of pooled, so the next call must connect anew.
        client = client.pool_max_idle_per_host(0);
    }
    let client = client
        .build()
        .map_err(|source| ConfigError::Client { source })?;
    Ok(Http {
        endpoint: base_url.replenishment_url(),
        base_url,
        client,
    })
}

/// Turns a non-2xx answer into [`ReplenishmentError::Rejected`], reading at most
/// [`wire::MAX_REJECTION_BODY`] of its body for the problem details. A body that cannot be
/// read does not hide the status: the refusal is reported without details.
async fn rejection(mut response: reqwest::Response) -> ReplenishmentError {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while body.len() < wire::MAX_REJECTION_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(_) => {
                body.clear();
                break;
            }
        }
    }
    let (title, detail) = wire::parse_rejection_body(content_type.as_deref(), &body);
    ReplenishmentError::Rejected {
        status,
        title,
        detail,
    }
}
