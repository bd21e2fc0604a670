//! The documented output of a run stays true: `docs/report-schema.md` lists every column of
//! `requests.csv` and every field of `report.json`, and this test compares those lists with
//! what the real binary writes, in both directions — a column or field the code writes and
//! the page does not name fails, and so does one the page names and the code no longer
//! writes.
//!
//! Two real runs, unconfined (no root needed), with the tiny workload:
//! - HTTP: a step profile (so `steps[]` has rows) against a spawned `purchasing-api` with a
//!   fixed admission limit (so the samples carry `admission_limit`) and one threshold;
//! - AMQP: a reliable run with its own broker, a worker SIGKILLed every second and one broker
//!   restart, so the messaging, broker, queue and crash fields are all filled.
//!
//! Without rabbitmq-server (outside CI) the AMQP run is skipped with one line, and the
//! fields only such a run can fill are then not required to appear; the HTTP run is still
//! checked both ways.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use common::sibling_binary;

/// The workload every test uses: orders that cost nothing.
const TINY: [&str; 4] = ["--alloc-chars", "1000", "--delay-ms", "5"];

/// Fields whose value is a map keyed by data (written `name{}` on the page).
const MAPS: [&str; 1] = ["requests.by_status"];

/// What only a messaging run fills: an HTTP run writes `messaging` and `broker` as null and
/// no `timeline.queue` at all.
const MESSAGING_ONLY: [&str; 3] = ["messaging", "broker", "timeline.queue"];
/// What only a scaled-out run (`--instances K`, needs HAProxy) writes.
const BALANCER_ONLY: &str = "balancer";

fn schema_page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report-schema.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `loadtest run ARGS --out OUT -- TINY SERVER_ARGS`, asserts it succeeded, returns
/// its directory.
fn run_lab(out: &Path, args: &[&str], server_args: &[&str]) -> PathBuf {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--")
        .args(TINY)
        .args(server_args)
        .stdin(Stdio::null())
        .output()
        .expect("run loadtest");
    assert!(
        output.status.success(),
        "loadtest run {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    out.to_path_buf()
}

fn read_report(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// The rows of the first table after the heading `heading` (up to the next `## `): the
/// backticked names of each row's first cell.
fn first_cells(page: &str, heading: &str) -> Vec<Vec<String>> {
    let start = page
        .find(heading)
        .unwrap_or_else(|| panic!("docs/report-schema.md has no heading {heading:?}"));
    let section = &page[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cell = line[1..].split(" | ").next().unwrap_or("");
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// `a.{b, c}.d` → `a.b.d`, `a.c.d`; a name without a brace list (or with `{}`, a map) stays.
fn expand(pattern: &str) -> Vec<String> {
    match (pattern.find('{'), pattern.find('}')) {
        (Some(open), Some(close)) if close > open + 1 => {
            let (prefix, suffix) = (&pattern[..open], &pattern[close + 1..]);
            pattern[open + 1..close]
                .split(',')
                .map(|name| format!("{prefix}{}{suffix}", name.trim()))
                .collect()
        }
        _ => vec![pattern.to_owned()],
    }
}

fn documented_csv_columns(page: &str) -> Vec<String> {
    first_cells(page, "## `requests.csv`")
        .into_iter()
        .flatten()
        .collect()
}

fn documented_report_fields(page: &str) -> BTreeSet<String> {
    first_cells(page, "## `report.json`")
        .iter()
        .flatten()
        .flat_map(|pattern| expand(pattern))
        .collect()
}

/// Every leaf of a report as a path: objects by `.`, array rows by `[]` (the union over
/// the rows), maps as `name{}`. `empty` collects the paths whose value was null or empty,
/// i.e. where the run said nothing about what lies below.
fn leaves(value: &Value, path: &str, out: &mut BTreeSet<String>, empty: &mut BTreeSet<String>) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(_) if MAPS.contains(&path) => {
            out.insert(format!("{path}{{}}"));
        }
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                leaves(child, &join(key), out, empty);
            }
        }
        Value::Array(rows) if !rows.is_empty() => {
            for row in rows {
                leaves(row, &format!("{path}[]"), out, empty);
            }
        }
        Value::Array(_) => {
            out.insert(format!("{path}[]"));
            empty.insert(format!("{path}[]"));
        }
        Value::Null | Value::Object(_) => {
            out.insert(path.to_owned());
            empty.insert(path.to_owned());
        }
        _ => {
            out.insert(path.to_owned());
        }
    }
}

/// Drops a null or empty leaf that another report of the set fills (`messaging` is null in
/// an HTTP run and an object in an AMQP run).
fn without_filled_placeholders(paths: BTreeSet<String>) -> BTreeSet<String> {
    paths
        .iter()
        .filter(|path| !paths.iter().any(|other| is_below(other, path)))
        .cloned()
        .collect()
}

/// True when `path` lies below `parent`: `a.b` and `a[].b` lie below `a`, `a[].b` below `a[]`.
fn is_below(path: &str, parent: &str) -> bool {
    path.len() > parent.len()
        && path.starts_with(parent)
        && matches!(path.as_bytes()[parent.len()], b'.' | b'[')
}

#[test]
fn the_documented_columns_and_fields_are_what_a_real_run_writes() {
    let page = schema_page();
    let dir = tempfile::tempdir().unwrap();
    let api = sibling_binary("purchasing-api");

    let http = run_lab(
        &dir.path().join("http"),
        &[
            "--profile",
            "step",
            "--users",
            "2",
            "--step-users",
            "2",
            "--step-seconds",
            "1",
            "--max-users",
            "4",
            "--duration",
            "2",
            "--fail-on",
            "lost>0",
            "--spawn-server",
            "--server-bin",
            api.to_str().unwrap(),
        ],
        &["--max-in-flight", "4"],
    );

    // requests.csv: the header line, in the documented order.
    let csv = std::fs::read_to_string(http.join("requests.csv")).expect("requests.csv");
    let header: Vec<String> = csv
        .lines()
        .next()
        .expect("a header line")
        .split(',')
        .map(str::to_owned)
        .collect();
    let documented = documented_csv_columns(&page);
    assert_eq!(
        header, documented,
        "requests.csv's columns (left) differ from docs/report-schema.md (right)"
    );

    // report.json: every leaf, from the HTTP run and (with a broker) a messaging run.
    let mut written = BTreeSet::new();
    let mut empty = BTreeSet::new();
    leaves(&read_report(&http), "", &mut written, &mut empty);
    let messaging_ran = match loadtest::broker::require_installed_or_skip() {
        None => false,
        Some(_installation) => {
            // The lab spawns the worker found beside itself.
            sibling_binary("purchasing-worker");
            let amqp = run_lab(
                &dir.path().join("amqp"),
                &[
                    "--transport",
                    "amqp",
                    "--spawn-broker",
                    "--spawn-server",
                    "--delivery",
                    "reliable",
                    "--profile",
                    "rate",
                    "--rate",
                    "20",
                    "--duration",
                    "3",
                    "--drain-timeout",
                    "60",
                    "--kill-worker-every",
                    "1",
                    "--restart-broker-at",
                    "1",
                ],
                &[],
            );
            let mut amqp_empty = BTreeSet::new();
            leaves(&read_report(&amqp), "", &mut written, &mut amqp_empty);
            true
        }
    };
    // A scaled-out run: two nodes behind HAProxy, node0 killed and restarted, so every
    // balancer field (crash events and transitions included) is filled.
    let balancer_ran = match loadtest::balancer::require_installed_or_skip() {
        None => false,
        Some(_) => {
            let scaled = run_lab(
                &dir.path().join("scaled"),
                &[
                    "--spawn-server",
                    "--server-bin",
                    api.to_str().unwrap(),
                    "--instances",
                    "2",
                    "--kill-instance-at",
                    "1",
                    "--instance-down-for",
                    "1.5",
                    "--retries",
                    "2",
                    "--profile",
                    "rate",
                    "--rate",
                    "20",
                    "--duration",
                    "4",
                ],
                &["--protect"],
            );
            let mut scaled_empty = BTreeSet::new();
            leaves(&read_report(&scaled), "", &mut written, &mut scaled_empty);
            true
        }
    };
    let written = without_filled_placeholders(written);
    let documented = documented_report_fields(&page);

    let undocumented: Vec<&String> = written
        .difference(&documented)
        // A null or empty placeholder (`messaging: null`) whose contents are documented.
        .filter(|path| !(empty.contains(*path) && documented.iter().any(|d| is_below(d, path))))
        .collect();
    let absent: Vec<&String> = documented
        .difference(&written)
        // Without the messaging run, what only it fills cannot be asked for, nor rows of an
        // array the HTTP run left empty.
        .filter(|path| {
            (balancer_ran || !is_below(path, BALANCER_ONLY))
                && (messaging_ran
                    || !(MESSAGING_ONLY.iter().any(|m| is_below(path, m))
                        || empty.iter().any(|e| is_below(path, e))))
        })
        .collect();
    assert!(
        undocumented.is_empty() && absent.is_empty(),
        "docs/report-schema.md is out of date.\n\
         written by the code but not documented: {undocumented:?}\n\
         documented but not written by the code: {absent:?}"
    );
}

#[test]
fn the_page_patterns_expand_as_documented() {
    assert_eq!(expand("a.{b, c}"), ["a.b", "a.c"]);
    assert_eq!(expand("a[].{b,c}"), ["a[].b", "a[].c"]);
    assert_eq!(expand("requests.by_status{}"), ["requests.by_status{}"]);
    assert_eq!(expand("knee_step"), ["knee_step"]);
    assert!(is_below("a.b", "a") && is_below("a[].b", "a") && is_below("a[].b", "a[]"));
    assert!(!is_below("ab", "a") && !is_below("a", "a"));
}
