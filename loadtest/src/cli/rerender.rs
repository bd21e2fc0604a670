//! `loadtest report DIR`: a run's, comparison's or sweep's page rendered again from its
//! JSON, and each chart as its own SVG file.

use std::path::Path;

use anyhow::Context;

use super::args::ReportArgs;

/// Reads a JSON file the lab wrote, with the schema version checked.
pub(super) fn read_versioned<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
    version: impl Fn(&T) -> u32,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: T = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a loadtest {what}", path.display()))?;
    let found = version(&value);
    if found != crate::report::SCHEMA_VERSION {
        anyhow::bail!(
            "{} has schema version {found}, this loadtest writes {}",
            path.display(),
            crate::report::SCHEMA_VERSION
        );
    }
    Ok(value)
}

pub(super) fn write_svgs(
    dir: Option<&std::path::Path>,
    charts: Vec<(&str, String)>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, svg) in charts {
        let file = dir.join(name);
        std::fs::write(&file, svg).with_context(|| format!("cannot write {}", file.display()))?;
        println!("wrote {}", file.display());
    }
    Ok(())
}

/// `loadtest report DIR`: renders a run's, a comparison's or a sweep's page again from
/// its JSON (whichever DIR holds), and with `--svg-dir` each chart as its own SVG file.
pub(super) fn rerender(args: &ReportArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    let svg_dir = args.svg_dir.as_deref();
    let comparison = dir.join("comparison.json");
    if comparison.is_file() {
        // `compare --transports` and `--scale-out` write named runs; `compare`, two sides.
        let named = std::fs::read_to_string(&comparison).is_ok_and(|t| t.contains("\"runs\""));
        return if named {
            rerender_styles(dir)
        } else {
            rerender_comparison(dir, svg_dir)
        };
    }
    if dir.join("sweep.json").is_file() {
        return rerender_sweep(dir, svg_dir);
    }
    rerender_run(dir, svg_dir)
}

/// Writes `html` as `DIR/name` and says so.
fn write_page(dir: &Path, name: &str, html: String) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, html).with_context(|| format!("cannot write {name}"))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// `compare --transports` or `--scale-out`: comparison.html (no separate charts).
fn rerender_styles(dir: &Path) -> anyhow::Result<()> {
    use crate::styles::StylesComparison;
    let c: StylesComparison = read_versioned(
        &dir.join("comparison.json"),
        "comparison",
        |c: &StylesComparison| c.schema_version,
    )?;
    write_page(dir, "comparison.html", crate::styles::render_html(&c))
}

/// `compare`: comparison.html and its four charts.
fn rerender_comparison(dir: &Path, svg_dir: Option<&Path>) -> anyhow::Result<()> {
    use crate::compare::{Comparison, comparison_charts, render_html};
    let c: Comparison = read_versioned(
        &dir.join("comparison.json"),
        "comparison",
        |c: &Comparison| c.schema_version,
    )?;
    write_page(dir, "comparison.html", render_html(&c))?;
    let names = ["goodput.svg", "failed.svg", "latency.svg", "memory.svg"];
    let charts = names
        .into_iter()
        .zip(comparison_charts(&c))
        .map(|(n, chart)| (n, chart.to_svg(true)));
    write_svgs(svg_dir, charts.collect())
}

/// `sweep`: sweep.html and its capacity chart.
fn rerender_sweep(dir: &Path, svg_dir: Option<&Path>) -> anyhow::Result<()> {
    use crate::compare::{Sweep, render_sweep_html, sweep_chart};
    let s: Sweep = read_versioned(&dir.join("sweep.json"), "sweep", |s: &Sweep| {
        s.schema_version
    })?;
    write_page(dir, "sweep.html", render_sweep_html(&s))?;
    write_svgs(
        svg_dir,
        vec![("goodput-vs-offered.svg", sweep_chart(&s).to_svg(true))],
    )
}

/// `run`: report.html (and what the lab writes beside it) and each chart.
fn rerender_run(dir: &Path, svg_dir: Option<&Path>) -> anyhow::Result<()> {
    use crate::report::html::{Chart, render_chart_svg};
    let path = dir.join("report.json");
    if !path.is_file() {
        anyhow::bail!(
            "{} holds no report.json, comparison.json or sweep.json; is it a loadtest --out directory?",
            dir.display()
        );
    }
    let report: crate::report::Report =
        read_versioned(&path, "report", |r: &crate::report::Report| {
            r.schema_version
        })?;
    crate::lab::write_report_files(&report, dir)?;
    println!("wrote {}", dir.join("report.html").display());
    let charts = Chart::of(&report)
        .into_iter()
        .map(|c| (c.file_name(), render_chart_svg(&report, c)));
    write_svgs(svg_dir, charts.collect())
}
