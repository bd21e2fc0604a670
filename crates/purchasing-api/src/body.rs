//! The request body of an order: read it within bounds of size and time, then decode it
//! into an [`ItemCode`], for the two media types the original's Web API accepted for
//! `[FromBody] string itemCode`.
//!
//! Reading ([`read_body`]) is bounded three ways, so a client cannot hold a connection
//! (and, before it, a file descriptor and a task) by sending slowly: a declared
//! `Content-Length` above [`MAX_BODY_BYTES`] is refused before a byte is read (and
//! before `100 Continue` is sent), the body may pause at most [`BodyTimeouts::idle`]
//! between two pieces, and must be complete within [`BodyTimeouts::total`]. Decoding
//! ([`item_code_from_body`]) is a pure function of (Content-Type, bytes): no I/O, so
//! every rule is unit-tested here.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use purchasing_persistence::ItemCode;
use tokio::time::Instant;

use crate::problem::Problem;

/// The largest body accepted (anything bigger is not an order; see the contract).
pub const MAX_BODY_BYTES: usize = wire_contract::http::MAX_BODY_BYTES;

/// How long reading a request body may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// Longest pause between two pieces of the body.
    pub idle: Duration,
    /// Longest time to receive the whole body, from when the handler starts reading it.
    pub total: Duration,
}

/// Longest pause between two pieces of a request body, by default. An order's body is a
/// few bytes sent at once; a client that stalls this long mid-body is broken or hostile.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest time to receive a whole request body, by default: a drip-feeding client that
/// never pauses long enough for the idle timeout is still cut off.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for BodyTimeouts {
    fn default() -> Self {
        Self {
            idle: DEFAULT_BODY_IDLE_TIMEOUT,
            total: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// Reads a whole request body of at most [`MAX_BODY_BYTES`], within `timeouts`.
///
/// Errors: 413 for a body (declared or sent) that is too large, 408 when the client is
/// too slow, 400 when the upload breaks. After any of them the body is left unread, so
/// the connection is closed (the response says `Connection: close`, see
/// [`crate::app`]).
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    timeouts: BodyTimeouts,
) -> Result<Bytes, Problem> {
    // Refused on the declaration alone: nothing is read, and hyper sends no
    // `100 Continue` to a client that asked for one, so a 1 GB upload never starts.
    if let Some(declared) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        && declared > MAX_BODY_BYTES as u64
    {
        return Err(too_large());
    }
    let mut body = body;
    let mut bytes = Vec::new();
    let started = Instant::now();
    let whole_by = started + timeouts.total;
    loop {
        let pause_ends = Instant::now() + timeouts.idle;
        let frame = match tokio::time::timeout_at(pause_ends.min(whole_by), body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                // A broken upload is the request's fault, never a 422 or 500.
                return Err(Problem::bad_request(format!(
                    "the request body could not be read: {e}"
                )));
            }
            Err(_elapsed) => {
                let why = if pause_ends < whole_by {
                    format!("paused for more than {} ms", timeouts.idle.as_millis())
                } else {
                    format!("took more than {} ms", timeouts.total.as_millis())
                };
                return Err(Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body {why} after {} bytes; nothing was recorded. Send the \
                         whole body at once (an order is a few bytes)",
                        bytes.len()
                    ),
                ));
            }
        };
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(bytes))
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than {MAX_BODY_BYTES} bytes; a purchase order carries \
             one item code of at most 100 characters"
        ),
    )
}

/// The form key ASP.NET model binding maps to the `itemCode` parameter (matched without
/// regard to case, as model binding does). The empty key is the Web API convention for
/// a single simple value: the original client and the article's smoke test send `=123`.
pub const FORM_KEY: &str = wire_contract::http::FORM_KEY;

const HOW_TO_SEND: &str = "send Content-Type application/x-www-form-urlencoded with body \
     `=CODE` (or `itemCode=CODE`), or application/json with a JSON string such as \"CODE\"";

/// Reads the item code out of a request body according to its Content-Type.
pub fn item_code_from_body(
    content_type: Option<&HeaderValue>,
    body: &[u8],
) -> Result<ItemCode, Problem> {
    let Some(content_type) = content_type else {
        return Err(Problem::unsupported_media_type(format!(
            "the request has no Content-Type header; {HOW_TO_SEND}"
        )));
    };
    let media_type = content_type
        .to_str()
        .ok()
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .ok_or_else(|| {
            Problem::unsupported_media_type(format!(
                "the Content-Type header is not a valid media type; {HOW_TO_SEND}"
            ))
        })?;
    match (media_type.type_(), media_type.subtype()) {
        (mime::APPLICATION, mime::WWW_FORM_URLENCODED) => from_form(body),
        (mime::APPLICATION, mime::JSON) => from_json(body),
        _ => Err(Problem::unsupported_media_type(format!(
            "the media type {} is not supported; {HOW_TO_SEND}",
            media_type.essence_str()
        ))),
    }
}

fn invalid_code(e: purchasing_persistence::ItemCodeError) -> Problem {
    Problem::bad_request(format!("invalid item code: {e}"))
}

fn from_json(body: &[u8]) -> Result<ItemCode, Problem> {
    let code: String = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(format!(
            "the JSON body must be a single string such as \"123\" ({e})"
        ))
    })?;
    ItemCode::parse(code).map_err(invalid_code)
}

fn from_form(body: &[u8]) -> Result<ItemCode, Problem> {
    let mut found: Option<Vec<u8>> = None;
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let key = form_decode(key)?;
        if !(key.is_empty() || key.eq_ignore_ascii_case(FORM_KEY.as_bytes())) {
            continue; // other fields are ignored, as model binding ignores them
        }
        if found.is_some() {
            return Err(Problem::bad_request(format!(
                "the form carries more than one item code; {HOW_TO_SEND}"
            )));
        }
        found = Some(form_decode(value)?);
    }
    let bytes = found.ok_or_else(|| {
        Problem::bad_request(format!("the form carries no item code; {HOW_TO_SEND}"))
    })?;
    ItemCode::from_utf8(bytes).map_err(invalid_code)
}

/// `application/x-www-form-urlencoded` decoding of one key or value: `+` is a space and
/// `%XX` a byte. Strict on purpose: a broken escape is an error rather than being passed
/// through, and the bytes are returned as they are, so invalid UTF-8 is rejected later
/// instead of being silently replaced by U+FFFD (which would store a different code).
fn form_decode(input: &[u8]) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = input
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "the form body has a malformed percent-escape; \
                             encode `%` as `%25`",
                        )
                    })?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn parse(content_type: Option<&str>, body: &str) -> Result<String, Problem> {
        let header = content_type.map(|c| HeaderValue::from_str(c).unwrap());
        item_code_from_body(header.as_ref(), body.as_bytes()).map(ItemCode::into_string)
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn the_originals_form_body() {
        assert_eq!(parse(FORM, "=123").unwrap(), "123");
    }

    #[test]
    fn named_form_field_any_case_and_charset_parameter() {
        assert_eq!(parse(FORM, "itemCode=42").unwrap(), "42");
        assert_eq!(parse(FORM, "ITEMCODE=42").unwrap(), "42");
        let with_charset = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(parse(with_charset, "=42").unwrap(), "42");
        assert_eq!(parse(FORM, "other=1&itemCode=42").unwrap(), "42");
    }

    #[test]
    fn form_decoding() {
        assert_eq!(parse(FORM, "=a+b%26c%C3%A9").unwrap(), "a b&cé");
    }

    #[test]
    fn json_string() {
        assert_eq!(parse(Some("application/json"), r#""123""#).unwrap(), "123");
        assert_eq!(
            parse(Some("application/json; charset=utf-8"), r#" "x" "#).unwrap(),
            "x"
        );
    }

    #[test]
    fn bad_bodies_are_400_with_a_useful_detail() {
        for (content_type, body, needle) in [
            (FORM, "", "no item code"),
            (FORM, "123", "no item code"),
            (FORM, "=", "empty"),
            (FORM, "=1&=2", "more than one"),
            (FORM, "=%zz", "percent-escape"),
            (FORM, "=%4", "percent-escape"),
            (FORM, "=%FF", "UTF-8"),
            (FORM, "=123%0APurchase+order+for+item:+forged", "U+000A"),
            (FORM, "=123%0D", "U+000D"),
            // Invisible and blank codes: one rule, the item code's.
            (FORM, "=%E2%80%AE321", "format character U+202E"),
            (FORM, "=12%E2%80%8B3", "format character U+200B"),
            (FORM, "=%EF%BB%BF123", "format character U+FEFF"),
            (FORM, "=+++", "blank"),
            (FORM, "=+123", "starts with the whitespace"),
            (FORM, "=123+", "ends with the whitespace"),
            (
                Some("application/json"),
                r#""\u3000a""#,
                "starts with the whitespace",
            ),
            (
                Some("application/json"),
                "123",
                "JSON body must be a single string",
            ),
            (
                Some("application/json"),
                r#"{"itemCode":"1"}"#,
                "JSON body must be",
            ),
            (Some("application/json"), r#""a\nb""#, "U+000A"),
            (Some("application/json"), "", "JSON body must be"),
        ] {
            let problem = parse(content_type, body).unwrap_err();
            assert_eq!(problem.status, StatusCode::BAD_REQUEST, "{body:?}");
            assert!(
                problem.detail.contains(needle),
                "{body:?}: {}",
                problem.detail
            );
        }
    }

    #[test]
    fn missing_or_unsupported_media_type_is_415() {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/xml"),
            Some("nonsense"),
        ] {
            let problem = parse(content_type, "=123").unwrap_err();
            assert_eq!(
                problem.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{content_type:?}"
            );
            assert!(problem.detail.contains("=CODE"), "{}", problem.detail);
        }
    }
}
