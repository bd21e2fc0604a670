//! `loadtest report DIR`: a run's, comparison's or sweep's page rendered again from its
//! JSON, and each chart as its own SVG file.

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
    use crate::compare::{
        Comparison, Sweep, comparison_charts, render_html, render_sweep_html, sweep_chart,
    };
    use crate::report::html::{Chart, render_chart_svg};
    use anyhow::Context;

    let dir = &args.dir;
    let svg_dir = args.svg_dir.as_deref();
    if dir.join("comparison.json").is_file()
        && std::fs::read_to_string(dir.join("comparison.json"))
            .is_ok_and(|t| t.contains("\"runs\""))
    {
        let c: crate::styles::StylesComparison = read_versioned(
            &dir.join("comparison.json"),
            "comparison",
            |c: &crate::styles::StylesComparison| c.schema_version,
        )?;
        std::fs::write(dir.join("comparison.html"), crate::styles::render_html(&c))
            .context("cannot write comparison.html")?;
        println!("wrote {}", dir.join("comparison.html").display());
        return Ok(());
    }
    if dir.join("comparison.json").is_file() {
        let c: Comparison = read_versioned(
            &dir.join("comparison.json"),
            "comparison",
            |c: &Comparison| c.schema_version,
        )?;
        std::fs::write(dir.join("comparison.html"), render_html(&c))
            .context("cannot write comparison.html")?;
        println!("wrote {}", dir.join("comparison.html").display());
        let names = ["goodput.svg", "failed.svg", "latency.svg", "memory.svg"];
        let charts = names
            .into_iter()
            .zip(comparison_charts(&c))
            .map(|(n, chart)| (n, chart.to_svg(true)));
        return write_svgs(svg_dir, charts.collect());
    }
    if dir.join("sweep.json").is_file() {
        let s: Sweep = read_versioned(&dir.join("sweep.json"), "sweep", |s: &Sweep| {
            s.schema_version
        })?;
        std::fs::write(dir.join("sweep.html"), render_sweep_html(&s))
            .context("cannot write sweep.html")?;
        println!("wrote {}", dir.join("sweep.html").display());
        return write_svgs(
            svg_dir,
            vec![("goodput-vs-offered.svg", sweep_chart(&s).to_svg(true))],
        );
    }
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
