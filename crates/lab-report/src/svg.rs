//! SVG building blocks shared by the time charts ([`super::time_chart`]) and the
//! stacked bar ([`super::bar_chart`]): the layout and its colours, the opening tag, text,
//! and path data. Written by hand: no JavaScript, no network, no chart library;
//! coordinates are rounded to 0.1 px to keep the markup small, and tooltips are SVG
//! `<title>` elements.

use std::fmt::Write as _;

use super::format::{coord, escape};

/// Width of every chart's view box; the page scales it to its column.
pub const WIDTH: f64 = 1100.0;

// Where the plot sits inside a time chart, and the height of one legend row.
pub const PLOT_LEFT: f64 = 76.0;
pub const PLOT_RIGHT: f64 = WIDTH - 76.0;
pub const PLOT_TOP: f64 = 58.0;
pub const PLOT_BOTTOM_MARGIN: f64 = 44.0;
pub const LEGEND_ROW: f64 = 20.0;
// The frame's font and colours (the data's colours belong to each chart).
pub const FONT: &str =
    "system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue','DejaVu Sans',Arial,sans-serif";
pub const TEXT: &str = "#1f2937";
pub const MUTED: &str = "#6b7280";
pub const GRID: &str = "#e5e7eb";
pub const GRID_MINOR: &str = "#f3f4f6";
pub const AXIS: &str = "#9ca3af";
/// A limit's line on every chart: the client timeout, the memory limit, the CPU quota.
pub const C_LIMIT: &str = "#c0392b";

/// Opening tag of an `<svg>`: standalone documents carry the namespace and a pixel size,
/// inline ones scale to their container.
pub fn svg_open(out: &mut String, width: f64, height: f64, label: &str, standalone: bool) {
    if standalone {
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"{FONT}\" font-size=\"12\" role=\"img\" aria-label=\"{l}\">\
             <style>.hv rect:hover{{fill-opacity:.06}}</style>\
             <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>",
            w = coord(width),
            h = coord(height),
            l = escape(label)
        );
    } else {
        let _ = write!(
            out,
            "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" font-family=\"{FONT}\" font-size=\"12\" \
             role=\"img\" aria-label=\"{l}\">",
            w = coord(width),
            h = coord(height),
            l = escape(label)
        );
    }
}

/// A `<text>` at (x, y) with extra attributes; the body is escaped.
pub fn text(out: &mut String, x: f64, y: f64, attrs: &str, body: &str) {
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" {attrs}>{}</text>",
        coord(x),
        coord(y),
        escape(body)
    );
}

/// Rough width of `s` at 12 px in a sans-serif face, for laying out legends.
pub fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.52
}

/// Path data through the points: "M x,y L x,y x,y …".
pub fn path_d(out: &mut String, pts: &[(f64, f64)]) {
    for (i, (x, y)) in pts.iter().enumerate() {
        let _ = match i {
            0 => write!(out, "M{},{}", coord(*x), coord(*y)),
            1 => write!(out, "L{},{}", coord(*x), coord(*y)),
            _ => write!(out, " {},{}", coord(*x), coord(*y)),
        };
    }
}
