//! The request as it goes on the wire, and the reading of the server's refusals.
//!
//! The names on the wire (path, media type, headers) come from the `wire-contract` crate,
//! which the server imports too; this module builds requests from them and reads answers.

use std::time::{Duration, SystemTime};

// The names both sides spell the same way are defined once, in the contract crate.
pub use wire_contract::http::{
    FORM_CONTENT_TYPE, IDEMPOTENCY_KEY_HEADER, IDEMPOTENT_REPLAYED_HEADER, REPLENISHMENT_PATH,
    REQUEST_BUDGET_HEADER, REQUEST_ID_HEADER,
};

/// The most of a refusal's body the client reads: enough for any problem document, and a
/// misbehaving server cannot make the client buffer without limit.
pub const MAX_REJECTION_BODY: usize = 64 * 1024;

/// The longest `detail` shown in a one-line error message; the full text stays in the error.
const MAX_SHOWN_DETAIL_CHARS: usize = 300;

/// The form body for `item_code`: `=` followed by the percent-encoded code, i.e. one
/// unnamed form field, which is how ASP.NET Web API binds `[FromBody] string itemCode`.
///
/// For a GUID or `123` this is byte-identical to the original's `"=" + itemCode`; unlike
/// the original, characters such as `&`, `+` or `%` arrive as sent instead of being
/// reinterpreted by the server's form decoder.
pub fn form_body(item_code: &str) -> String {
    let mut body = String::with_capacity(item_code.len() + 1);
    body.push('=');
    body.extend(form_urlencoded::byte_serialize(item_code.as_bytes()));
    body
}

/// The `title` and `detail` of a refusal's body, when it is an RFC 9457 problem document
/// (`application/problem+json`, or any JSON with those fields). A `text/plain` body gives its
/// first line as the detail. Any other body — HTML from a proxy, garbage, nothing — gives
/// neither: the status alone still says what happened.
pub fn parse_rejection_body(
    content_type: Option<&str>,
    body: &[u8],
) -> (Option<String>, Option<String>) {
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if essence == "application/json" || essence.ends_with("+json") {
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
            return (None, None);
        };
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        return (text("title"), text("detail"));
    }
    if essence == "text/plain" {
        let detail = String::from_utf8_lossy(body)
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_owned);
        return (None, detail);
    }
    (None, None)
}

/// The `Idempotency-Key` value for `key`: the draft makes the field a Structured Field
/// String (RFC 8941), so the UUID goes in double quotes, e.g.
/// `Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`.
pub fn idempotency_key_value(key: &uuid::Uuid) -> String {
    format!("\"{key}\"")
}

/// The `X-Request-Budget-Ms` value for `budget`: whole milliseconds, rounded down (a
/// server must not believe it has more time than it has).
pub fn request_budget_value(budget: Duration) -> String {
    budget.as_millis().to_string()
}

/// Whether an `Idempotent-Replayed` value says "replayed": `true` (any case), or the
/// Structured Field boolean `?1`.
pub fn is_replayed(value: &str) -> bool {
    let value = value.trim();
    value.eq_ignore_ascii_case("true") || value == "?1"
}

/// How long a `Retry-After` value asks the client to wait, as of `now`: delta-seconds
/// (`120`), or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`; a date in the past means
/// "now"). Dates are read by the `httpdate` crate, in the three forms RFC 9110 §5.6.7 asks
/// a recipient to accept (IMF-fixdate, and the obsolete RFC 850 and asctime forms), and
/// only when they are real dates (the weekday matching the day). Anything else is
/// ignored: `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// `text` made safe for a one-line message: control characters (a newline from the server
/// would split our output line) become spaces, and overly long text is cut with `…`.
pub fn one_line(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_SHOWN_DETAIL_CHARS)
        .collect();
    if text.chars().count() > MAX_SHOWN_DETAIL_CHARS {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn plain_codes_are_sent_exactly_as_the_original_did() {
        assert_eq!(form_body("123"), "=123");
        let guid = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b";
        assert_eq!(form_body(guid), format!("={guid}"));
    }

    #[test]
    fn form_syntax_characters_are_percent_encoded() {
        assert_eq!(form_body("a&b=c"), "=a%26b%3Dc");
        assert_eq!(form_body("1+1"), "=1%2B1");
        assert_eq!(form_body("a b"), "=a+b");
        assert_eq!(form_body("50%"), "=50%25");
        assert_eq!(form_body("Käse"), "=K%C3%A4se");
        assert_eq!(form_body("a\tb\n"), "=a%09b%0A");
    }

    #[test]
    fn the_empty_code_is_still_sent_for_the_server_to_judge() {
        assert_eq!(form_body(""), "=");
    }

    #[test]
    fn problem_documents_give_title_and_detail() {
        let body = br#"{"type":"about:blank","title":"Invalid item code","status":400,
                        "detail":"the item code must not contain control characters"}"#;
        let parsed = parse_rejection_body(Some(wire_contract::http::PROBLEM_JSON), body);
        assert_eq!(
            parsed,
            (
                Some("Invalid item code".to_owned()),
                Some("the item code must not contain control characters".to_owned())
            )
        );
        let charset = parse_rejection_body(Some("Application/Problem+JSON; charset=utf-8"), body);
        assert_eq!(charset, parsed);
    }

    #[test]
    fn other_bodies_are_tolerated() {
        assert_eq!(
            parse_rejection_body(Some(wire_contract::http::PROBLEM_JSON), b"{not json"),
            (None, None)
        );
        assert_eq!(
            parse_rejection_body(Some("application/json"), br#"["a"]"#),
            (None, None)
        );
        assert_eq!(
            parse_rejection_body(Some("application/json"), br#"{"title":7,"detail":""}"#),
            (None, None)
        );
        assert_eq!(
            parse_rejection_body(Some("text/html"), b"<h1>Bad Gateway</h1>"),
            (None, None)
        );
        assert_eq!(parse_rejection_body(None, b""), (None, None));
        assert_eq!(
            parse_rejection_body(
                Some("text/plain; charset=utf-8"),
                b"\nFailed to parse form\nmore"
            ),
            (None, Some("Failed to parse form".to_owned()))
        );
    }

    #[test]
    fn idempotency_keys_are_structured_field_strings() {
        let key = uuid::Uuid::parse_str("8e03978e-40d5-43e8-bc93-6894a57f9324").unwrap();
        assert_eq!(
            idempotency_key_value(&key),
            r#""8e03978e-40d5-43e8-bc93-6894a57f9324""#
        );
    }

    #[test]
    fn budgets_are_whole_milliseconds_rounded_down() {
        assert_eq!(
            request_budget_value(Duration::from_micros(28_500_999)),
            "28500"
        );
        assert_eq!(request_budget_value(Duration::ZERO), "0");
    }

    #[test]
    fn replay_marks() {
        assert!(is_replayed("true"));
        assert!(is_replayed(" True "));
        assert!(is_replayed("?1"));
        assert!(!is_replayed("false"));
        assert!(!is_replayed("?0"));
        assert!(!is_replayed(""));
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "soon", "5s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_as_an_http_date() {
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example).
        let date = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let example = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(example, date - Duration::from_secs(90)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after(example, date + Duration::from_secs(5)),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        // Across a leap day and a century: 2000-03-01 00:00:00 is 951868800.
        assert_eq!(
            parse_retry_after("Wed, 01 Mar 2000 00:00:00 GMT", UNIX_EPOCH),
            Some(Duration::from_secs(951_868_800))
        );
        // The obsolete forms RFC 9110 still asks a recipient to accept.
        for obsolete in [
            "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850
            "Sun Nov  6 08:49:37 1994",       // asctime
        ] {
            assert_eq!(
                parse_retry_after(obsolete, date - Duration::from_secs(90)),
                Some(Duration::from_secs(90)),
                "{obsolete:?}"
            );
        }
        for ignored in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Mon, 06 Nov 1994 08:49:37 GMT", // 6 Nov 1994 was a Sunday
            "Thu, 30 Feb 1995 08:49:37 GMT", // no such day
            "Sun, 0x Nov 1994 08:49:37 GMT",
            "Sün, 06 Nov 1994 08:49:37 GM", // 29 bytes, not ASCII
            "Sun, 06 Nov 1994 08:49:37 GMT trailing",
        ] {
            assert_eq!(parse_retry_after(ignored, UNIX_EPOCH), None, "{ignored:?}");
        }
    }

    #[test]
    fn one_line_removes_line_breaks_and_caps_length() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let long = "x".repeat(1000);
        let shown = one_line(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN_DETAIL_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
