//! The `Idempotency-Key` request header (IETF httpapi draft "The Idempotency-Key HTTP
//! Header Field") on the HTTP side; the keys themselves are kept by the store (see
//! [`purchasing_persistence::StoreOptions::idempotency`]), so that an order line and its
//! key are recorded together and survive restarts together.
//!
//! With `--idempotency`: a first request with a key does the work; a repeat with the same
//! key and item code gets the first outcome again (`201` plus `Idempotent-Replayed: true`)
//! and writes nothing; the same key with another item code is `422`; a repeat while the
//! first is still in progress is `409` with `Retry-After: 1`. Without `--idempotency` the
//! header is ignored, as the original system knew no such thing.

use axum::http::{HeaderMap, HeaderName};
use purchasing_persistence::IdempotencyKey;

use crate::problem::Problem;

/// The request header carrying the client's key (a UUID in practice).
pub const IDEMPOTENCY_KEY: HeaderName =
    HeaderName::from_static(wire_contract::http::IDEMPOTENCY_KEY_HEADER);

/// The header as people spell it, for messages.
const IDEMPOTENCY_KEY_TEXT: &str = "Idempotency-Key";

/// The response header marking a replayed outcome (as Stripe names it): the order was
/// recorded by an earlier request with the same key, not by this one.
pub const IDEMPOTENT_REPLAYED: HeaderName =
    HeaderName::from_static(wire_contract::http::IDEMPOTENT_REPLAYED_HEADER);

/// The key of a request, if it sent one; 400 when it is malformed or repeated.
pub fn key_from_headers(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, Problem> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Problem::bad_request(format!(
            "send at most one {IDEMPOTENCY_KEY_TEXT} header"
        )));
    }
    let text = value.to_str().map_err(|_| {
        Problem::bad_request(format!(
            "the {IDEMPOTENCY_KEY_TEXT} header must be visible ASCII, such as a UUID"
        ))
    })?;
    IdempotencyKey::parse(unquote(text)?)
        .map(Some)
        .map_err(|e| Problem::bad_request(format!("invalid {IDEMPOTENCY_KEY_TEXT} header: {e}")))
}

/// The draft defines the value as a Structured Field string (RFC 8941), so the standard
/// form is quoted: `Idempotency-Key: "8e03978e-…"` (what our client sends). Many clients
/// send the bare token instead (Stripe's style). Both name the same key, so the quotes
/// are not part of it. A key needs no escapes, so a quoted value holding `"` or `\` (or
/// missing its closing quote) is refused rather than guessed at.
fn unquote(value: &str) -> Result<&str, Problem> {
    match value.strip_prefix('"') {
        None => Ok(value),
        Some(rest) => rest
            .strip_suffix('"')
            .filter(|inner| !inner.contains(['"', '\\']))
            .ok_or_else(|| {
                Problem::bad_request(format!(
                    "a quoted {IDEMPOTENCY_KEY_TEXT} must be one string without quotes or \
                     backslashes inside, such as \"8e03978e-2f1c-4c55-9d59-5f0f5d0e4a11\""
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn a_quoted_key_and_a_bare_key_are_the_same_key() {
        let key = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static(value));
            key_from_headers(&headers).map(|k| k.unwrap().as_str().to_owned())
        };
        assert_eq!(key("\"8e03978e-1\"").unwrap(), "8e03978e-1");
        assert_eq!(key("8e03978e-1").unwrap(), "8e03978e-1");
        assert!(key("\"a\\\"b\"").is_err(), "escapes are not part of a key");
        assert!(key("\"\"").is_err(), "an empty string is no key");
    }

    #[test]
    fn keys_are_parsed_by_the_store_rule() {
        let mut headers = HeaderMap::new();
        assert_eq!(key_from_headers(&headers).unwrap(), None);
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("abc-123"));
        assert_eq!(
            key_from_headers(&headers).unwrap().unwrap().as_str(),
            "abc-123"
        );
        headers.append(IDEMPOTENCY_KEY, HeaderValue::from_static("again"));
        assert!(
            key_from_headers(&headers)
                .unwrap_err()
                .detail
                .contains("at most one")
        );

        for bad in ["", "has space", &"k".repeat(256)] {
            let mut headers = HeaderMap::new();
            headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(bad).unwrap());
            let problem = key_from_headers(&headers).unwrap_err();
            assert_eq!(
                problem.status,
                axum::http::StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
    }
}
