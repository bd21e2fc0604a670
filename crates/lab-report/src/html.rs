//! The report as HTML: the page ([`render`]) and each chart as a standalone SVG document
//! ([`render_chart_svg`], e.g. for the README). The way in for the lab and the CLI; the
//! parts live in [`super::page`], [`super::cards`] and [`super::charts`].

pub use super::charts::{Chart, render_chart_svg};
pub use super::format::escape;
pub use super::page::{CSS, render};
