//! Formatting for the report's HTML and SVG, in one place: text made safe for markup
//! ([`escape`]), coordinates, numbers, rates, percentages, durations, moments and bytes.
//! A leaf module: the page, the cards and the charts all use it, it uses none of them.
//! Nothing here prints "NaN"; what is unknown is shown as [`DASH`].

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

/// A coordinate rounded to 0.1 px, without a trailing ".0" (and never "-0").
pub fn coord(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    let r = (v * 10.0).round() / 10.0 + 0.0;
    format!("{r}")
}

/// A number for an axis or a label: at most `decimals` decimals, trailing zeros trimmed.
pub fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

/// Compact tick label: 950, 1,500, 25k, 1.5M.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6, 2))
    } else if a >= 1e4 {
        format!("{}k", trim(v / 1e3, 1))
    } else if a >= 1000.0 && v.fract() == 0.0 {
        let i = v as i64;
        format!("{},{:03}", i / 1000, (i % 1000).abs())
    } else {
        trim(v, 2)
    }
}

/// Milliseconds, readably: "0.4 ms", "12 ms", "1.25 s".
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0, 2))
    } else if ms >= 10.0 {
        format!("{} ms", trim(ms, 0))
    } else {
        format!("{} ms", trim(ms, 2))
    }
}

pub const KIB: f64 = 1024.0;
pub const MIB: f64 = 1024.0 * 1024.0;
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Bytes in binary units: "512 MiB", "1.9 GiB".
pub fn fmt_bytes(b: f64) -> String {
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else if b >= MIB {
        format!(
            "{} MiB",
            trim(b / MIB, if b >= 100.0 * MIB { 0 } else { 1 })
        )
    } else if b >= KIB {
        format!("{} KiB", trim(b / KIB, 0))
    } else {
        format!("{} B", trim(b, 0))
    }
}

/// A byte count in binary units with one decimal: "2.0 GiB", "64.0 MiB", "512 B" (the
/// terminal's formatter: the summary and the confinement's messages).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// What the page shows for a value that is unknown.
pub const DASH: &str = "—";

/// `v` when it is a finite number.
pub fn fin(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

/// Milliseconds, or [`DASH`] when unknown.
pub fn opt_ms(v: Option<f64>) -> String {
    fin(v).map(fmt_ms).unwrap_or_else(|| DASH.to_string())
}

/// Bytes, or [`DASH`] when unknown.
pub fn opt_bytes(v: Option<u64>) -> String {
    v.map(|b| fmt_bytes(b as f64))
        .unwrap_or_else(|| DASH.to_string())
}

/// 1234567 → "1,234,567".
pub fn int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// "1 restart", "3 restarts".
pub fn plural(n: u64, what: &str) -> String {
    format!("{} {what}{}", int(n), if n == 1 { "" } else { "s" })
}

/// A count with thousands separators, or [`DASH`] when unknown.
pub fn opt_int(v: Option<u64>) -> String {
    v.map(int).unwrap_or_else(|| DASH.to_string())
}

/// A rate per second: no decimals from 100 up, one below.
pub fn rate(v: f64) -> String {
    if !v.is_finite() {
        DASH.to_string()
    } else if v >= 100.0 {
        trim(v, 0)
    } else {
        trim(v, 1)
    }
}

/// `n` as a percentage of `of` ("" when `of` is 0; three decimals for a tiny share).
pub fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        String::new()
    } else {
        let p = n as f64 * 100.0 / of as f64;
        let d = if p > 0.0 && p < 0.1 { 3 } else { 1 };
        format!("{} %", trim(p, d))
    }
}

/// Seconds as a duration: "59.8 s", "12 min 3 s", "10 h 0 min".
pub fn duration(s: f64) -> String {
    if !s.is_finite() {
        return DASH.to_string();
    }
    if s < 120.0 {
        format!("{} s", trim(s, 1))
    } else if s < 3600.0 {
        format!("{} min {} s", (s / 60.0).floor(), (s % 60.0).floor())
    } else {
        format!(
            "{} h {} min",
            (s / 3600.0).floor(),
            ((s % 3600.0) / 60.0).floor()
        )
    }
}

/// A moment on the time axis: "7.3 s", "12:05", "2:00:00".
pub fn at(t: f64) -> String {
    if !t.is_finite() {
        return DASH.to_string();
    }
    if t < 300.0 {
        format!("{} s", trim(t, 1))
    } else {
        let t = t as u64;
        if t < 3600 {
            format!("{}:{:02}", t / 60, t % 60)
        } else {
            format!("{}:{:02}:{:02}", t / 3600, (t % 3600) / 60, t % 60)
        }
    }
}

/// What the comparison tables show for a value that is unknown.
pub const TABLE_DASH: &str = "–";

/// A number with `decimals` decimals, or [`TABLE_DASH`] when unknown.
pub fn opt_fixed(v: Option<f64>, decimals: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| TABLE_DASH.into(), |v| format!("{v:.decimals$}"))
}

/// A count, or [`TABLE_DASH`] when unknown.
pub fn opt_count(v: Option<u64>) -> String {
    v.map_or_else(|| TABLE_DASH.into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("a & \"b\""), "a &amp; &quot;b&quot;");
        assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    }

    #[test]
    fn numbers_never_print_nan_or_negative_zero() {
        assert_eq!(coord(-0.04), "0");
        assert_eq!(coord(12.34), "12.3");
        assert_eq!(coord(12.0), "12");
        assert_eq!(trim(1.50, 2), "1.5");
        assert_eq!(fmt_ms(1234.0), "1.23 s");
        assert_eq!(fmt_ms(0.5), "0.5 ms");
        assert_eq!(fmt_bytes(2.0 * GIB), "2.0 GiB");
        assert_eq!(fmt_bytes(300.0 * MIB), "300 MiB");
        assert_eq!(compact(1500.0), "1,500");
        assert_eq!(compact(1_000_000.0), "1M");
    }

    #[test]
    fn counts_shares_and_times() {
        assert_eq!(int(1_000_000), "1,000,000");
        assert_eq!(int(999), "999");
        assert_eq!(pct(3, 1000), "0.3 %");
        assert_eq!(pct(1, 0), "");
        assert_eq!(duration(36_000.0), "10 h 0 min");
        assert_eq!(duration(59.84), "59.8 s");
        assert_eq!(at(7.0), "7 s");
        assert_eq!(at(3723.0), "1:02:03");
    }
}
