//! Text made safe for HTML and SVG: a leaf module, so the page ([`super::html`]), the
//! chart drawing ([`super::svg`]) and the messaging card ([`super::queue`]) share it
//! without depending on each other.

/// Escapes text for HTML and SVG (element content and quoted attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}
