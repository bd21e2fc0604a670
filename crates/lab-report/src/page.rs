//! `report.html`: one self-contained page — inline CSS, charts as inline SVG, no script,
//! no font, no image, nothing fetched from the network — so it opens from a CI artifact or
//! an e-mail as it is. This module is the document's skeleton (and the style sheet the
//! comparison pages share); the content is in [`super::cards`] and the charts.
//!
//! Contents: the run, headline figures, the counters of the original Visual Studio load
//! test (total, passed, failed by kind, test times, tests/s) with the server's peak memory
//! and CPU, the reconciliation of every order (table and bar), charts over time (users and
//! completions per second, latency percentiles, server memory against its limit, CPU) with
//! crashes marked on each, the per-step table with the knee, generator health, thresholds
//! and crash events. The timeline is already per second; long series are downsampled with
//! LTTB, so a ten-hour, million-request run stays well under 5 MB.

use std::fmt::Write as _;

use super::Report;
use super::cards::{
    banners, charts_card, crashes_card, generator_card, header, kpis, reconciliation_card,
    run_card, steps_card, summary_card, thresholds_card,
};
use super::format::escape;

pub const CSS: &str = r#"
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f5f6f8;--ok:#2e7d32;--bad:#c0392b;--warn:#b45309}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","DejaVu Sans",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:28px 28px 48px}
header h1{font-size:26px;line-height:1.2;margin:0 0 6px;letter-spacing:-.01em}
header .sub{color:var(--muted);margin:0}
h2{font-size:17px;margin:0 0 12px}
h3{font-size:14px;margin:18px 0 8px;color:#374151}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:16px 0;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.grid2{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px;margin:16px 0}
.grid2>.card{margin:0}
.col>.card{margin:0 0 16px}.col>.card:last-child{margin:0}
@media (max-width:920px){.grid2{grid-template-columns:minmax(0,1fr)}}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(112px,1fr));gap:12px;margin:18px 0}
.kpi{background:#fff;border:1px solid var(--line);border-top:4px solid #94a3b8;border-radius:10px;padding:10px 12px;min-width:0}
.kpi .l{color:var(--muted);font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;white-space:nowrap}
.kpi .v{font-size:20px;font-weight:650;font-variant-numeric:tabular-nums;white-space:nowrap}
.kpi .s{color:var(--muted);font-size:12px;line-height:1.3}
.kpi.good{border-top-color:var(--ok)}
.kpi.bad{border-top-color:var(--bad)}.kpi.bad .v{color:var(--bad)}
.kpi.warn{border-top-color:#f59e0b}
table{border-collapse:collapse;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{font-size:11.5px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.04em;border-bottom:2px solid var(--line)}
tbody th{font-weight:500}
.counters th{white-space:nowrap}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.sub>th{padding-left:28px;color:#4b5563;font-weight:400}
tr.sep>*{border-top:2px solid var(--line)}
tr.knee>*{background:#fef3c7;font-weight:600}
tr.bad>*{color:var(--bad)}
.scroll{overflow-x:auto}
.badge{display:inline-block;padding:0 8px;border-radius:999px;font-size:12px;font-weight:600;line-height:20px;white-space:nowrap}
.badge.pass{background:#e6f4ea;color:#1e6b2c}.badge.fail{background:#fde8e6;color:#a1271b}
.badge.knee{background:#fcd34d;color:#713f12}.badge.muted{background:#f3f4f6;color:#4b5563}
.banner{border:1px solid;border-radius:10px;padding:12px 16px;margin:12px 0}
.banner b{display:block;margin-bottom:2px}
.banner.warn{background:#fffbeb;border-color:#fcd34d;color:#78350f}
.banner.bad{background:#fef2f2;border-color:#fca5a5;color:#7f1d1d}
.banner.ok{background:#f0fdf4;border-color:#86efac;color:#14532d}
.note{background:#f8fafc;border-left:4px solid #94a3b8;border-radius:6px;padding:10px 14px;margin:6px 0 14px;color:#374151}
.unavailable{border:2px dashed #cbd5e1;border-radius:10px;padding:18px 20px;background:#f8fafc;color:#334155}
.unavailable b{color:#0f172a}
dl.kv{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:5px 18px;margin:0}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;overflow-wrap:anywhere}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;background:#f3f4f6;border-radius:4px;padding:1px 5px;overflow-wrap:anywhere}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:7px;vertical-align:-1px}
.muted{color:var(--muted)}
svg.chart{display:block;width:100%;height:auto;margin:4px 0 18px}
.hv rect:hover{fill-opacity:.06}
.charthint{color:var(--muted);font-size:12.5px;margin:-4px 0 10px}
footer{color:var(--muted);font-size:12px;margin-top:28px;text-align:center}
@media print{body{background:#fff}.card,.kpi{box-shadow:none;break-inside:avoid}}
"#;

/// Renders the whole report as one self-contained HTML page.
pub fn render(report: &Report) -> String {
    let mut html = String::with_capacity(256 * 1024);
    let run = &report.run;
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Load test report · {} · {}</title><style>{CSS}</style></head><body><main>",
        escape(&run.profile),
        escape(&report.started_at)
    );
    header(&mut html, report);
    banners(&mut html, report);
    kpis(&mut html, report);

    html.push_str("<div class=\"grid2\"><div class=\"col\">");
    run_card(&mut html, report);
    generator_card(&mut html, report);
    thresholds_card(&mut html, report);
    html.push_str("</div><div class=\"col\">");
    summary_card(&mut html, report);
    html.push_str("</div></div>");

    reconciliation_card(&mut html, report);
    super::queue::card(&mut html, report);
    if let Some(balancer) = &report.balancer {
        html.push_str(&super::balancer::render_html(balancer));
    }
    charts_card(&mut html, report);
    steps_card(&mut html, report);
    crashes_card(&mut html, report);

    let _ = writeln!(
        html,
        "<footer>{} · report schema {} · self-contained page: no scripts, no network</footer></main></body></html>",
        escape(&report.tool),
        report.schema_version
    );
    html
}

pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body><main>{body}\
         <footer>loadtest {} · self-contained page: no scripts, no network</footer></main></body></html>\n",
        escape(title),
        env!("CARGO_PKG_VERSION")
    )
}

pub fn table_html(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = String::from("<table><thead><tr>");
    for h in header {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let align = if i == 0 {
                ""
            } else {
                " style=\"text-align:right\""
            };
            let _ = write!(html, "<td{align}>{}</td>", escape(cell));
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::{Chart, render_chart_svg};
    use crate::{
        CrashEvent, GeneratorHealth, LatencySummary, Reconciliation, RequestCounts, RunInfo,
        SCHEMA_VERSION, SecondRow, ServerReport, ServerSample, Throughput, Timeline,
    };

    fn empty_report() -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            tool: "loadtest 0.1.0".into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            run: RunInfo {
                profile: "rate".into(),
                model: "open".into(),
                shape: "10/s for 5s".into(),
                url: "http://127.0.0.1:1/api".into(),
                timeout_ms: 30_000,
                new_connection_per_request: false,
                iterations_cap: None,
                duration_cap_s: Some(5.0),
                elapsed_s: 0.0,
                transport: "http".into(),
                server_command: None,
                orders_file: None,
            },
            requests: RequestCounts::default(),
            latency_ms: LatencySummary::default(),
            throughput: Throughput::default(),
            generator: GeneratorHealth::default(),
            steps: Vec::new(),
            knee_step: None,
            reconciliation: Reconciliation {
                available: false,
                unavailable_reason: Some("remote server: no orders file".into()),
                ..Default::default()
            },
            server: ServerReport {
                confinement: "none".into(),
                ..Default::default()
            },
            timeline: Timeline::default(),
            thresholds: Vec::new(),
            retries: Default::default(),
            messaging: None,
            broker: None,
            balancer: None,
            topology: None,
            faults: Vec::new(),
        }
    }

    #[test]
    fn report_text_is_escaped_everywhere() {
        let mut r = empty_report();
        r.run.server_command = Some(vec![
            "purchasing-api".into(),
            "<script>alert(1)</script>".into(),
        ]);
        r.run.url = "http://x/?a=1&b=<i>".into();
        r.server.spawned = true;
        r.server.crashes = 1;
        r.server.crash_events = vec![CrashEvent {
            t_s: 1.0,
            cause: "<b>boom</b>".into(),
            oom_killed: false,
        }];
        r.reconciliation.unavailable_reason = Some("<img src=x>".into());
        let html = render(&r);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<b>boom"));
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a=1&amp;b=&lt;i&gt;"));
        for chart in Chart::ALL {
            assert!(!render_chart_svg(&r, chart).contains("<b>boom"));
        }
    }

    #[test]
    fn empty_report_renders() {
        let r = empty_report();
        let html = render(&r);
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("Reconciliation unavailable"));
        assert!(html.contains("remote server: no orders file"));
        assert!(html.contains("not started by the lab"));
        assert!(!html.contains("NaN"));
        for chart in Chart::ALL {
            let svg = render_chart_svg(&r, chart);
            assert!(
                svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
                "{chart:?}"
            );
            assert!(svg.ends_with("</svg>"));
            assert!(!svg.contains("NaN"));
        }
    }

    #[test]
    fn nan_and_missing_values_are_skipped() {
        let mut r = empty_report();
        r.run.elapsed_s = f64::NAN;
        r.latency_ms.p99 = Some(f64::NAN);
        r.latency_ms.avg = Some(f64::INFINITY);
        r.throughput.requests_per_s = f64::NAN;
        r.server.spawned = true;
        r.server.cpu_limit = Some(f64::NAN);
        r.timeline.seconds = (0..10)
            .map(|t| SecondRow {
                t_s: t,
                users: None,
                offered_rate: if t == 3 { Some(f64::NAN) } else { Some(10.0) },
                acknowledged: 10,
                p50_ms: if t % 2 == 0 { None } else { Some(f64::NAN) },
                p90_ms: Some(if t == 5 { f64::INFINITY } else { 12.0 }),
                p99_ms: None,
                ..Default::default()
            })
            .collect();
        r.timeline.server = (0..40)
            .map(|i| ServerSample {
                t_s: if i == 7 { f64::NAN } else { i as f64 * 0.25 },
                memory_bytes: (i % 3 != 0).then_some(100 << 20),
                rss_bytes: None,
                cpu_percent: Some(if i % 5 == 0 { f64::NAN } else { 50.0 }),
                threads: Some(4),
                admission_limit: None,
            })
            .collect();
        r.server.crash_events = vec![CrashEvent {
            t_s: f64::NAN,
            cause: "exited with status 1".into(),
            oom_killed: false,
        }];
        let html = render(&r);
        if let Some(i) = html.find("NaN") {
            let ctx: String = html[..i]
                .chars()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("NaN printed after: {ctx}");
        }
        assert!(!html.contains("inf"), "infinity printed");
        for chart in Chart::ALL {
            let svg = render_chart_svg(&r, chart);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{chart:?}");
        }
    }

    #[test]
    fn step_runs_mark_the_knee_and_crashes() {
        let mut r = empty_report();
        r.run.profile = "blog".into();
        r.run.model = "closed".into();
        r.steps = (0..4)
            .map(|i| crate::StepRow {
                index: i,
                users: 20 * (i as u64 + 1),
                start_s: i as f64 * 5.0,
                end_s: (i + 1) as f64 * 5.0,
                sent: 100,
                acknowledged: 90,
                failed: 10,
                timed_out: 2,
                requests_per_s: 20.0,
                acknowledged_per_s: 18.0,
                p50_ms: Some(10.0),
                p99_ms: Some(100.0),
                knee: i == 2,
            })
            .collect();
        r.knee_step = Some(2);
        r.server.spawned = true;
        r.server.crashes = 1;
        r.server.crash_events = vec![CrashEvent {
            t_s: 7.0,
            cause: "OOM-killed".into(),
            oom_killed: true,
        }];
        r.timeline.seconds = (0..20)
            .map(|t| SecondRow {
                t_s: t,
                users: Some(20 * (t / 5 + 1)),
                acknowledged: 5,
                ..Default::default()
            })
            .collect();
        let html = render(&r);
        assert!(html.contains("<tr class=\"knee\">"));
        assert!(html.contains("knee: 60 users"));
        assert!(html.contains("crash 1 · OOM"));
        assert_eq!(html.matches("<tr class=\"knee\">").count(), 1);
    }
}
