//! The charts tell the truth at the edges: a small known run — a blog-like step profile
//! whose server crashes in its seventh second, after which every request is refused — is
//! rendered by the real chart code, and the drawn points are checked against the run.
//! Per-second counts are drawn across the second in which they happened (a slope from the
//! middle of the previous second would draw refusals before the first one), and the users
//! line follows the schedule up to the load's end (the gauge's last reading, taken after
//! the load stopped, would draw the users leaving a fraction of a second early).

use lab_report::Report;
use lab_report::axes::TimeAxis;
use lab_report::html::{Chart, render_chart_svg};
use lab_report::svg::{PLOT_LEFT, PLOT_RIGHT};
use serde_json::json;

const REFUSED: &str = "#9467bd";
const ACKNOWLEDGED: &str = "#4e9a57";
const USERS: &str = "#1f2937";

/// 20 users for 5 s, then 40 until the iteration cap ends the load at 6.4 s; 4 orders
/// acknowledged per second until the crash at 6.3 s, then 50 connections refused, all
/// ending in second 6. The gauge read 0 users at 6.5 s, after the load had stopped.
fn known_run() -> Report {
    let seconds: Vec<_> = (0..7)
        .map(|t| {
            let crashed = t == 6;
            json!({
                "t_s": t,
                "users": if t < 5 { 20 } else if t == 5 { 40 } else { 0 },
                "offered_rate": null,
                "acknowledged": if crashed { 0 } else { 4 },
                "failed_status": 0,
                "timed_out": 0,
                "connect_errors": if crashed { 50 } else { 0 },
                "transport_errors": 0,
                "p50_ms": 2.0, "p90_ms": 3.0, "p99_ms": 4.0,
                "in_flight": 0
            })
        })
        .collect();
    let step = |index: u64, users: u64, start: f64, end: f64| {
        json!({
            "index": index, "users": users, "start_s": start, "end_s": end,
            "sent": 10, "acknowledged": 10, "failed": 0, "timed_out": 0,
            "requests_per_s": 2.0, "acknowledged_per_s": 2.0,
            "p50_ms": 2.0, "p99_ms": 4.0, "knee": false
        })
    };
    let report = json!({
        "schema_version": lab_report::SCHEMA_VERSION,
        "tool": "chart_edges test",
        "started_at": "2026-11-25T00:00:00Z",
        "run": {
            "profile": "blog", "model": "closed", "shape": "20 users, +20 every 5s, up to 500",
            "url": "http://127.0.0.1:1", "timeout_ms": 30000, "new_connection_per_request": true,
            "iterations_cap": 74, "duration_cap_s": null, "elapsed_s": 6.4,
            "server_command": null, "orders_file": null
        },
        "requests": {
            "total": 74, "acknowledged": 24, "failed_status": 0, "timed_out": 0,
            "connect_errors": 50, "transport_errors": 0, "by_status": {}
        },
        "latency_ms": {
            "count": 74, "avg": 2.0, "min": 1.0, "p50": 2.0, "p90": 3.0, "p99": 4.0, "max": 5.0,
            "acknowledged_p50": 2.0, "acknowledged_p99": 4.0, "note": ""
        },
        "throughput": { "requests_per_s": 11.6, "acknowledged_per_s": 3.8 },
        "generator": { "lag_p50_ms": 0.0, "lag_p99_ms": 0.0, "lag_max_ms": 0.0, "saturated": false },
        "steps": [step(0, 20, 0.0, 5.0), step(1, 40, 5.0, 6.4)],
        "knee_step": null,
        "reconciliation": { "available": false },
        "server": {
            "spawned": true, "crashes": 1,
            "crash_events": [{ "t_s": 6.3, "cause": "OOM-killed", "oom_killed": true }],
            "restarts": 0, "confinement": "none"
        },
        "timeline": { "seconds": seconds, "server": [] },
        "thresholds": []
    });
    serde_json::from_value(report).expect("the known run is a valid report")
}

/// The points of the `<path>` drawn with `attr` (e.g. `fill="#9467bd"`).
fn path_points(svg: &str, attr: &str) -> Vec<(f64, f64)> {
    let tag = svg
        .split("<path ")
        .find(|p| p.split("/>").next().unwrap_or("").contains(attr))
        .unwrap_or_else(|| panic!("no path with {attr}"));
    let d = tag.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
    d.replace(['M', 'L', 'Z'], " ")
        .split_whitespace()
        .map(|pair| {
            let (x, y) = pair.split_once(',').expect("x,y");
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// Where second `t` is drawn: the chart's time axis spans the whole last second.
fn px(t: f64) -> f64 {
    let max = TimeAxis::new(7.0).max;
    PLOT_LEFT + t / max * (PLOT_RIGHT - PLOT_LEFT)
}

/// A stacked layer's polygon as (x, top, bottom): its top runs left to right, its bottom
/// back right to left, point for point.
fn thickness(polygon: &[(f64, f64)]) -> Vec<(f64, f64, f64)> {
    let half = polygon.len() / 2;
    assert_eq!(
        polygon.len(),
        half * 2,
        "top and bottom have as many points"
    );
    (0..half)
        .map(|i| {
            let (x, top) = polygon[i];
            let (bx, bottom) = polygon[polygon.len() - 1 - i];
            assert!((x - bx).abs() < 0.11, "top and bottom pair up: {x} vs {bx}");
            (x, top, bottom)
        })
        .collect()
}

#[test]
fn refusals_are_drawn_only_in_the_second_they_happened() {
    let svg = render_chart_svg(&known_run(), Chart::Throughput);
    let refused = thickness(&path_points(&svg, &format!("fill=\"{REFUSED}\"")));
    for &(x, top, bottom) in &refused {
        if x < px(6.0) - 0.1 {
            assert_eq!(
                top,
                bottom,
                "refusals drawn at x={x}, before second 6 ({})",
                px(6.0)
            );
        }
    }
    assert!(
        refused
            .iter()
            .any(|&(x, top, bottom)| (x - px(6.0)).abs() < 0.1 && top < bottom),
        "the refusals start right at second 6: {refused:?}"
    );
    assert!(
        refused
            .iter()
            .any(|&(x, top, bottom)| (x - px(7.0)).abs() < 0.1 && top < bottom),
        "and hold across it: {refused:?}"
    );

    // The acknowledged orders stop with second 5: none is drawn inside second 6.
    let acknowledged = thickness(&path_points(&svg, &format!("fill=\"{ACKNOWLEDGED}\"")));
    for &(x, top, bottom) in &acknowledged {
        if x > px(6.0) + 0.1 {
            assert_eq!(top, bottom, "acknowledged drawn at x={x}, inside second 6");
        }
    }
    assert!(
        acknowledged
            .iter()
            .any(|&(x, top, bottom)| (x - px(6.0)).abs() < 0.1 && top < bottom),
        "the acknowledged orders hold to the end of second 5: {acknowledged:?}"
    );
}

#[test]
fn the_users_line_follows_the_schedule_to_the_end_of_the_load() {
    let svg = render_chart_svg(&known_run(), Chart::Throughput);
    let users = path_points(
        &svg,
        &format!("fill=\"none\" stroke=\"{USERS}\" stroke-width=\"2\""),
    );
    let near = |a: f64, b: f64| (a - b).abs() < 0.11;
    let (first, last) = (users[0], users[users.len() - 1]);
    assert!(
        near(first.0, px(0.0)),
        "starts at the load's start: {users:?}"
    );
    assert!(
        near(last.0, px(6.4)),
        "ends with the load at 6.4 s: {users:?}"
    );
    let mut levels: Vec<f64> = users.iter().map(|p| p.1).collect();
    levels.dedup();
    assert_eq!(levels.len(), 2, "20 users, then 40, and no drop: {users:?}");
    assert!(levels[1] < levels[0], "40 is drawn above 20");
    let rise = users
        .windows(2)
        .find(|w| w[0].1 != w[1].1)
        .expect("one step up");
    assert!(
        near(rise[0].0, px(5.0)) && near(rise[1].0, px(5.0)),
        "the step is at 5 s: {users:?}"
    );
    assert_eq!(last.1, levels[1], "still 40 users when the load ended");
}
