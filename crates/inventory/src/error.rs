//! The crate's two error types: a client that cannot be set up, and a call that failed —
//! over HTTP or over AMQP, one type for both, so the CLI and the load tester print and count
//! outcomes the same way whatever the transport.
//!
//! Under a retry policy a call makes several attempts; its error is always the last
//! attempt's, with the same kinds as without retries.

use std::time::Duration;

use wire_contract::amqp::{Delivery as DeliveryMode, QUEUE, queue_mismatch_hint};

use crate::wire::one_line;

/// The cause of a connect or transport failure: a socket error, or the HTTP stack's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client cannot be set up: the base URL is unusable, or the HTTP stack refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid purchasing API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "the purchasing API URL {url:?} uses https, which this client does not support \
         (it is built without TLS); use an http:// URL"
    )]
    HttpsNotSupported { url: String },

    #[error("the purchasing API URL {url:?} has scheme {scheme:?}; it must start with http://")]
    UnsupportedScheme { url: String, scheme: String },

    /// The broker URL was refused (its message hides the password).
    #[error(transparent)]
    AmqpUrl(#[from] amqp_link::UrlError),

    #[error("invalid retry policy: {reason}")]
    InvalidRetryPolicy { reason: String },
}

/// Why one replenishment request did not succeed.
///
/// The variants are the distinctions an operator acts on differently, and the load tester
/// counts separately (see [`ReplenishmentError::kind`]). Whether the order was placed is
/// known only for [`ReplenishmentError::Rejected`] (it was not) and
/// [`ReplenishmentError::Connect`] (it was not); after a timeout or a transport failure the
/// server may or may not have written it — only the orders file can tell. Under a retry
/// policy the error is the *last* attempt's, so the same holds for earlier attempts too: a
/// final 503 after an attempt that timed out, or a final 409 ("the same key is still in
/// progress"), leaves the order's fate open.
///
/// Over AMQP the question is whether the message is *queued* (the worker writes the order
/// later): it is not after [`ReplenishmentError::AmqpConnect`],
/// [`ReplenishmentError::AmqpUnreachable`], [`ReplenishmentError::Nacked`],
/// [`ReplenishmentError::Returned`], [`ReplenishmentError::QueueMismatch`] and a timeout
/// while connecting or declaring; it may be after [`ReplenishmentError::ConfirmTimedOut`],
/// [`ReplenishmentError::ConnectionLost`] and a timeout while publishing.
#[derive(Debug, thiserror::Error)]
pub enum ReplenishmentError {
    /// No complete answer within the deadline (connect, send and response together; under a
    /// retry policy, all attempts and the waits between them together). `after` is the
    /// configured timeout.
    #[error("no answer from the purchasing API within {after:?} (timed out)")]
    TimedOut { after: Duration },

    /// No connection could be made: nothing listening, refused, unreachable, or the host
    /// name does not resolve.
    #[error(
        "could not connect to the purchasing API at {url}: {} — is purchasing-api running?",
        root_cause(source)
    )]
    Connect {
        url: String,
        #[source]
        source: BoxError,
    },

    /// The server answered with a status outside 2xx; `title` and `detail` come from its
    /// `application/problem+json` body when it sent one.
    #[error("the purchasing API rejected the request: {}", rejection(*status, title, detail))]
    Rejected {
        status: u16,
        title: Option<String>,
        detail: Option<String>,
    },

    /// Connected, but the exchange broke: the connection was reset or closed before a
    /// complete answer, or the answer was not valid HTTP.
    #[error("the request to the purchasing API failed: {}", root_cause(source))]
    Transport {
        #[source]
        source: BoxError,
    },

    /// The caller's request id cannot be sent (e.g. it contains a line break); nothing was
    /// sent. `why` names the rule it breaks.
    #[error("request id {request_id:?} cannot be sent: {why}")]
    InvalidRequestId {
        request_id: String,
        why: &'static str,
    },

    // --- over AMQP -----------------------------------------------------------------------
    /// The code breaks the item-code rule, which the purchasing side would refuse (over
    /// HTTP it answers 400): over AMQP nobody answers, so the publisher checks first, with
    /// the same rule ([`item_code::ItemCode`]). Nothing was published.
    #[error(
        "item code {code:?} refused before publishing: {reason}; the purchasing side \
         would refuse it too (HTTP 400), so nothing was published"
    )]
    InvalidItemCode {
        code: String,
        #[source]
        reason: item_code::ItemCodeError,
    },

    /// No connection to the broker could be made: nothing listening, refused, or the broker
    /// turned the login or the virtual host down. Nothing was published.
    #[error(
        "could not connect to the RabbitMQ broker at {url}: {reason} — is the broker running, \
         and are the user, password and virtual host in the URL right?"
    )]
    AmqpConnect { url: String, reason: String },

    /// Several brokers were given and none took the connection in a pass over the list
    /// (each tried once, see [`crate::amqp`]); `reasons` names each broker and why. Nothing
    /// was published by this connect. Counted as `amqp_connect`: to a caller it is the
    /// same outcome as one broker that could not be reached.
    #[error(
        "could not connect to any of the {count} RabbitMQ brokers ({reasons}) — are they \
         running, and are the users, passwords and virtual hosts in the URLs right?"
    )]
    AmqpUnreachable { count: usize, reasons: String },

    /// The broker answered and turned the connection down: the login was refused
    /// (`403 ACCESS_REFUSED`) or the virtual host does not exist or may not be used
    /// (`530 NOT_ALLOWED`). Nothing was published; retrying cannot help.
    #[error(
        "the RabbitMQ broker at {url} refused the connection: {reason} — check the user, \
         password and virtual host in the URL"
    )]
    AmqpRefused { url: String, reason: String },

    /// The broker did not answer in time before or while the message was handed over.
    /// `stage` says how far the call got, and so whether anything may have been published.
    #[error("no answer from the RabbitMQ broker within {after:?} while {stage} (timed out); {}", stage.consequence())]
    AmqpTimedOut { after: Duration, stage: AmqpStage },

    /// Reliable delivery: the message was published but the broker's confirm did not come
    /// within the deadline. The order may or may not be queued.
    #[error(
        "the RabbitMQ broker did not confirm the message within {after:?} (timed out): it may \
         or may not be queued; publishing it again with the same message id (--retries) is \
         safe, the worker drops the duplicate"
    )]
    ConfirmTimedOut { after: Duration },

    /// Reliable delivery: the broker answered the publish with a nack — it could not take
    /// responsibility for the message (e.g. an internal error). It is not queued.
    #[error(
        "the RabbitMQ broker refused the message (publisher nack): it is not queued; try \
         again later (--retries) and see the broker's log for why"
    )]
    Nacked,

    /// Reliable delivery: the message could not be routed to the queue and the broker gave
    /// it back (`mandatory`): the queue was deleted after it was declared. Not queued.
    #[error(
        "the RabbitMQ broker returned the message as unroutable ({reply_code} {reply_text}): \
         the queue {QUEUE} no longer exists (deleted since it was declared); the next call \
         declares it again"
    )]
    Returned { reply_code: u16, reply_text: String },

    /// The broker already has the queue with other properties than this mode declares, so
    /// it refused to declare it (406 PRECONDITION_FAILED). Nothing was published; retrying
    /// cannot help. `argument` is the property the broker named.
    #[error("{} (broker: {broker_said})", queue_mismatch_hint(*wanted, argument.as_deref()))]
    QueueMismatch {
        wanted: DeliveryMode,
        argument: Option<String>,
        broker_said: String,
    },

    /// The broker closed the channel with a channel-level error other than a queue
    /// mismatch (e.g. 403 ACCESS_REFUSED, 404 NOT_FOUND). Nothing more goes over it; the
    /// next call opens a new one.
    #[error(
        "the RabbitMQ broker closed the channel: {reason}; check the user's permissions on \
         the virtual host and the broker's log"
    )]
    ChannelClosed { reason: String },

    /// The connection broke or the broker closed it (e.g. it is shutting down) while this
    /// call used it. A message being published may or may not have reached the queue.
    #[error(
        "the connection to the RabbitMQ broker at {url} was lost: {reason}; the message may \
         or may not be queued — the next call reconnects"
    )]
    ConnectionLost { url: String, reason: String },
}

/// How far an AMQP call got when the broker stopped answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmqpStage {
    /// TCP connect, AMQP handshake, opening the channel, enabling confirms.
    Connecting,
    /// Declaring the queues of the delivery mode.
    Declaring,
    /// Handing the message to the connection (a broker that stops reading blocks it).
    Publishing,
}

impl AmqpStage {
    /// Whether anything may have reached the broker, in words.
    fn consequence(self) -> &'static str {
        match self {
            AmqpStage::Connecting | AmqpStage::Declaring => {
                "nothing was published — is the broker overloaded or paused?"
            }
            AmqpStage::Publishing => {
                "the message may or may not have reached the broker — is it overloaded or paused?"
            }
        }
    }
}

impl std::fmt::Display for AmqpStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AmqpStage::Connecting => "connecting",
            AmqpStage::Declaring => "declaring the queue",
            AmqpStage::Publishing => "publishing",
        })
    }
}

/// [`ReplenishmentError::InvalidRequestId`]'s `why` for an id HTTP cannot carry.
pub(crate) const NOT_A_HEADER_VALUE: &str =
    "it is not a valid HTTP header value (visible ASCII, no line breaks)";

/// [`ReplenishmentError::InvalidRequestId`]'s `why` for an id too long for AMQP's
/// `correlation_id` (a short string).
pub(crate) const TOO_LONG_FOR_AMQP: &str =
    "over AMQP it must be at most 255 bytes (correlation_id is a short string)";

impl ReplenishmentError {
    /// A short, stable label for counting outcomes. Over HTTP: `timed_out`, `connect`,
    /// `rejected`, `transport`; over AMQP: `amqp_connect`, `amqp_timed_out`,
    /// `amqp_refused`, `confirm_timed_out`, `nacked`, `returned_unroutable`, `queue_mismatch`,
    /// `channel_closed`, `connection_lost`, `invalid_item_code`; either: `invalid_request_id`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplenishmentError::TimedOut { .. } => "timed_out",
            ReplenishmentError::Connect { .. } => "connect",
            ReplenishmentError::Rejected { .. } => "rejected",
            ReplenishmentError::Transport { .. } => "transport",
            ReplenishmentError::InvalidRequestId { .. } => "invalid_request_id",
            ReplenishmentError::InvalidItemCode { .. } => "invalid_item_code",
            ReplenishmentError::AmqpConnect { .. } | ReplenishmentError::AmqpUnreachable { .. } => {
                "amqp_connect"
            }
            ReplenishmentError::AmqpRefused { .. } => "amqp_refused",
            ReplenishmentError::AmqpTimedOut { .. } => "amqp_timed_out",
            ReplenishmentError::ConfirmTimedOut { .. } => "confirm_timed_out",
            ReplenishmentError::Nacked => "nacked",
            ReplenishmentError::Returned { .. } => "returned_unroutable",
            ReplenishmentError::QueueMismatch { .. } => "queue_mismatch",
            ReplenishmentError::ChannelClosed { .. } => "channel_closed",
            ReplenishmentError::ConnectionLost { .. } => "connection_lost",
        }
    }

    /// Nothing could be connected to — the server or the broker (or every broker given)
    /// is down or unreachable ([`ReplenishmentError::Connect`],
    /// [`ReplenishmentError::AmqpConnect`] or [`ReplenishmentError::AmqpUnreachable`]);
    /// nothing was sent.
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            ReplenishmentError::Connect { .. }
                | ReplenishmentError::AmqpConnect { .. }
                | ReplenishmentError::AmqpUnreachable { .. }
        )
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ReplenishmentError::Rejected { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `400 Bad Request: <detail>` — the status, its reason phrase, and what the server said.
fn rejection(status: u16, title: &Option<String>, detail: &Option<String>) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    let mut text = match reason {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    };
    // The detail is the part a person can act on; a title only adds something when it is
    // more than the reason phrase again.
    let said = detail.as_deref().or_else(|| {
        title
            .as_deref()
            .filter(|t| reason.is_none_or(|r| !t.eq_ignore_ascii_case(r)))
    });
    if let Some(said) = said {
        text.push_str(": ");
        text.push_str(&one_line(said));
    }
    text
}

/// The innermost cause of a transport error, in words: the HTTP stack's own message may
/// only say "connection error", the useful part is at the bottom of the chain.
fn root_cause(error: &BoxError) -> String {
    let mut deepest: &(dyn std::error::Error + 'static) = error.as_ref();
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    if let Some(phrase) = deepest.downcast_ref::<std::io::Error>().and_then(io_phrase) {
        return phrase.to_owned();
    }
    one_line(&deepest.to_string())
}

/// The socket errors a person meets when the other side is down or gone, in words; `None`
/// for the rest (their own text is shown instead).
pub(crate) fn io_phrase(io: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind::*;
    match io.kind() {
        ConnectionRefused => Some("connection refused"),
        ConnectionReset => Some("connection reset by the server"),
        ConnectionAborted => Some("connection aborted"),
        HostUnreachable => Some("host unreachable"),
        NetworkUnreachable => Some("network unreachable"),
        AddrNotAvailable => Some("address not available"),
        BrokenPipe => Some("connection closed by the server while sending"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, title: Option<&str>, detail: Option<&str>) -> ReplenishmentError {
        ReplenishmentError::Rejected {
            status,
            title: title.map(str::to_owned),
            detail: detail.map(str::to_owned),
        }
    }

    #[test]
    fn timeouts_name_the_deadline() {
        let thirty = ReplenishmentError::TimedOut {
            after: Duration::from_secs(30),
        };
        assert_eq!(
            thirty.to_string(),
            "no answer from the purchasing API within 30s (timed out)"
        );
        let short = ReplenishmentError::TimedOut {
            after: Duration::from_millis(500),
        };
        assert_eq!(
            short.to_string(),
            "no answer from the purchasing API within 500ms (timed out)"
        );
    }

    #[test]
    fn rejections_show_status_reason_and_detail() {
        assert_eq!(
            rejected(400, Some("Invalid item code"), Some("it contains a tab")).to_string(),
            "the purchasing API rejected the request: 400 Bad Request: it contains a tab"
        );
        assert_eq!(
            rejected(413, Some("Body too large"), None).to_string(),
            "the purchasing API rejected the request: 413 Payload Too Large: Body too large"
        );
        assert_eq!(
            rejected(500, Some("Internal Server Error"), None).to_string(),
            "the purchasing API rejected the request: 500 Internal Server Error"
        );
        assert_eq!(
            rejected(599, None, None).to_string(),
            "the purchasing API rejected the request: 599"
        );
        assert_eq!(
            rejected(400, None, Some("line one\nline two")).to_string(),
            "the purchasing API rejected the request: 400 Bad Request: line one line two"
        );
    }

    #[test]
    fn kinds_are_stable_labels() {
        assert_eq!(
            ReplenishmentError::TimedOut {
                after: Duration::ZERO
            }
            .kind(),
            "timed_out"
        );
        assert_eq!(rejected(503, None, None).kind(), "rejected");
        assert_eq!(rejected(503, None, None).status(), Some(503));
        let bad_id = ReplenishmentError::InvalidRequestId {
            request_id: "a\nb".into(),
            why: NOT_A_HEADER_VALUE,
        };
        assert_eq!(bad_id.kind(), "invalid_request_id");
        assert_eq!(
            bad_id.to_string(),
            r#"request id "a\nb" cannot be sent: it is not a valid HTTP header value (visible ASCII, no line breaks)"#
        );
        // Connect and Transport carry the real socket or HTTP error; stock_manager's socket
        // tests check their labels and messages.
    }

    fn amqp_errors() -> Vec<ReplenishmentError> {
        let after = Duration::from_secs(30);
        vec![
            ReplenishmentError::AmqpConnect {
                url: "amqp://guest:***@127.0.0.1:5672/%2f".into(),
                reason: "connection refused".into(),
            },
            ReplenishmentError::AmqpUnreachable {
                count: 2,
                reasons: "amqp://a: connection refused; amqp://b: connection refused".into(),
            },
            ReplenishmentError::AmqpTimedOut {
                after,
                stage: AmqpStage::Connecting,
            },
            ReplenishmentError::AmqpTimedOut {
                after,
                stage: AmqpStage::Publishing,
            },
            ReplenishmentError::ConfirmTimedOut { after },
            ReplenishmentError::Nacked,
            ReplenishmentError::Returned {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
            },
            ReplenishmentError::QueueMismatch {
                wanted: DeliveryMode::Reliable,
                argument: Some("durable".into()),
                broker_said: "406 PRECONDITION_FAILED - inequivalent arg 'durable'".into(),
            },
            ReplenishmentError::ChannelClosed {
                reason: "403 ACCESS_REFUSED".into(),
            },
            ReplenishmentError::ConnectionLost {
                url: "amqp://broker".into(),
                reason: "320 CONNECTION_FORCED - broker forced connection closure".into(),
            },
        ]
    }

    #[test]
    fn amqp_errors_are_one_line_with_distinct_kinds() {
        let errors = amqp_errors();
        let mut kinds: Vec<&str> = errors.iter().map(ReplenishmentError::kind).collect();
        kinds.dedup();
        assert_eq!(
            kinds,
            [
                "amqp_connect",
                "amqp_timed_out",
                "confirm_timed_out",
                "nacked",
                "returned_unroutable",
                "queue_mismatch",
                "channel_closed",
                "connection_lost"
            ]
        );
        for error in &errors {
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert_eq!(error.status(), None);
        }
        assert!(errors[0].is_connect() && errors[1].is_connect() && !errors[2].is_connect());
    }

    #[test]
    fn amqp_errors_say_what_failed_where_and_what_to_do() {
        let errors = amqp_errors();
        assert_eq!(
            errors[0].to_string(),
            "could not connect to the RabbitMQ broker at amqp://guest:***@127.0.0.1:5672/%2f: \
             connection refused — is the broker running, and are the user, password and \
             virtual host in the URL right?"
        );
        assert!(
            errors[2]
                .to_string()
                .contains("while connecting (timed out); nothing was published")
        );
        assert!(
            errors[3]
                .to_string()
                .contains("while publishing (timed out); the message may or may not")
        );
        assert!(
            errors[4]
                .to_string()
                .contains("did not confirm the message within 30s")
        );
        assert!(errors[6].to_string().contains("(312 NO_ROUTE)"));
        let mismatch = errors[7].to_string();
        assert!(
            mismatch.starts_with(&queue_mismatch_hint(
                DeliveryMode::Reliable,
                Some("durable")
            )) && mismatch
                .ends_with("(broker: 406 PRECONDITION_FAILED - inequivalent arg 'durable')"),
            "{mismatch}"
        );
        assert!(errors[9].to_string().contains("the next call reconnects"));
        assert_eq!(
            errors[1].to_string(),
            "could not connect to any of the 2 RabbitMQ brokers (amqp://a: connection refused; \
             amqp://b: connection refused) — are they running, and are the users, passwords \
             and virtual hosts in the URLs right?"
        );
    }
}
