//! The report's modules form no import cycle, and each file stays small enough to read:
//! a guard for the house rules of issue 13 (one job per file, formatting in one leaf
//! module that the page, the cards and the charts share). It reads the sources, so a new
//! `use super::page` in a chart module fails here rather than in a review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The report's modules (file stem → source, without comments and unit tests).
fn modules() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("a readable source file");
        // Unit tests may use any module; only the code the binary runs counts.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        out.insert(name, code);
    }
    out
}

/// Which sibling modules each module refers to (`super::x`, `crate::x`).
fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    modules
        .iter()
        .map(|(name, code)| {
            let uses = modules
                .keys()
                .filter(|other| *other != name && *other != "lib")
                .filter(|other| {
                    let mentions = |prefix: &str| {
                        let needle = format!("{prefix}{other}");
                        code.match_indices(&needle).any(|(i, _)| {
                            let next = code[i + needle.len()..].chars().next();
                            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        })
                    };
                    // `use super::{a, b}` lists are checked name by name.
                    let in_list = code.split("use super::{").skip(1).any(|rest| {
                        rest.split('}').next().unwrap_or("").split(',').any(|item| {
                            item.trim().split("::").next().unwrap_or("").trim() == other.as_str()
                        })
                    });
                    mentions("super::") || mentions("crate::") || in_list
                })
                .cloned()
                .collect();
            (name.clone(), uses)
        })
        .collect()
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_report_modules_form_no_cycle() {
    let graph = edges(&modules());
    assert!(graph.contains_key("format"), "the formatting module exists");
    assert!(
        graph["format"].is_empty(),
        "format is a leaf, yet uses {:?}",
        graph["format"]
    );
    let users = graph.values().filter(|u| u.contains("format")).count();
    assert!(
        users >= 2,
        "the page and the charts share the formatting module"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in lab-report: {}", cycle.join(" → "));
    }
}

#[test]
fn every_report_file_stays_under_800_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        let lines = std::fs::read_to_string(&path)
            .expect("a readable source file")
            .lines()
            .count();
        assert!(
            lines < 800,
            "{} has {lines} lines: split it by job",
            path.display()
        );
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let mut m = BTreeMap::new();
    m.insert("a".to_string(), "use super::b::X;".to_string());
    m.insert("b".to_string(), "use super::{c, Y};".to_string());
    m.insert("c".to_string(), "fn f() { crate::a::g() }".to_string());
    let cycle = find_cycle(&edges(&m)).expect("a → b → c → a");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
}
