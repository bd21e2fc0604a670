//! Inline SVG charts for `report.html`, written by hand: no JavaScript, no network, no
//! chart library. Time charts share one x scale (seconds since the load started) so they
//! line up when stacked; long series are downsampled with LTTB
//! (Largest-Triangle-Three-Buckets) so a ten-hour run still draws ~1,500 points per
//! series; coordinates are rounded to 0.1 px to keep the markup small. Tooltips are SVG
//! `<title>` elements.
//!
//! This module knows nothing about the [`Report`](super::Report): [`super::html`] turns
//! the report into [`TimeChart`]s and [`StackedBar`]s.

use std::fmt::Write as _;

use super::format::{GIB, KIB, MIB, compact, coord, escape, fmt_ms, trim};

/// The most points a plotted series keeps after downsampling.
pub const MAX_POINTS: usize = 1500;

/// Width of every chart's view box; the page scales it to its column.
pub const WIDTH: f64 = 1100.0;

const PLOT_LEFT: f64 = 76.0;
const PLOT_RIGHT: f64 = WIDTH - 76.0;
const PLOT_TOP: f64 = 58.0;
const PLOT_BOTTOM_MARGIN: f64 = 44.0;
const LEGEND_ROW: f64 = 20.0;
const FONT: &str =
    "system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue','DejaVu Sans',Arial,sans-serif";
const TEXT: &str = "#1f2937";
const MUTED: &str = "#6b7280";
const GRID: &str = "#e5e7eb";
const GRID_MINOR: &str = "#f3f4f6";
const AXIS: &str = "#9ca3af";

// ---------------------------------------------------------------------------------------
// Downsampling
// ---------------------------------------------------------------------------------------

/// Indices of the points Largest-Triangle-Three-Buckets keeps when reducing `points`
/// (sorted by x) to `threshold` points: always the first and the last, and in each bucket
/// between them the point forming the largest triangle with the previously kept point and
/// the average of the next bucket — peaks and dips survive, flat stretches thin out.
/// Returns every index when there are no more than `threshold` points.
pub fn lttb_indices(points: &[(f64, f64)], threshold: usize) -> Vec<usize> {
    let n = points.len();
    if threshold >= n || n <= 2 {
        return (0..n).collect();
    }
    if threshold < 3 {
        return if threshold == 0 {
            Vec::new()
        } else {
            vec![0, n - 1]
        };
    }
    let mut kept = Vec::with_capacity(threshold);
    kept.push(0);
    let every = (n - 2) as f64 / (threshold - 2) as f64;
    let mut a = 0usize;
    for i in 0..threshold - 2 {
        // The next bucket's average is the third corner of the triangle.
        let avg_start = ((i + 1) as f64 * every) as usize + 1;
        let avg_end = (((i + 2) as f64 * every) as usize + 1).min(n);
        let (mut avg_x, mut avg_y) = (0.0, 0.0);
        let avg_len = avg_end.saturating_sub(avg_start).max(1);
        for p in &points[avg_start.min(n - 1)..avg_end.max(avg_start.min(n - 1) + 1)] {
            avg_x += p.0;
            avg_y += p.1;
        }
        avg_x /= avg_len as f64;
        avg_y /= avg_len as f64;

        let start = (i as f64 * every) as usize + 1;
        let end = (((i + 1) as f64 * every) as usize + 1).min(n - 1);
        let (ax, ay) = points[a];
        let mut best = start;
        let mut best_area = -1.0;
        for (j, &(x, y)) in points.iter().enumerate().take(end).skip(start) {
            let area = ((ax - avg_x) * (y - ay) - (ax - x) * (avg_y - ay)).abs();
            if area > best_area {
                best_area = area;
                best = j;
            }
        }
        kept.push(best);
        a = best;
    }
    kept.push(n - 1);
    kept
}

/// `points` reduced to at most `threshold` points with LTTB (see [`lttb_indices`]).
pub fn lttb(points: &[(f64, f64)], threshold: usize) -> Vec<(f64, f64)> {
    lttb_indices(points, threshold)
        .into_iter()
        .map(|i| points[i])
        .collect()
}

/// Splits a series into drawable runs — a missing or non-finite value, or a jump in x
/// wider than `max_gap`, ends a run, so gaps show as gaps instead of being bridged or
/// printed as "NaN" — and downsamples the runs with LTTB to about `budget` points in all.
pub fn segments<I>(points: I, max_gap: Option<f64>, budget: usize) -> Vec<Vec<(f64, f64)>>
where
    I: IntoIterator<Item = (f64, Option<f64>)>,
{
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        let y = y.filter(|y| y.is_finite());
        let gap = match (current.last(), max_gap) {
            (Some(&(last_x, _)), Some(max_gap)) => x - last_x > max_gap,
            _ => false,
        };
        if (y.is_none() || gap || !x.is_finite()) && !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
        if let (Some(y), true) = (y, x.is_finite()) {
            current.push((x, y));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    let total: usize = runs.iter().map(Vec::len).sum();
    if total <= budget {
        return runs;
    }
    if runs.len() > budget / 8 {
        // Gaps so many that they are narrower than a pixel or two: draw one bridged line
        // rather than thousands of fragments.
        let all: Vec<(f64, f64)> = runs.into_iter().flatten().collect();
        return vec![lttb(&all, budget)];
    }
    runs.into_iter()
        .map(|run| {
            let share = (budget as f64 * run.len() as f64 / total as f64).ceil() as usize;
            lttb(&run, share.max(3))
        })
        .collect()
}

/// Splits `n` items into at most `max` contiguous, non-empty ranges of near-equal length.
pub fn bucket_ranges(n: usize, max: usize) -> Vec<std::ops::Range<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let k = n.min(max.max(1));
    (0..k)
        .map(|i| (i * n / k)..((i + 1) * n / k))
        .filter(|r| !r.is_empty())
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

// ---------------------------------------------------------------------------------------
// Axes
// ---------------------------------------------------------------------------------------

/// What an axis measures, which decides its ticks and their labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Plain counts or rates (requests/s, users): integer steps.
    Count,
    Ms,
    Bytes,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear { min: f64, max: f64 },
    Log { min: f64, max: f64 },
}

impl Scale {
    /// Position of `v` between the bottom (0) and the top (1), clamped.
    fn frac(&self, v: f64) -> f64 {
        let f = match *self {
            Scale::Linear { min, max } => (v - min) / (max - min),
            Scale::Log { min, max } => {
                (v.max(min).log10() - min.log10()) / (max.log10() - min.log10())
            }
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// A y axis: its scale, ticks (labelled, with grid lines) and minor grid lines.
#[derive(Debug, Clone)]
pub struct Axis {
    pub title: String,
    pub scale: Scale,
    pub ticks: Vec<(f64, String)>,
    pub minor: Vec<f64>,
}

fn nice_step(raw: f64, integer: bool) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let exp = raw.log10().floor();
    let base = 10f64.powf(exp);
    let f = raw / base;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 2.5 {
        2.5
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    let step = nice * base;
    if integer { step.max(1.0).round() } else { step }
}

impl Axis {
    /// A linear axis from 0 to a round number at or above `max`, about five ticks.
    pub fn linear(title: &str, max: f64, unit: Unit) -> Axis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let (factor, suffix) = match unit {
            Unit::Bytes if max >= GIB => (GIB, " GiB"),
            Unit::Bytes if max >= MIB => (MIB, " MiB"),
            Unit::Bytes if max >= KIB => (KIB, " KiB"),
            Unit::Bytes => (1.0, " B"),
            Unit::Ms if max >= 2000.0 => (1000.0, " s"),
            Unit::Ms => (1.0, " ms"),
            Unit::Percent => (1.0, " %"),
            Unit::Count => (1.0, ""),
        };
        let scaled = max / factor;
        let step = nice_step(scaled / 5.0, unit == Unit::Count);
        let top_steps = (scaled / step - 1e-9).ceil().max(1.0) as usize;
        let ticks = (0..=top_steps)
            .map(|i| {
                let v = i as f64 * step;
                let label = match unit {
                    Unit::Count => compact(v),
                    _ => format!("{}{suffix}", trim(v, 2)),
                };
                (v * factor, label)
            })
            .collect();
        Axis {
            title: title.to_string(),
            scale: Scale::Linear {
                min: 0.0,
                max: top_steps as f64 * step * factor,
            },
            ticks,
            minor: Vec::new(),
        }
    }

    /// A logarithmic milliseconds axis spanning whole decades around `[min, max]`
    /// (at least one decade; values below 0.1 ms are drawn at 0.1 ms).
    pub fn log_ms(title: &str, min: f64, max: f64) -> Axis {
        let min = if min.is_finite() && min > 0.1 {
            min
        } else {
            0.1
        };
        let max = if max.is_finite() && max > min {
            max
        } else {
            min * 10.0
        };
        let lo = min.log10().floor() as i32;
        let hi = (max.log10().ceil() as i32).max(lo + 1);
        let mut ticks = Vec::new();
        let mut minor = Vec::new();
        for e in lo..=hi {
            let v = 10f64.powi(e);
            ticks.push((v, fmt_ms(v)));
            if e < hi {
                minor.push(2.0 * v);
                minor.push(5.0 * v);
            }
        }
        Axis {
            title: title.to_string(),
            scale: Scale::Log {
                min: 10f64.powi(lo),
                max: 10f64.powi(hi),
            },
            ticks,
            minor,
        }
    }
}

/// The shared x axis: seconds since the load started, with ticks at round times.
#[derive(Debug, Clone)]
pub struct TimeAxis {
    pub max: f64,
    pub title: String,
    pub ticks: Vec<(f64, String)>,
}

impl TimeAxis {
    pub fn new(max: f64) -> TimeAxis {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        const STEPS: [f64; 22] = [
            0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0,
            1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0, 172800.0,
        ];
        let step = STEPS
            .iter()
            .copied()
            .find(|s| max / s <= 12.0)
            .unwrap_or_else(|| nice_step(max / 10.0, true));
        let (title, label): (&str, fn(f64) -> String) = if max <= 300.0 {
            ("seconds since load start", |t| trim(t, 1))
        } else if max <= 3.0 * 3600.0 {
            ("time since load start (min:s)", |t| {
                let t = t as u64;
                format!("{}:{:02}", t / 60, t % 60)
            })
        } else {
            ("time since load start (h:min)", |t| {
                let t = t as u64;
                format!("{}:{:02}", t / 3600, (t % 3600) / 60)
            })
        };
        let n = (max / step + 1e-9).floor() as usize;
        let ticks = (0..=n)
            .map(|i| i as f64 * step)
            .map(|t| (t, label(t)))
            .collect();
        TimeAxis {
            max,
            title: title.to_string(),
            ticks,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Time charts
// ---------------------------------------------------------------------------------------

/// Layers stacked on the left axis, sharing x positions (e.g. acknowledged and failed
/// requests per second).
#[derive(Debug, Clone, Default)]
pub struct StackedArea {
    pub xs: Vec<f64>,
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
    /// Draw as a staircase (value holds until the next point), e.g. virtual users.
    pub step: bool,
    /// Runs of points (x in seconds, y in axis units); see [`segments`].
    pub segments: Vec<Vec<(f64, f64)>>,
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

/// Opening tag of an `<svg>`: standalone documents carry the namespace and a pixel size,
/// inline ones scale to their container.
fn svg_open(out: &mut String, width: f64, height: f64, label: &str, standalone: bool) {
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

fn text(out: &mut String, x: f64, y: f64, attrs: &str, body: &str) {
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" {attrs}>{}</text>",
        coord(x),
        coord(y),
        escape(body)
    );
}

/// Rough width of `s` at 12 px in a sans-serif face, for laying out legends.
fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.52
}

fn path_d(out: &mut String, pts: &[(f64, f64)]) {
    for (i, (x, y)) in pts.iter().enumerate() {
        let _ = match i {
            0 => write!(out, "M{},{}", coord(*x), coord(*y)),
            1 => write!(out, "L{},{}", coord(*x), coord(*y)),
            _ => write!(out, " {},{}", coord(*x), coord(*y)),
        };
    }
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
        self.area.as_ref().is_some_and(|a| !a.xs.is_empty())
            || self
                .lines
                .iter()
                .any(|l| l.segments.iter().any(|s| !s.is_empty()))
    }

    /// The chart as SVG markup: inline (for the page) or a standalone document.
    pub fn to_svg(&self, standalone: bool) -> String {
        let mut o = String::with_capacity(64 * 1024);
        let h = self.total_height();
        let bottom = self.plot_bottom();
        let top = self.plot_top();
        svg_open(&mut o, WIDTH, h, &self.title, standalone);
        text(
            &mut o,
            PLOT_LEFT - 60.0,
            22.0,
            &format!("font-size=\"15\" font-weight=\"600\" fill=\"{TEXT}\""),
            &self.title,
        );

        // Grid.
        o.push_str("<g stroke-width=\"1\">");
        for v in &self.left.minor {
            let y = self.py(&self.left, *v);
            let _ = write!(
                o,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{GRID_MINOR}\"/>",
                coord(PLOT_LEFT),
                coord(PLOT_RIGHT),
                y = coord(y)
            );
        }
        for (v, _) in &self.left.ticks {
            let y = self.py(&self.left, *v);
            let _ = write!(
                o,
                "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{GRID}\"/>",
                coord(PLOT_LEFT),
                coord(PLOT_RIGHT),
                y = coord(y)
            );
        }
        for (t, _) in &self.x.ticks {
            let x = self.px(*t);
            let _ = write!(
                o,
                "<line x1=\"{x}\" x2=\"{x}\" y1=\"{}\" y2=\"{}\" stroke=\"{GRID_MINOR}\"/>",
                coord(top),
                coord(bottom),
                x = coord(x)
            );
        }
        o.push_str("</g>");

        // Stacked areas, bottom layer first.
        if let Some(area) = &self.area {
            self.draw_area(&mut o, area);
        }
        // Lines.
        for line in &self.lines {
            self.draw_line(&mut o, line);
        }
        // Reference lines.
        for rule in &self.rules {
            let axis = self.axis(rule.right_axis);
            let y = self.py(axis, rule.value);
            let _ = write!(
                o,
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
                &mut o,
                tx,
                y - 5.0,
                &format!(
                    "text-anchor=\"{anchor}\" font-weight=\"600\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\"",
                    rule.color
                ),
                &rule.label,
            );
        }

        // Hover columns (invisible until hovered), below the markers so those keep
        // their own tooltips.
        if !self.hover.is_empty() {
            o.push_str("<g class=\"hv\" fill=\"#000\" fill-opacity=\"0\">");
            for band in &self.hover {
                let x0 = self.px(band.x0);
                let x1 = self.px(band.x1);
                let _ = write!(
                    o,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
                    coord(x0),
                    coord(top),
                    coord((x1 - x0).max(0.5)),
                    coord(bottom - top),
                    escape(&band.text)
                );
            }
            o.push_str("</g>");
        }

        // Markers (crashes, the knee): a line, a hit area, and a label when there is room.
        // Labels go on the first of three rows where they do not overlap an earlier one.
        let mut row_end = [f64::NEG_INFINITY; 3];
        let mut order: Vec<&Marker> = self.markers.iter().filter(|m| m.x.is_finite()).collect();
        order.sort_by(|a, b| a.x.total_cmp(&b.x));
        for m in order {
            let x = self.px(m.x);
            let dash = if m.dashed {
                " stroke-dasharray=\"4 3\""
            } else {
                ""
            };
            let _ = write!(
                o,
                "<g><title>{tip}</title><line x1=\"{x}\" x2=\"{x}\" y1=\"{t}\" y2=\"{b}\" stroke=\"{col}\" stroke-width=\"1.5\"{dash}/>\
                 <line x1=\"{x}\" x2=\"{x}\" y1=\"{t}\" y2=\"{b}\" stroke=\"#000\" stroke-opacity=\"0\" stroke-width=\"8\"/>",
                tip = escape(&m.tooltip),
                x = coord(x),
                t = coord(top),
                b = coord(bottom),
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
                    &mut o,
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
            o.push_str("</g>");
        }

        // Axes.
        let _ = write!(
            o,
            "<path d=\"M{l},{t}V{b}H{r}\" fill=\"none\" stroke=\"{AXIS}\"/>",
            l = coord(PLOT_LEFT),
            t = coord(top),
            b = coord(bottom),
            r = coord(PLOT_RIGHT)
        );
        let tick_attrs = format!("fill=\"{MUTED}\" font-size=\"11\"");
        for (v, label) in &self.left.ticks {
            let y = self.py(&self.left, *v);
            text(
                &mut o,
                PLOT_LEFT - 7.0,
                y + 4.0,
                &format!("{tick_attrs} text-anchor=\"end\""),
                label,
            );
        }
        if let Some(right) = &self.right {
            let _ = write!(
                o,
                "<path d=\"M{r},{t}V{b}\" fill=\"none\" stroke=\"{AXIS}\"/>",
                r = coord(PLOT_RIGHT),
                t = coord(top),
                b = coord(bottom)
            );
            for (v, label) in &right.ticks {
                let y = self.py(right, *v);
                text(
                    &mut o,
                    PLOT_RIGHT + 7.0,
                    y + 4.0,
                    &format!("{tick_attrs} text-anchor=\"start\""),
                    label,
                );
            }
            let mid = (top + bottom) / 2.0;
            let _ = write!(
                o,
                "<text transform=\"translate({},{}) rotate(90)\" text-anchor=\"middle\" fill=\"{TEXT}\">{}</text>",
                coord(WIDTH - 12.0),
                coord(mid),
                escape(&right.title)
            );
        }
        for (t, label) in &self.x.ticks {
            let x = self.px(*t);
            let _ = write!(
                o,
                "<line x1=\"{x}\" x2=\"{x}\" y1=\"{b}\" y2=\"{b5}\" stroke=\"{AXIS}\"/>",
                x = coord(x),
                b = coord(bottom),
                b5 = coord(bottom + 5.0)
            );
            text(
                &mut o,
                x,
                bottom + 18.0,
                &format!("{tick_attrs} text-anchor=\"middle\""),
                label,
            );
        }
        let mid = (top + bottom) / 2.0;
        let _ = write!(
            o,
            "<text transform=\"translate(16,{}) rotate(-90)\" text-anchor=\"middle\" fill=\"{TEXT}\">{}</text>",
            coord(mid),
            escape(&self.left.title)
        );
        text(
            &mut o,
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            h - 8.0,
            &format!("text-anchor=\"middle\" fill=\"{TEXT}\""),
            &self.x.title,
        );

        self.draw_legend(&mut o);

        if let Some(note) = &self.note {
            text(
                &mut o,
                (PLOT_LEFT + PLOT_RIGHT) / 2.0,
                (top + bottom) / 2.0,
                &format!("text-anchor=\"middle\" font-size=\"14\" fill=\"{MUTED}\""),
                note,
            );
        } else if !self.has_data() {
            text(
                &mut o,
                (PLOT_LEFT + PLOT_RIGHT) / 2.0,
                (top + bottom) / 2.0,
                &format!("text-anchor=\"middle\" font-size=\"14\" fill=\"{MUTED}\""),
                "no data",
            );
        }
        o.push_str("</svg>");
        o
    }

    fn draw_area(&self, o: &mut String, area: &StackedArea) {
        let n = area.xs.len();
        if n == 0 || area.layers.is_empty() {
            return;
        }
        // Rates are downsampled by averaging over buckets rather than with LTTB: the area
        // then still counts the requests, and a rare failure is not drawn as a constant band
        // (LTTB keeps extremes, which would inflate the thin failure layers).
        let buckets = bucket_ranges(n, MAX_POINTS);
        let xs: Vec<f64> = buckets.iter().map(|r| mean(&area.xs[r.clone()])).collect();
        let layers: Vec<Vec<f64>> = area
            .layers
            .iter()
            .map(|l| {
                buckets
                    .iter()
                    .map(|r| {
                        r.clone()
                            .map(|i| finite(l.values.get(i).copied()))
                            .sum::<f64>()
                            / r.len() as f64
                    })
                    .collect()
            })
            .collect();
        let mut lower = vec![0.0f64; xs.len()];
        for (layer, values) in area.layers.iter().zip(&layers) {
            let upper: Vec<f64> = values.iter().zip(&lower).map(|(v, lo)| lo + v).collect();
            if upper.iter().zip(&lower).all(|(u, l)| u <= l) {
                lower = upper;
                continue;
            }
            let mut pts: Vec<(f64, f64)> = xs
                .iter()
                .zip(&upper)
                .map(|(&x, &v)| (self.px(x), self.py(&self.left, v)))
                .collect();
            let back: Vec<(f64, f64)> = xs
                .iter()
                .zip(&lower)
                .rev()
                .map(|(&x, &v)| (self.px(x), self.py(&self.left, v)))
                .collect();
            pts.extend(back);
            o.push_str("<path d=\"");
            path_d(o, &pts);
            let _ = write!(
                o,
                "Z\" fill=\"{col}\" fill-opacity=\"0.78\" stroke=\"{col}\" stroke-width=\"0.6\"/>",
                col = layer.color
            );
            lower = upper;
        }
    }

    fn draw_line(&self, o: &mut String, line: &LineSeries) {
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
            if line.step {
                // Hold the last value for one more second.
                if let Some(&(x, y)) = seg.last() {
                    pts.push((self.px(x + 1.0), self.py(axis, y)));
                }
            }
            if pts.len() == 1 {
                let _ = write!(
                    o,
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
                o.push_str("<path d=\"");
                path_d(o, &poly);
                let _ = write!(
                    o,
                    "Z\" fill=\"{}\" fill-opacity=\"0.15\" stroke=\"none\"/>",
                    line.color
                );
            }
            o.push_str("<path d=\"");
            path_d(o, &pts);
            let dash = line
                .dash
                .map(|d| format!(" stroke-dasharray=\"{d}\""))
                .unwrap_or_default();
            let _ = write!(
                o,
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

    fn draw_legend(&self, o: &mut String) {
        for (x, row, name, swatch) in self.legend_layout() {
            let y = 42.0 + row as f64 * LEGEND_ROW;
            let _ = match swatch {
                Swatch::Rect(color) => write!(
                    o,
                    "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" rx=\"2\" fill=\"{color}\" fill-opacity=\"0.85\"/>",
                    coord(x + 3.0),
                    coord(y - 6.0)
                ),
                Swatch::Line(color, width, dash) => write!(
                    o,
                    "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"{}\"{}/>",
                    coord(x),
                    coord(x + 18.0),
                    coord(width),
                    dash.map(|d| format!(" stroke-dasharray=\"{d}\""))
                        .unwrap_or_default(),
                    y = coord(y)
                ),
                Swatch::VLine(color, dashed) => write!(
                    o,
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
            text(o, x + 24.0, y + 4.0, &format!("fill=\"{TEXT}\""), &name);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Swatch {
    Rect(&'static str),
    Line(&'static str, f64, Option<&'static str>),
    VLine(&'static str, bool),
}

fn finite(v: Option<f64>) -> f64 {
    v.filter(|v| v.is_finite() && *v > 0.0).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// Horizontal stacked bar (the reconciliation)
// ---------------------------------------------------------------------------------------

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
        let mut o = String::new();
        let title_h = if standalone { 30.0 } else { 0.0 };
        let bar_y = title_h + 6.0;
        let bar_h = 30.0;
        let legend_y = bar_y + bar_h + 24.0;
        let left = 8.0;
        let right = WIDTH - 8.0;
        let shown: Vec<&BarSegment> = self.segments.iter().filter(|s| s.value > 0).collect();
        let rows = (self.segments.len() as f64 / 4.0).ceil().max(1.0);
        let height = legend_y + rows * 22.0;
        svg_open(&mut o, WIDTH, height, &self.title, standalone);
        if standalone {
            text(
                &mut o,
                left,
                20.0,
                &format!("font-size=\"15\" font-weight=\"600\" fill=\"{TEXT}\""),
                &self.title,
            );
        }
        let total: u64 = shown.iter().map(|s| s.value).sum();
        if total == 0 {
            let _ = write!(
                o,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"{GRID_MINOR}\" stroke=\"{GRID}\"/>",
                coord(left),
                coord(bar_y),
                coord(right - left),
                coord(bar_h)
            );
            text(
                &mut o,
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
                    o,
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
                        &mut o,
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
                o,
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
                &mut o,
                x + 18.0,
                y,
                &format!("fill=\"{TEXT}\"{weight}"),
                &label,
            );
        }
        o.push_str("</svg>");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(n: usize) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| (i as f64, ((i as f64) / 37.0).sin() * 100.0 + (i % 7) as f64))
            .collect()
    }

    #[test]
    fn lttb_keeps_first_and_last_and_reduces_to_n() {
        let pts = wave(36_000);
        for n in [3, 10, 1000, 1500] {
            let out = lttb(&pts, n);
            assert_eq!(out.len(), n);
            assert_eq!(out[0], pts[0]);
            assert_eq!(out[n - 1], pts[pts.len() - 1]);
            assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "x stays sorted");
        }
    }

    #[test]
    fn lttb_leaves_short_series_alone_and_keeps_a_spike() {
        let pts = wave(50);
        assert_eq!(lttb(&pts, 100), pts);
        assert_eq!(lttb(&pts, 50), pts);
        assert!(lttb(&[], 10).is_empty());
        assert_eq!(lttb(&pts, 2), vec![pts[0], pts[49]]);

        // One spike in a flat line survives a 100x reduction.
        let mut flat: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 1.0)).collect();
        flat[4321].1 = 500.0;
        let out = lttb(&flat, 100);
        assert!(out.iter().any(|p| p.1 == 500.0));
    }

    #[test]
    fn segments_break_at_gaps_and_skip_non_finite() {
        let pts = vec![
            (0.0, Some(1.0)),
            (1.0, Some(2.0)),
            (2.0, None),
            (3.0, Some(f64::NAN)),
            (4.0, Some(3.0)),
            (5.0, Some(f64::INFINITY)),
            (6.0, Some(4.0)),
            (20.0, Some(5.0)),
        ];
        let runs = segments(pts, Some(1.5), 100);
        assert_eq!(
            runs,
            vec![
                vec![(0.0, 1.0), (1.0, 2.0)],
                vec![(4.0, 3.0)],
                vec![(6.0, 4.0)],
                vec![(20.0, 5.0)]
            ]
        );

        let holey: Vec<(f64, Option<f64>)> = (0..36_000)
            .map(|i| (i as f64, (i % 2 == 0).then_some(1.0)))
            .collect();
        let runs = segments(holey, Some(1.5), MAX_POINTS);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].len(), MAX_POINTS);

        let long: Vec<(f64, Option<f64>)> = (0..144_000)
            .map(|i| (i as f64 * 0.25, Some((i % 100) as f64)))
            .collect();
        let runs = segments(long, Some(1.0), MAX_POINTS);
        let n: usize = runs.iter().map(Vec::len).sum();
        assert!(n <= MAX_POINTS + 3, "{n}");
    }

    #[test]
    fn buckets_cover_everything_once() {
        let b = bucket_ranges(36_000, MAX_POINTS);
        assert_eq!(b.len(), MAX_POINTS);
        assert_eq!(b[0].start, 0);
        assert_eq!(b[b.len() - 1].end, 36_000);
        assert!(b.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(bucket_ranges(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(bucket_ranges(2, 10), vec![0..1, 1..2]);
        assert!(bucket_ranges(0, 10).is_empty());
    }

    #[test]
    fn axes_are_round_and_cover_the_data() {
        let a = Axis::linear("x", 2.0 * GIB, Unit::Bytes);
        assert_eq!(a.ticks.last().unwrap().1, "2 GiB");
        let a = Axis::linear("x", 237.0, Unit::Count);
        assert!(a.ticks.last().unwrap().0 >= 237.0);
        assert!(a.ticks.len() <= 7);
        let a = Axis::log_ms("ms", 2.0, 30_000.0);
        assert_eq!(a.ticks.first().unwrap().1, "1 ms");
        assert_eq!(a.ticks.last().unwrap().1, "100 s");
        let t = TimeAxis::new(36_000.0);
        assert!(t.ticks.len() <= 13);
        assert_eq!(t.ticks[1].1, "1:00");
        assert_eq!(TimeAxis::new(60.0).ticks.len(), 13);
    }
}
