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

impl StackedBar {
    pub fn to_svg(&self, standalone: bool) -> String {
        let mut svg = String::new();
        let title_h = if standalone { 30.0 } else { 0.0 };
        let bar_y = title_h + 6.0;
        let bar_h = 30.0;
        let legend_y = bar_y + bar_h + 24.0;
        let left = 8.0;
        let right = WIDTH - 8.0;
        let shown: Vec<&BarSegment> = self.segments.iter().filter(|s| s.value > 0).collect();
        let rows = (self.segments.len() as f64 / 4.0).ceil().max(1.0);
        let height = legend_y + rows * 22.0;
        svg_open(&mut svg, WIDTH, height, &self.title, standalone);
        if standalone {
            text(
                &mut svg,
                left,
                20.0,
                &format!("font-size=\"15\" font-weight=\"600\" fill=\"{TEXT}\""),
                &self.title,
            );
        }
        let total: u64 = shown.iter().map(|s| s.value).sum();
        if total == 0 {
            let _ = write!(
                svg,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"{GRID_MINOR}\" stroke=\"{GRID}\"/>",
                coord(left),
                coord(bar_y),
                coord(right - left),
                coord(bar_h)
            );
            text(
                &mut svg,
                WIDTH / 2.0,
                bar_y + 20.0,
                &format!("text-anchor=\"middle\" fill=\"{MUTED}\""),
                "nothing to reconcile",
            );
        } else {
            let has_gap = self
                .gap_before
                .is_some_and(|g| self.segments.iter().skip(g).any(|s| s.value > 0))
                && self
                    .segments
                    .iter()
                    .take(self.gap_before.unwrap_or(0))
                    .any(|s| s.value > 0);
            let gap = if has_gap { 10.0 } else { 0.0 };
            let min_w = 4.0;
            let avail = right - left - gap;
            // Widen tiny segments to the minimum, taking the room from the others.
            let raw: Vec<f64> = shown
                .iter()
                .map(|s| s.value as f64 / total as f64 * avail)
                .collect();
            let small: f64 = raw.iter().filter(|w| **w < min_w).map(|_| min_w).sum();
            let big_total: f64 = raw.iter().filter(|w| **w >= min_w).sum();
            let scale = if big_total > 0.0 {
                (avail - small) / big_total
            } else {
                1.0
            };
            let first_extra = self
                .gap_before
                .and_then(|g| (g..self.segments.len()).find(|&i| self.segments[i].value > 0));
            let mut x = left;
            for (idx, seg) in self.segments.iter().enumerate() {
                if seg.value == 0 {
                    continue;
                }
                if has_gap && Some(idx) == first_extra {
                    x += gap;
                }
                let w0 = seg.value as f64 / total as f64 * avail;
                let w = if w0 < min_w { min_w } else { w0 * scale };
                let _ = write!(
                    svg,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"1\"><title>{}</title></rect>",
                    coord(x),
                    coord(bar_y),
                    coord(w),
                    coord(bar_h),
                    seg.color,
                    escape(&seg.tooltip)
                );
                let label = compact(seg.value as f64);
                if w > text_width(&label, 12.0) + 8.0 {
                    text(
                        &mut svg,
                        x + w / 2.0,
                        bar_y + 20.0,
                        "text-anchor=\"middle\" fill=\"#fff\" font-weight=\"600\"",
                        &label,
                    );
                }
                x += w;
            }
        }
        // Legend: four per row.
        let col_w = (right - left) / 4.0;
        for (i, seg) in self.segments.iter().enumerate() {
            let x = left + (i % 4) as f64 * col_w;
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
                &mut svg,
                x + 18.0,
                y,
                &format!("fill=\"{TEXT}\"{weight}"),
                &label,
            );
        }
        svg.push_str("</svg>");
        svg
    }
}
