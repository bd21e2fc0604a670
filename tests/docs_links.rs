//! The documentation stays navigable and self-contained:
//! - every relative link in README.md and docs/**/*.md points at a file (or folder) inside
//!   the repository, and a `#fragment` into a Markdown page names one of its headings;
//! - no tracked file refers to the folder outside the repository that early drafts cited
//!   (a user who clones the repository does not have it);
//! - the README stays a front door (at most 200 lines; details belong in docs/).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The README's length budget: a newcomer reads it in five minutes.
const README_MAX_LINES: usize = 200;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/, as paths relative to the root.
fn markdown_pages(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut pages = vec![PathBuf::from("README.md")];
    walk(&root.join("docs"), root, &mut pages);
    pages
}

/// The text outside fenced code blocks and inline code spans: links are only read there.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop inline code spans, but keep a backticked link text: `[`x`](y)` stays a link.
        let mut in_code = false;
        let chars: Vec<char> = line.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            if c == '`' {
                let link_text = (i > 0 && chars[i - 1] == '[') || chars.get(i + 1) == Some(&']');
                if !link_text {
                    in_code = !in_code;
                }
                continue;
            }
            if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of the inline links `[text](target)` in `text`.
fn link_targets(text: &str) -> Vec<String> {
    let prose = prose(text);
    prose
        .match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &prose[at + 2..];
            rest.find(')').map(|end| rest[..end].trim().to_owned())
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(page: &str) -> BTreeSet<String> {
    let mut fenced = false;
    page.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            }
            !fenced && line.starts_with('#')
        })
        .map(|line| anchor(line.trim_start_matches('#')))
        .collect()
}

/// `base/../x` → `x`; `None` when the path climbs above the root.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[test]
fn every_relative_link_in_the_docs_resolves_inside_the_repository() {
    let root = repo_root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in markdown_pages(&root) {
        let text = std::fs::read_to_string(root.join(&page)).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = match target.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                Some(page.clone())
            } else {
                normalise(&page.parent().unwrap().join(path))
            };
            let Some(resolved) = resolved else {
                broken.push(format!(
                    "{}: {target} leaves the repository",
                    page.display()
                ));
                continue;
            };
            if !root.join(&resolved).exists() {
                broken.push(format!("{}: {target} does not exist", page.display()));
                continue;
            }
            if let Some(fragment) = fragment
                && resolved.extension().is_some_and(|ext| ext == "md")
            {
                let linked = std::fs::read_to_string(root.join(&resolved)).unwrap();
                if !anchors(&linked).contains(fragment) {
                    broken.push(format!(
                        "{}: {target}: {} has no heading #{fragment}",
                        page.display(),
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} links found: is the parser broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The files of the repository: `git ls-files` when this is a clone, else a walk of the
/// tree (a source archive), leaving out build output.
fn repository_files(root: &Path) -> Vec<PathBuf> {
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|output| output.status.success());
    if let Some(output) = listed {
        return output
            .stdout
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
            .filter(|path| !path.starts_with("target"))
            .collect();
    }
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if relative.starts_with("target") || relative.starts_with(".git") {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(relative);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files
}

#[test]
fn no_file_refers_to_the_shared_folder_outside_the_repository() {
    let root = repo_root();
    // Spelled in two pieces so this file does not match itself.
    let outside = concat!("..", "/shared/");
    let files = repository_files(&root);
    assert!(files.len() > 20, "only {} files found", files.len());
    let offenders: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let bytes = std::fs::read(root.join(file)).ok()?;
            let text = String::from_utf8_lossy(&bytes);
            let line = text.lines().position(|line| line.contains(outside))?;
            Some(format!("{}:{}", file.display(), line + 1))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "these files refer to {outside}, which a clone of the repository does not have: {offenders:?}"
    );
}

#[test]
fn the_readme_stays_a_front_door() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines (at most {README_MAX_LINES}): move the details into docs/ and link them"
    );
}

#[test]
fn the_link_reader_sees_links_and_skips_code() {
    let text = "See [a](a.md) and [`b`](b.md#x).\n```sh\n[c](c.md)\n```\n`[d](d.md)`\n";
    assert_eq!(link_targets(text), ["a.md", "b.md#x"]);
    assert_eq!(
        anchor("Side by side: `compare` and `sweep`"),
        "side-by-side-compare-and-sweep"
    );
    assert_eq!(anchor("Metrics (`GET /metrics`)"), "metrics-get-metrics");
    assert_eq!(
        normalise(Path::new("docs/../README.md")),
        Some("README.md".into())
    );
    assert_eq!(normalise(Path::new("docs/../../x")), None);
}
