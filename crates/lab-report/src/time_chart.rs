//! One chart over time ([`TimeChart`]): stacked areas, lines, reference rules, markers
//! and hover columns on the shared time axis, drawn as SVG. Time charts share one x scale
//! (seconds since the load started) so they line up when stacked. This module knows
//! nothing about the [`Report`](super::Report): [`super::charts`] turns the report into
//! time charts.

use std::fmt::Write as _;

use super::axes::{Axis, TimeAxis};
use super::downsampling::{MAX_POINTS, bucket_ranges};
use super::format::{coord, escape};
use super::svg::{
    AXIS, GRID, GRID_MINOR, LEGEND_ROW, MUTED, PLOT_BOTTOM_MARGIN, PLOT_LEFT, PLOT_RIGHT, PLOT_TOP,
    TEXT, WIDTH, path_d, svg_open, text, text_width,
};

/// Layers stacked on the left axis, one value per time bucket (e.g. acknowledged and
/// failed requests per second). Each value is drawn flat across its own bucket, from its
/// start to its start + `width`, never interpolated towards its neighbours: a slope
/// between two seconds would draw refusals rising in the second before the first one.
#[derive(Debug, Clone, Default)]
pub struct StackedArea {
    /// Where each bucket starts (seconds since the load started), ascending.
    pub starts: Vec<f64>,
    /// How long each bucket lasts (1 for per-second rows).
    pub width: f64,
    pub layers: Vec<AreaLayer>,
}

#[derive(Debug, Clone)]
pub struct AreaLayer {
    pub name: String,
    pub color: &'static str,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct LineSeries {
    pub name: String,
    pub color: &'static str,
    pub width: f64,
    /// An SVG `stroke-dasharray`, e.g. "6 4".
    pub dash: Option<&'static str>,
    pub right_axis: bool,
    /// Shade the area under the line.
    pub fill: bool,
    /// Draw as a staircase: each value holds until the next point, and the last point
    /// ends the line (give a per-second series a last point at the end of its last
    /// second), e.g. virtual users.
    pub step: bool,
    /// Runs of points (x in seconds, y in axis units); see [`segments`].
    pub segments: Vec<Vec<(f64, f64)>>,
}

impl LineSeries {
    /// A plain line on the left axis, 2 px wide, straight between its points, not filled;
    /// set the other fields with `LineSeries { step: true, ..LineSeries::new(…) }`.
    pub fn new(
        name: &str,
        color: &'static str,
        dash: Option<&'static str>,
        segments: Vec<Vec<(f64, f64)>>,
    ) -> LineSeries {
        LineSeries {
            name: name.to_string(),
            color,
            width: 2.0,
            dash,
            right_axis: false,
            fill: false,
            step: false,
            segments,
        }
    }
}

/// A horizontal reference line with a label, e.g. the memory limit.
#[derive(Debug, Clone)]
pub struct Rule {
    pub value: f64,
    pub right_axis: bool,
    pub label: String,
    pub color: &'static str,
}

/// A vertical line at a moment, e.g. a crash; its tooltip says what happened.
#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
    pub tooltip: String,
    pub color: &'static str,
    pub dashed: bool,
}

/// An invisible column whose tooltip gives the values at that time.
#[derive(Debug, Clone)]
pub struct HoverBand {
    pub x0: f64,
    pub x1: f64,
    pub text: String,
}

/// One chart over time, drawn on the shared [`TimeAxis`].
#[derive(Debug, Clone)]
pub struct TimeChart {
    pub title: String,
    pub height: f64,
    pub x: TimeAxis,
    pub left: Axis,
    pub right: Option<Axis>,
    pub area: Option<StackedArea>,
    pub lines: Vec<LineSeries>,
    pub rules: Vec<Rule>,
    pub markers: Vec<Marker>,
    /// Extra legend entries drawn as a vertical line swatch (e.g. "crash").
    pub marker_legend: Vec<(String, &'static str, bool)>,
    pub hover: Vec<HoverBand>,
    /// Shown across the plot when there is nothing to draw.
    pub note: Option<String>,
}

impl TimeChart {
    /// Total height: the nominal height plus the rows the legend needs beyond one.
    fn total_height(&self) -> f64 {
        self.height + self.legend_extra()
    }

    fn plot_top(&self) -> f64 {
        PLOT_TOP + self.legend_extra()
    }

    fn plot_bottom(&self) -> f64 {
        self.total_height() - PLOT_BOTTOM_MARGIN
    }

    fn legend_extra(&self) -> f64 {
        let rows = self.legend_layout().iter().map(|i| i.1).max().unwrap_or(0);
        rows as f64 * LEGEND_ROW
    }

    fn px(&self, x: f64) -> f64 {
        let f = x / self.x.max;
        let f = if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        };
        PLOT_LEFT + f * (PLOT_RIGHT - PLOT_LEFT)
    }

    fn py(&self, axis: &Axis, v: f64) -> f64 {
        let bottom = self.plot_bottom();
        bottom - axis.scale.frac(v) * (bottom - self.plot_top())
    }

    fn axis(&self, right: bool) -> &Axis {
        match (&self.right, right) {
            (Some(r), true) => r,
            _ => &self.left,
        }
    }

    fn has_data(&self) -> bool {
        self.area.as_ref().is_some_and(|a| !a.starts.is_empty())
            || self
                .lines
                .iter()
                .any(|l| l.segments.iter().any(|s| !s.is_empty()))
    }

    /// The chart as SVG markup: inline (for the page) or a standalone document. Drawn
    /// back to front: grid, areas, lines, rules, hover columns, markers, axes, legend.
    pub fn to_svg(&self, standalone: bool) -> String {
        let mut svg = String::with_capacity(64 * 1024);
        svg_open(
            &mut svg,
            WIDTH,
            self.total_height(),
            &self.title,
            standalone,
        );
        text(
            &mut svg,
            PLOT_LEFT - 60.0,
            22.0,
            &format!("font-size=\"15\" font-weight=\"600\" fill=\"{TEXT}\""),
            &self.title,
        );
        self.draw_grid(&mut svg);
        // Stacked areas, bottom layer first.
        if let Some(area) = &self.area {
            self.draw_area(&mut svg, area);
        }
        for line in &self.lines {
            self.draw_line(&mut svg, line);
        }
        for rule in &self.rules {
            self.draw_rule(&mut svg, rule);
        }
        self.draw_hover(&mut svg);
        self.draw_markers(&mut svg);
        self.draw_axes(&mut svg);
        self.draw_legend(&mut svg);
        self.draw_note(&mut svg);
        svg.push_str("</svg>");
        svg
    }

    /// The horizontal grid lines of the left axis (minor, then at its ticks) and the
    /// vertical ones at the time ticks.
    fn draw_grid(&self, svg: &mut String) {
        let (top, bottom) = (self.plot_top(), self.plot_bottom());
        svg.push_str("<g stroke-width=\"1\">");
        let minor = self.left.minor.iter().map(|v| (*v, GRID_MINOR));
        let major = self.left.ticks.iter().map(|(v, _)| (*v, GRID));
        for (v, stroke) in minor.chain(major) {
            let y = self.py(&self.left, v);
            let _ = write!(
                svg,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{stroke}\"/>",
                coord(PLOT_LEFT),
                coord(PLOT_RIGHT),
                y = coord(y)
            );
        }
        for (t, _) in &self.x.ticks {
            let x = self.px(*t);
            let _ = write!(
                svg,
                "<line x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\" stroke=\"{GRID_MINOR}\"/>",
                coord(top),
                coord(bottom),
                x = coord(x)
            );
        }
        svg.push_str("</g>");
    }

    /// A reference line across the plot, labelled at the end away from its axis.
    fn draw_rule(&self, svg: &mut String, rule: &Rule) {
        let axis = self.axis(rule.right_axis);
        let y = self.py(axis, rule.value);
        let _ = write!(
            svg,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{col}\" stroke-width=\"1.5\" stroke-dasharray=\"7 5\"/>",
            coord(PLOT_LEFT),
            coord(PLOT_RIGHT),
            y = coord(y),
            col = rule.color
        );
        let (tx, anchor) = if rule.right_axis {
            (PLOT_LEFT + 6.0, "start")
        } else {
            (PLOT_RIGHT - 6.0, "end")
        };
        text(
            svg,
            tx,
            y - 5.0,
            &format!(
                "text-anchor=\"{anchor}\" font-weight=\"600\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\"",
                rule.color
            ),
            &rule.label,
        );
    }

    /// Hover columns (invisible until hovered), below the markers so those keep their
    /// own tooltips.
    fn draw_hover(&self, svg: &mut String) {
        if self.hover.is_empty() {
            return;
        }
        let (top, bottom) = (self.plot_top(), self.plot_bottom());
        svg.push_str("<g class=\"hv\" fill=\"#000\" fill-opacity=\"0\">");
        for band in &self.hover {
            let x0 = self.px(band.x0);
            let x1 = self.px(band.x1);
            let _ = write!(
                svg,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                coord(x0),
                coord(top),
                coord((x1 - x0).max(0.5)),
                coord(bottom - top),
                escape(&band.text)
            );
        }
        svg.push_str("</g>");
    }

    /// Markers (crashes, the knee), left to right. Labels go on the first of three rows
    /// where they do not overlap an earlier one.
    fn draw_markers(&self, svg: &mut String) {
        let mut row_end = [f64::NEG_INFINITY; 3];
        let mut order: Vec<&Marker> = self.markers.iter().filter(|m| m.x.is_finite()).collect();
        order.sort_by(|a, b| a.x.total_cmp(&b.x));
        for m in order {
            self.draw_marker(svg, m, &mut row_end);
        }
    }

    /// One marker: a line, a hit area, and its label when one of the rows (`row_end`:
    /// where each row's last label ends) has room for it.
    fn draw_marker(&self, svg: &mut String, m: &Marker, row_end: &mut [f64; 3]) {
        let top = self.plot_top();
        let x = self.px(m.x);
        let dash = if m.dashed {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = write!(
            svg,
            "<g><title>{tip}</title><line x1=\"{x}\" x2=\"{x}\" y1=\"{t}\" y2=\"{b}\" stroke=\"{col}\" stroke-width=\"1.5\"{dash}/>\
             <line x1=\"{x}\" x2=\"{x}\" y1=\"{t}\" y2=\"{b}\" stroke=\"#000\" stroke-opacity=\"0\" stroke-width=\"8\"/>",
            tip = escape(&m.tooltip),
            x = coord(x),
            t = coord(top),
            b = coord(self.plot_bottom()),
            col = m.color
        );
        let w = text_width(&m.label, 11.0);
        let (lx, anchor, x0, x1) = if x + 4.0 + w > PLOT_RIGHT {
            (x - 4.0, "end", x - 4.0 - w, x)
        } else {
            (x + 4.0, "start", x, x + 4.0 + w)
        };
        if let Some(row) = (!m.label.is_empty())
            .then(|| row_end.iter().position(|end| x0 > end + 6.0))
            .flatten()
        {
            text(
                svg,
                lx,
                top + 13.0 + row as f64 * 14.0,
                &format!(
                    "font-size=\"11\" font-weight=\"600\" text-anchor=\"{anchor}\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\"",
                    m.color
                ),
                &m.label,
            );
            row_end[row] = x1;
        }
        svg.push_str("</g>");
    }

    /// The axes: the frame, the left axis's tick labels, the right axis, the time ticks,
    /// and the two titles.
    fn draw_axes(&self, svg: &mut String) {
        let (top, bottom) = (self.plot_top(), self.plot_bottom());
        let _ = write!(
            svg,
            "<path d=\"M{l},{t}V{b}H{r}\" fill=\"none\" stroke=\"{AXIS}\"/>",
            l = coord(PLOT_LEFT),
            t = coord(top),
            b = coord(bottom),
            r = coord(PLOT_RIGHT)
        );
        for (v, label) in &self.left.ticks {
            let y = self.py(&self.left, *v);
            let attrs = format!("{} text-anchor=\"end\"", tick_attrs());
            text(svg, PLOT_LEFT - 7.0, y + 4.0, &attrs, label);
        }
        if let Some(right) = &self.right {
            self.draw_right_axis(svg, right);
        }
        self.draw_time_ticks(svg);
        let _ = write!(
            svg,
            "<text transform=\"translate(16,{}) rotate(-90)\" text-anchor=\"middle\" fill=\"{TEXT}\">{}</text>",
            coord((top + bottom) / 2.0),
            escape(&self.left.title)
        );
        text(
            svg,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            self.total_height() - 8.0,
            &format!("text-anchor=\"middle\" fill=\"{TEXT}\""),
            &self.x.title,
        );
    }

    /// The right axis: its line, tick labels and title.
    fn draw_right_axis(&self, svg: &mut String, right: &Axis) {
        let (top, bottom) = (self.plot_top(), self.plot_bottom());
        let _ = write!(
            svg,
            "<path d=\"M{r},{t}V{b}\" fill=\"none\" stroke=\"{AXIS}\"/>",
            r = coord(PLOT_RIGHT),
            t = coord(top),
            b = coord(bottom)
        );
        for (v, label) in &right.ticks {
            let y = self.py(right, *v);
            let attrs = format!("{} text-anchor=\"start\"", tick_attrs());
            text(svg, PLOT_RIGHT + 7.0, y + 4.0, &attrs, label);
        }
        let _ = write!(
            svg,
            "<text transform=\"translate({},{}) rotate(90)\" text-anchor=\"middle\" fill=\"{TEXT}\">{}</text>",
            coord(WIDTH - 12.0),
            coord((top + bottom) / 2.0),
            escape(&right.title)
        );
    }

    /// The time axis's tick marks and labels.
    fn draw_time_ticks(&self, svg: &mut String) {
        let bottom = self.plot_bottom();
        for (t, label) in &self.x.ticks {
            let x = self.px(*t);
            let _ = write!(
                svg,
                "<line x1=\"{x}\" x2=\"{x}\" y1=\"{b}\" y2=\"{b5}\" stroke=\"{AXIS}\"/>",
                x = coord(x),
                b = coord(bottom),
                b5 = coord(bottom + 5.0)
            );
            let attrs = format!("{} text-anchor=\"middle\"", tick_attrs());
            text(svg, x, bottom + 18.0, &attrs, label);
        }
    }

    /// The chart's note across the plot, or "no data" when there is nothing to draw.
    fn draw_note(&self, svg: &mut String) {
        let note = match &self.note {
            Some(note) => note.as_str(),
            None if !self.has_data() => "no data",
            None => return,
        };
        text(
            svg,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            (self.plot_top() + self.plot_bottom()) / 2.0,
            &format!("text-anchor=\"middle\" font-size=\"14\" fill=\"{MUTED}\""),
            note,
        );
    }

    fn draw_area(&self, svg: &mut String, area: &StackedArea) {
        let n = area.starts.len();
        if n == 0 || area.layers.is_empty() {
            return;
        }
        // Rates are downsampled by averaging over buckets rather than with LTTB: the area
        // then still counts the requests, and a rare failure is not drawn as a constant band
        // (LTTB keeps extremes, which would inflate the thin failure layers). A merged
        // bucket spans from its first second's start to its last second's end.
        let buckets = bucket_ranges(n, MAX_POINTS);
        let spans: Vec<(f64, f64)> = buckets
            .iter()
            .map(|r| (area.starts[r.start], area.starts[r.end - 1] + area.width))
            .collect();
        let layers: Vec<Vec<f64>> = area
            .layers
            .iter()
            .map(|l| {
                buckets
                    .iter()
                    .map(|r| {
                        r.clone()
                            .map(|i| positive_or_zero(l.values.get(i).copied()))
                            .sum::<f64>()
                            / r.len() as f64
                    })
                    .collect()
            })
            .collect();
        // Each bucket's value as a flat top (or bottom) from its start to its end.
        let flat = |values: &[f64]| -> Vec<(f64, f64)> {
            spans
                .iter()
                .zip(values)
                .flat_map(|(&(x0, x1), &v)| {
                    let y = self.py(&self.left, v);
                    [(self.px(x0), y), (self.px(x1), y)]
                })
                .collect()
        };
        let mut lower = vec![0.0f64; spans.len()];
        for (layer, values) in area.layers.iter().zip(&layers) {
            let upper: Vec<f64> = values.iter().zip(&lower).map(|(v, lo)| lo + v).collect();
            if upper.iter().zip(&lower).all(|(u, l)| u <= l) {
                lower = upper;
                continue;
            }
            let mut pts = flat(&upper);
            pts.extend(flat(&lower).into_iter().rev());
            svg.push_str("<path d=\"");
            path_d(svg, &pts);
            let _ = write!(
                svg,
                "Z\" fill=\"{col}\" fill-opacity=\"0.78\" stroke=\"{col}\" stroke-width=\"0.6\"/>",
                col = layer.color
            );
            lower = upper;
        }
    }

    fn draw_line(&self, svg: &mut String, line: &LineSeries) {
        let axis = self.axis(line.right_axis);
        let bottom = self.plot_bottom();
        for seg in &line.segments {
            if seg.is_empty() {
                continue;
            }
            let mut pts: Vec<(f64, f64)> =
                Vec::with_capacity(seg.len() * if line.step { 2 } else { 1 });
            for (i, &(x, y)) in seg.iter().enumerate() {
                let p = (self.px(x), self.py(axis, y));
                if line.step && i > 0 {
                    let prev_y = pts.last().map(|p| p.1).unwrap_or(p.1);
                    pts.push((p.0, prev_y));
                }
                pts.push(p);
            }
            if pts.len() == 1 {
                let _ = write!(
                    svg,
                    "<circle cx=\"{}\" cy=\"{}\" r=\"2\" fill=\"{}\"/>",
                    coord(pts[0].0),
                    coord(pts[0].1),
                    line.color
                );
                continue;
            }
            if line.fill {
                let mut poly = pts.clone();
                poly.push((pts[pts.len() - 1].0, bottom));
                poly.push((pts[0].0, bottom));
                svg.push_str("<path d=\"");
                path_d(svg, &poly);
                let _ = write!(
                    svg,
                    "Z\" fill=\"{}\" fill-opacity=\"0.15\" stroke=\"none\"/>",
                    line.color
                );
            }
            svg.push_str("<path d=\"");
            path_d(svg, &pts);
            let dash = line
                .dash
                .map(|d| format!(" stroke-dasharray=\"{d}\""))
                .unwrap_or_default();
            let _ = write!(
                svg,
                "\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" stroke-linejoin=\"round\"{dash}/>",
                line.color,
                coord(line.width)
            );
        }
    }

    /// Legend entries with their position: x offset and row (0-based); rows wrap at the
    /// plot's right edge.
    fn legend_layout(&self) -> Vec<(f64, usize, String, Swatch)> {
        let mut items: Vec<(String, Swatch)> = Vec::new();
        if let Some(area) = &self.area {
            for l in &area.layers {
                items.push((l.name.clone(), Swatch::Rect(l.color)));
            }
        }
        for l in &self.lines {
            let name = if l.right_axis && self.right.is_some() {
                format!("{} (right axis)", l.name)
            } else {
                l.name.clone()
            };
            items.push((name, Swatch::Line(l.color, l.width.max(2.0), l.dash)));
        }
        for (name, color, dashed) in &self.marker_legend {
            items.push((name.clone(), Swatch::VLine(color, *dashed)));
        }
        let mut out = Vec::with_capacity(items.len());
        let (mut x, mut row) = (PLOT_LEFT, 0usize);
        for (name, swatch) in items {
            let w = 24.0 + text_width(&name, 12.0) + 18.0;
            if x > PLOT_LEFT && x + w - 18.0 > PLOT_RIGHT {
                x = PLOT_LEFT;
                row += 1;
            }
            out.push((x, row, name, swatch));
            x += w;
        }
        out
    }

    fn draw_legend(&self, svg: &mut String) {
        for (x, row, name, swatch) in self.legend_layout() {
            let y = 42.0 + row as f64 * LEGEND_ROW;
            let _ = match swatch {
                Swatch::Rect(color) => write!(
                    svg,
                    "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" rx=\"2\" fill=\"{color}\" fill-opacity=\"0.85\"/>",
                    coord(x + 3.0),
                    coord(y - 6.0)
                ),
                Swatch::Line(color, width, dash) => write!(
                    svg,
                    "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"{}\"{}/>",
                    coord(x),
                    coord(x + 18.0),
                    coord(width),
                    dash.map(|d| format!(" stroke-dasharray=\"{d}\""))
                        .unwrap_or_default(),
                    y = coord(y)
                ),
                Swatch::VLine(color, dashed) => write!(
                    svg,
                    "<line x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2\"{}/>",
                    coord(y - 7.0),
                    coord(y + 7.0),
                    if dashed {
                        " stroke-dasharray=\"4 3\""
                    } else {
                        ""
                    },
                    x = coord(x + 9.0)
                ),
            };
            text(svg, x + 24.0, y + 4.0, &format!("fill=\"{TEXT}\""), &name);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Swatch {
    Rect(&'static str),
    Line(&'static str, f64, Option<&'static str>),
    VLine(&'static str, bool),
}

/// A layer's value for drawing: missing, non-finite or negative counts as 0.
/// The attributes of the axes' tick labels, before their anchor.
fn tick_attrs() -> String {
    format!("fill=\"{MUTED}\" font-size=\"11\"")
}

fn positive_or_zero(v: Option<f64>) -> f64 {
    v.filter(|v| v.is_finite() && *v > 0.0).unwrap_or(0.0)
}
