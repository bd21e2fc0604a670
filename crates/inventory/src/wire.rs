//! The request as it goes on the wire, and the reading of the server's refusals.
//!
//! Everything here is a fact of the wire contract (DESIGN.md, "The wire contract"), kept in
//! one place so the client and its tests cannot drift apart.

/// The endpoint, relative to the API's base URL: the original controller's default route.
pub const REPLENISHMENT_PATH: &str = "/api/StockReplenishmentRequests";

/// The original sent its body with the form formatter's media type.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// The header that correlates one call across the client, the server's log and the
/// load tester's records.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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
        let parsed = parse_rejection_body(Some("application/problem+json"), body);
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
            parse_rejection_body(Some("application/problem+json"), b"{not json"),
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
    fn one_line_removes_line_breaks_and_caps_length() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let long = "x".repeat(1000);
        let shown = one_line(&long);
        assert_eq!(shown.chars().count(), MAX_SHOWN_DETAIL_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
