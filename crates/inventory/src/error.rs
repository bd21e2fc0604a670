//! The crate's two error types: a client that cannot be set up, and a call that failed.
//!
//! Under a retry policy a call makes several attempts; its error is always the last
//! attempt's, with the same kinds as without retries.

use std::time::Duration;

use crate::wire::one_line;

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

    #[error("invalid retry policy: {reason}")]
    InvalidRetryPolicy { reason: String },

    #[error("could not set up the HTTP client: {source}")]
    Client {
        #[source]
        source: reqwest::Error,
    },
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
        source: reqwest::Error,
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
        source: reqwest::Error,
    },

    /// The caller's request id cannot be sent as an HTTP header value (e.g. it contains a
    /// line break); nothing was sent.
    #[error("request id {request_id:?} cannot be sent as an HTTP header value")]
    InvalidRequestId { request_id: String },
}

impl ReplenishmentError {
    /// A short, stable label for counting outcomes: `timed_out`, `connect`, `rejected`,
    /// `transport` or `invalid_request_id`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplenishmentError::TimedOut { .. } => "timed_out",
            ReplenishmentError::Connect { .. } => "connect",
            ReplenishmentError::Rejected { .. } => "rejected",
            ReplenishmentError::Transport { .. } => "transport",
            ReplenishmentError::InvalidRequestId { .. } => "invalid_request_id",
        }
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
    let reason = reqwest::StatusCode::from_u16(status)
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

/// The innermost cause of a transport error, in words: reqwest's own message only says
/// "error sending request for url (…)", the useful part is at the bottom of the chain.
fn root_cause(error: &reqwest::Error) -> String {
    let mut deepest: &(dyn std::error::Error + 'static) = error;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    if let Some(io) = deepest.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind::*;
        let phrase = match io.kind() {
            ConnectionRefused => Some("connection refused"),
            ConnectionReset => Some("connection reset by the server"),
            ConnectionAborted => Some("connection aborted"),
            HostUnreachable => Some("host unreachable"),
            NetworkUnreachable => Some("network unreachable"),
            AddrNotAvailable => Some("address not available"),
            BrokenPipe => Some("connection closed by the server while sending"),
            _ => None,
        };
        if let Some(phrase) = phrase {
            return phrase.to_owned();
        }
    }
    one_line(&deepest.to_string())
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
        };
        assert_eq!(bad_id.kind(), "invalid_request_id");
        assert_eq!(
            bad_id.to_string(),
            r#"request id "a\nb" cannot be sent as an HTTP header value"#
        );
        // Connect and Transport carry a real reqwest::Error; stock_manager's socket tests
        // check their labels and messages.
    }
}
