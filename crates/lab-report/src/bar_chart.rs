//! The reconciliation's horizontal stacked bar: every order in one bar, split by what
//! happened to it.

use std::fmt::Write as _;

use super::format::{compact, coord, escape};
use super::svg::{GRID, GRID_MINOR, MUTED, TEXT, WIDTH, svg_open, text, text_width};

#[derive(Debug, Clone)]
pub struct BarSegment {
    pub name: String,
    pub color: &'static str,
    pub value: u64,
    pub tooltip: String,
}

/// One horizontal bar split into segments proportional to their values; a non-zero
/// segment is never thinner than 3 px, so 3 lost orders out of a million still show.
/// Segments after `gap_before` (an index) are set apart: counted in addition to the
/// first ones rather than as part of them.
#[derive(Debug, Clone)]
pub struct StackedBar {
    pub title: String,
    pub segments: Vec<BarSegment>,
    pub gap_before: Option<usize>,
}

/// The bar's left and right ends, its height, and the narrowest a non-zero segment gets.
const LEFT: f64 = 8.0;
const RIGHT: f64 = WIDTH - 8.0;
const BAR_H: f64 = 30.0;
const MIN_W: f64 = 4.0;

impl StackedBar {
    /// The bar as SVG markup: inline (for the page) or a standalone document with its title.
    pub fn to_svg(&self, standalone: bool) -> String {
        let mut svg = String::new();
        let title_h = if standalone { 30.0 } else { 0.0 };
        let bar_y = title_h + 6.0;
        let legend_y = bar_y + BAR_H + 24.0;
        let rows = (self.segments.len() as f64 / 4.0).ceil().max(1.0);
        let height = legend_y + rows * 22.0;
        svg_open(&mut svg, WIDTH, height, &self.title, standalone);
        if standalone {
            text(
                &mut svg,
                LEFT,
                20.0,
                &format!("font-size=\"15\" font-weight=\"600\" fill=\"{TEXT}\""),
                &self.title,
            );
        }
        let total: u64 = self
            .segments
            .iter()
            .filter(|s| s.value > 0)
            .map(|s| s.value)
            .sum();
        if total == 0 {
            draw_empty(&mut svg, bar_y);
        } else {
            self.draw_segments(&mut svg, bar_y, total);
        }
        self.draw_legend(&mut svg, legend_y);
        svg.push_str("</svg>");
        svg
    }

    /// Whether the segments from `gap_before` on are set apart: there are orders on both
    /// sides of the gap.
    fn has_gap(&self) -> bool {
        self.gap_before
            .is_some_and(|g| self.segments.iter().skip(g).any(|s| s.value > 0))
            && self
                .segments
                .iter()
                .take(self.gap_before.unwrap_or(0))
                .any(|s| s.value > 0)
    }

    /// The factor for the segments wider than the minimum, so that the tiny ones can be
    /// widened to it and all still fit in `avail`.
    fn scale(&self, total: u64, avail: f64) -> f64 {
        let raw: Vec<f64> = self
            .segments
            .iter()
            .filter(|s| s.value > 0)
            .map(|s| s.value as f64 / total as f64 * avail)
            .collect();
        let small: f64 = raw.iter().filter(|w| **w < MIN_W).map(|_| MIN_W).sum();
        let big_total: f64 = raw.iter().filter(|w| **w >= MIN_W).sum();
        if big_total > 0.0 {
            (avail - small) / big_total
        } else {
            1.0
        }
    }

    /// The non-zero segments left to right, tiny ones widened to the minimum (the room
    /// taken from the others), the gap before the first one set apart.
    fn draw_segments(&self, svg: &mut String, bar_y: f64, total: u64) {
        let has_gap = self.has_gap();
        let gap = if has_gap { 10.0 } else { 0.0 };
        let avail = RIGHT - LEFT - gap;
        let scale = self.scale(total, avail);
        let first_extra = self
            .gap_before
            .and_then(|g| (g..self.segments.len()).find(|&i| self.segments[i].value > 0));
        let mut x = LEFT;
        for (idx, seg) in self.segments.iter().enumerate() {
            if seg.value == 0 {
                continue;
            }
            if has_gap && Some(idx) == first_extra {
                x += gap;
            }
            let w0 = seg.value as f64 / total as f64 * avail;
            let w = if w0 < MIN_W { MIN_W } else { w0 * scale };
            draw_segment(svg, seg, x, w, bar_y);
            x += w;
        }
    }

    /// The legend: every segment (zero ones faded), four per row.
    fn draw_legend(&self, svg: &mut String, legend_y: f64) {
        let col_w = (RIGHT - LEFT) / 4.0;
        for (i, seg) in self.segments.iter().enumerate() {
            let x = LEFT + (i % 4) as f64 * col_w;
            let y = legend_y + (i / 4) as f64 * 22.0;
            let _ = write!(
                svg,
                "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" rx=\"2\" fill=\"{}\"/>",
                coord(x),
                coord(y - 10.0),
                seg.color
            );
            let label = format!("{}: {}", seg.name, compact(seg.value as f64));
            let weight = if seg.value > 0 {
                ""
            } else {
                " fill-opacity=\"0.6\""
            };
            text(
                svg,
                x + 18.0,
                y,
                &format!("fill=\"{TEXT}\"{weight}"),
                &label,
            );
        }
    }
}

/// An empty bar that says so.
fn draw_empty(svg: &mut String, bar_y: f64) {
    let _ = write!(
        svg,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"{GRID_MINOR}\" stroke=\"{GRID}\"/>",
        coord(LEFT),
        coord(bar_y),
        coord(RIGHT - LEFT),
        coord(BAR_H)
    );
    text(
        svg,
        WIDTH / 2.0,
        bar_y + 20.0,
        &format!("text-anchor=\"middle\" fill=\"{MUTED}\""),
        "nothing to reconcile",
    );
}

/// One segment at `x`, `w` wide, with its tooltip, and its count inside when it fits.
fn draw_segment(svg: &mut String, seg: &BarSegment, x: f64, w: f64, bar_y: f64) {
    let _ = write!(
        svg,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"1\"><title>{}</title></rect>",
        coord(x),
        coord(bar_y),
        coord(w),
        coord(BAR_H),
        seg.color,
        escape(&seg.tooltip)
    );
    let label = compact(seg.value as f64);
    if w > text_width(&label, 12.0) + 8.0 {
        text(
            svg,
            x + w / 2.0,
            bar_y + 20.0,
            "text-anchor=\"middle\" fill=\"#fff\" font-weight=\"600\"",
            &label,
        );
    }
}
