//! The tooltips of the time charts: invisible columns ([`HoverBand`]) that give the
//! values at that time — per-second request figures, or the server's samples — averaged
//! or maximised when one column covers several seconds.

use std::fmt::Write as _;

use super::downsampling::bucket_ranges;
use super::format::{DASH, at, fin, int, opt_bytes, opt_int, opt_ms, rate, trim};
use super::time_chart::HoverBand;
use super::{Report, SecondRow, ServerSample};

/// At most this many hover columns per chart.
pub const HOVER_BANDS: usize = 300;

fn span_label(t0: f64, t1: f64) -> String {
    if t1 - t0 <= 1.0 + 1e-9 {
        format!("t = {}", at(t0))
    } else {
        format!("t = {} – {}", at(t0), at(t1))
    }
}

/// Tooltip for a range of per-second rows: the values for one second, or averages (rates)
/// and maxima (latencies) over several.
fn seconds_tooltip(rows: &[SecondRow]) -> String {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return String::new();
    };
    let n = rows.len() as f64;
    let sum = |f: fn(&SecondRow) -> u64| rows.iter().map(f).sum::<u64>() as f64 / n;
    let maxf = |f: fn(&SecondRow) -> Option<f64>| {
        rows.iter()
            .filter_map(|r| fin(f(r)))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let per = if rows.len() > 1 { "/s avg" } else { "/s" };
    let agg = if rows.len() > 1 { "max " } else { "" };
    let mut s = span_label(first.t_s as f64, last.t_s as f64 + 1.0);
    if let Some(u) = rows.iter().filter_map(|r| r.users).max() {
        let _ = write!(s, " · {} users", int(u));
    }
    if let Some(r) = maxf(|r| r.offered_rate) {
        let _ = write!(s, " · offered {}{per}", rate(r));
    }
    let _ = write!(s, "\nacknowledged {}{per}", rate(sum(|r| r.acknowledged)));
    let failed = sum(SecondRow::failed);
    let _ = write!(s, " · failed {}{per}", rate(failed));
    if failed > 0.0 {
        let parts: Vec<String> = [
            ("HTTP status", sum(|r| r.failed_status)),
            ("timed out", sum(|r| r.timed_out)),
            ("refused", sum(|r| r.connect_errors)),
            ("reset/other", sum(|r| r.transport_errors)),
        ]
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(k, v)| format!("{k} {}", rate(*v)))
        .collect();
        let _ = write!(s, " ({})", parts.join(", "));
    }
    let _ = write!(
        s,
        "\n{agg}p50 {} · {agg}p90 {} · {agg}p99 {}",
        opt_ms(maxf(|r| r.p50_ms)),
        opt_ms(maxf(|r| r.p90_ms)),
        opt_ms(maxf(|r| r.p99_ms))
    );
    let _ = write!(
        s,
        "\nin flight {}{}",
        if rows.len() > 1 { "max " } else { "" },
        int(rows.iter().map(|r| r.in_flight).max().unwrap_or(0))
    );
    s
}

pub fn seconds_hover(report: &Report) -> Vec<HoverBand> {
    let rows = &report.timeline.seconds;
    bucket_ranges(rows.len(), HOVER_BANDS)
        .into_iter()
        .map(|r| HoverBand {
            x0: rows[r.start].t_s as f64,
            x1: rows[r.end - 1].t_s as f64 + 1.0,
            text: seconds_tooltip(&rows[r]),
        })
        .collect()
}

pub fn server_hover(samples: &[&ServerSample]) -> Vec<HoverBand> {
    bucket_ranges(samples.len(), HOVER_BANDS)
        .into_iter()
        .map(|r| {
            let s = &samples[r.clone()];
            let t0 = s[0].t_s;
            let t1 = s[s.len() - 1].t_s;
            let x1 = samples.get(r.end).map(|n| n.t_s).unwrap_or(t1 + 0.25);
            let max_u = |f: fn(&ServerSample) -> Option<u64>| s.iter().filter_map(|x| f(x)).max();
            let max_f = |f: fn(&ServerSample) -> Option<f64>| {
                s.iter()
                    .filter_map(|x| fin(f(x)))
                    .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            };
            let agg = if s.len() > 1 { "max " } else { "" };
            let mut text = if s.len() > 1 {
                format!("t = {} – {}", at(t0), at(t1))
            } else {
                format!("t = {}", at(t0))
            };
            let _ = write!(
                text,
                "\n{agg}memory {} · {agg}RSS {}\n{agg}CPU {} · {agg}threads {}",
                opt_bytes(max_u(|x| x.memory_bytes)),
                opt_bytes(max_u(|x| x.rss_bytes)),
                fin(max_f(|x| x.cpu_percent))
                    .map(|v| format!("{} %", trim(v, 0)))
                    .unwrap_or_else(|| DASH.into()),
                opt_int(max_u(|x| x.threads))
            );
            HoverBand { x0: t0, x1, text }
        })
        .collect()
}
