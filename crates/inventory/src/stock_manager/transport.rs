//! The two ways an attempt travels: over HTTP (see `http`) or as an AMQP publish.

use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use super::delivery::Answer;
use super::http::Http;
use crate::amqp::{DeliveryMode, Publisher};

/// The two ways an order travels.
#[derive(Debug, Clone)]
pub(super) enum Transport {
    Http(Http),
    Amqp(Publisher),
}

impl Transport {
    /// One attempt over the manager's transport. `guarded` carries, under a retry policy,
    /// the idempotency key's header value and the time left: then the attempt may take no
    /// longer (and over HTTP the deadline header is sent). Without it the request is the
    /// original's, bounded by the manager's timeout. `message_id` is the AMQP message's id
    /// (reliable mode), the same on every attempt.
    ///
    /// `timeout` is the manager's: the bound without a policy, and what a timeout error
    /// reports.
    pub(super) async fn attempt(
        &self,
        item_code: &str,
        request_id: &HeaderValue,
        message_id: Option<&uuid::Uuid>,
        guarded: Option<(&HeaderValue, Duration)>,
        timeout: Duration,
    ) -> Answer {
        match self {
            Transport::Http(http) => http.attempt(item_code, request_id, guarded, timeout).await,
            Transport::Amqp(publisher) => {
                let time = guarded.map_or(timeout, |(_, remaining)| remaining);
                // A HeaderValue built from a &str is valid UTF-8.
                let request_id = request_id.to_str().unwrap_or_default();
                let message_id = message_id.filter(|_| publisher.mode() == DeliveryMode::Reliable);
                let published = publisher
                    .publish(
                        item_code,
                        request_id,
                        message_id,
                        Instant::now() + time,
                        timeout,
                    )
                    .await;
                Answer {
                    republished: published.republished,
                    ..Answer::plain(published.result)
                }
            }
        }
    }
}
