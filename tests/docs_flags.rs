//! The flags the documentation shows are the flags the binaries take:
//! - the flag tables of `purchasing-api` and `purchasing-worker` in docs/running.md list
//!   exactly the options of each binary's `--help` (both directions), each with the
//!   environment variable `--help` names for it;
//! - every command line in a code block of README.md or docs/ (`loadtest …`,
//!   `purchasing-api …`, `purchasing-worker …`, `inventory request …`, directly or through
//!   `cargo run -p NAME --`) uses only options its `--help` lists — including the server
//!   arguments after `--`, checked against the program they go to.
//!
//! The binaries are the real ones built by `cargo test --workspace`; nothing is mocked.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::bin_path;

const PROGRAMS: [&str; 4] = [
    "loadtest",
    "purchasing-api",
    "purchasing-worker",
    "inventory",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The long options (`--name`) of `program [subcommand] --help`, without `--help` and
/// `--version`. Only the option list is read: examples after it are commands, not options.
fn help_flags(program: &str, subcommand: Option<&str>) -> BTreeSet<String> {
    let mut command = Command::new(bin_path(program));
    command.args(subcommand).arg("--help");
    let output = command.output().expect("run --help");
    assert!(
        output.status.success(),
        "{program} {subcommand:?} --help failed"
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut flags = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("Examples") {
            break;
        }
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') || line.len() == trimmed.len() {
            continue;
        }
        if let Some(at) = trimmed.find("--") {
            let name = flag_name(&trimmed[at..]);
            if !name.is_empty() && name != "--help" && name != "--version" {
                flags.insert(name);
            }
        }
    }
    assert!(!flags.is_empty(), "no options found in {program} --help");
    flags
}

/// Each long option of `program --help` with the environment variable it reads
/// (`[env: NAME=]` under the option), if any.
fn help_env(program: &str) -> BTreeMap<String, Option<String>> {
    let output = Command::new(bin_path(program))
        .arg("--help")
        .output()
        .expect("run --help");
    let text = String::from_utf8(output.stdout).unwrap();
    let mut env = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        // An option line: `--name …` or `-x, --name …` (not `- value: …` of a value list).
        let option = trimmed.starts_with("--")
            || (trimmed.starts_with('-') && trimmed.get(2..6) == Some(", --"));
        if option && line.len() != trimmed.len() {
            current = trimmed.find("--").map(|at| flag_name(&trimmed[at..]));
            if let Some(flag) = &current {
                env.insert(flag.clone(), None);
            }
        } else if let (Some(flag), Some(at)) = (&current, trimmed.find("[env: ")) {
            let name: String = trimmed[at + 6..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            env.insert(flag.clone(), Some(name));
        }
    }
    env
}

/// `--name=value`, `--name[=<BOOL>]`, `--name <N>` → `--name`.
fn flag_name(token: &str) -> String {
    let rest = token.trim_start_matches('-');
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if name.is_empty() {
        String::new()
    } else {
        format!("--{name}")
    }
}

/// The first flag of each row of the first table under `heading` in docs/running.md.
fn documented_table_flags(page: &str, heading: &str) -> BTreeSet<String> {
    let start = page
        .find(heading)
        .unwrap_or_else(|| panic!("docs/running.md has no heading {heading:?}"));
    let section = &page[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| flag_name(&line[3..]))
        .collect()
}

/// Each table row's first flag with the variable in its second cell (`None` for `–`).
fn documented_table_env(page: &str, heading: &str) -> BTreeMap<String, Option<String>> {
    let start = page.find(heading).unwrap();
    let section = &page[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| {
            let env = line
                .split(" | ")
                .nth(1)
                .and_then(|cell| cell.split('`').nth(1))
                .map(str::to_owned);
            (flag_name(&line[3..]), env)
        })
        .collect()
}

#[test]
fn the_flag_tables_name_the_environment_variable_each_flag_reads() {
    let page = std::fs::read_to_string(repo_root().join("docs/running.md")).unwrap();
    for program in ["purchasing-api", "purchasing-worker"] {
        let documented = documented_table_env(&page, &format!("## `{program}`"));
        let help = help_env(program);
        let wrong: Vec<String> = documented
            .iter()
            .filter(|(flag, env)| help.get(*flag).is_some_and(|real| real != *env))
            .map(|(flag, env)| format!("{flag}: table says {env:?}, --help says {:?}", help[flag]))
            .collect();
        assert!(
            wrong.is_empty(),
            "docs/running.md's `{program}` table: {wrong:?}"
        );
    }
}

#[test]
fn the_flag_tables_list_exactly_what_each_binary_accepts() {
    let page = std::fs::read_to_string(repo_root().join("docs/running.md")).unwrap();
    for program in ["purchasing-api", "purchasing-worker"] {
        let documented = documented_table_flags(&page, &format!("## `{program}`"));
        let accepted = help_flags(program, None);
        let undocumented: Vec<_> = accepted.difference(&documented).collect();
        let unknown: Vec<_> = documented.difference(&accepted).collect();
        assert!(
            undocumented.is_empty() && unknown.is_empty(),
            "docs/running.md's `{program}` table is out of date.\n\
             in {program} --help but not in the table: {undocumented:?}\n\
             in the table but not accepted by {program}: {unknown:?}"
        );
    }
}

/// Every Markdown page of the documentation.
fn markdown_pages(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                out.push(path);
            }
        }
    }
    let mut pages = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut pages);
    pages
}

/// The shell lines of the fenced code blocks, with `\` continuations joined and comments cut.
fn code_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fenced = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        let line = match line.find(" #") {
            Some(at) => &line[..at],
            None => line,
        };
        if let Some(head) = line.trim_end().strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
        } else {
            pending.push_str(line);
            lines.push(std::mem::take(&mut pending));
        }
    }
    lines
}

/// One program invocation found in a code line.
#[derive(Debug)]
struct Invocation {
    program: &'static str,
    subcommand: Option<String>,
    flags: Vec<String>,
    /// Flags after a standalone `--` (the server's, for `loadtest run|compare|sweep`).
    passed_on: Vec<String>,
    line: String,
}

fn invocations(line: &str) -> Vec<Invocation> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let base = tokens[i].rsplit('/').next().unwrap_or("");
        let Some(&program) = PROGRAMS.iter().find(|p| **p == base) else {
            i += 1;
            continue;
        };
        // `cargo run -p NAME -- ARGS`: the arguments start after the `--`.
        let mut at = i + 1;
        if i > 0 && matches!(tokens[i - 1], "-p" | "--package") {
            match tokens[at..].iter().position(|t| *t == "--") {
                Some(dash) if !tokens[at..at + dash].contains(&"&&") => at += dash + 1,
                _ => {
                    i += 1;
                    continue;
                }
            }
        }
        let subcommand = (matches!(program, "loadtest" | "inventory"))
            .then(|| tokens.get(at).map(|t| t.to_string()))
            .flatten();
        if subcommand.is_some() {
            at += 1;
        }
        let mut flags = Vec::new();
        let mut passed_on = Vec::new();
        let mut after_dashes = false;
        while at < tokens.len() && !matches!(tokens[at], "&&" | "|" | "&" | ";") {
            let token = tokens[at];
            if token == "--" {
                after_dashes = true;
            } else if token.starts_with("--") {
                let name = flag_name(token);
                if after_dashes {
                    passed_on.push(name);
                } else {
                    flags.push(name);
                }
            }
            at += 1;
        }
        found.push(Invocation {
            program,
            subcommand,
            flags,
            passed_on,
            line: line.trim().to_owned(),
        });
        i = at;
    }
    found
}

#[test]
fn every_documented_command_uses_only_flags_its_program_accepts() {
    let root = repo_root();
    let mut helps: BTreeMap<(String, Option<String>), BTreeSet<String>> = BTreeMap::new();
    let mut help = |program: &str, sub: Option<&str>| {
        helps
            .entry((program.to_owned(), sub.map(str::to_owned)))
            .or_insert_with(|| help_flags(program, sub))
            .clone()
    };
    let mut wrong = Vec::new();
    let mut checked = 0;
    for page in markdown_pages(&root) {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(&root).unwrap().display().to_string();
        for line in code_lines(&text) {
            for call in invocations(&line) {
                checked += 1;
                let accepted = help(call.program, call.subcommand.as_deref());
                for flag in call.flags.iter().filter(|f| !accepted.contains(*f)) {
                    wrong.push(format!(
                        "{name}: {flag} is not an option of {} {}: {}",
                        call.program,
                        call.subcommand.as_deref().unwrap_or(""),
                        call.line
                    ));
                }
                // Arguments after `--` go to the server the lab spawns: the API, the worker
                // for `--transport amqp`, or both for `compare --transports`.
                if call.program == "loadtest"
                    && matches!(
                        call.subcommand.as_deref(),
                        Some("run" | "compare" | "sweep")
                    )
                {
                    let targets: &[&str] = if call.flags.iter().any(|f| f == "--transports") {
                        &["purchasing-api", "purchasing-worker"]
                    } else if line.contains("--transport amqp") {
                        &["purchasing-worker"]
                    } else {
                        &["purchasing-api"]
                    };
                    for target in targets {
                        let accepted = help(target, None);
                        for flag in call.passed_on.iter().filter(|f| !accepted.contains(*f)) {
                            wrong.push(format!(
                                "{name}: {flag} (after --) is not an option of {target}: {}",
                                call.line
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} commands found: is the reader broken?"
    );
    assert!(
        wrong.is_empty(),
        "documented commands that would be refused:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_command_reader_finds_programs_and_their_flags() {
    let calls = invocations(
        "cargo build --release && ./target/release/loadtest compare --transports --out x -- --alloc-chars 1000",
    );
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].subcommand.as_deref(), Some("compare"));
    assert_eq!(calls[0].flags, ["--transports", "--out"]);
    assert_eq!(calls[0].passed_on, ["--alloc-chars"]);
    let calls =
        invocations("cargo run --release -p inventory -- request --url http://x --timeout 5 A");
    assert_eq!(calls[0].program, "inventory");
    assert_eq!(calls[0].subcommand.as_deref(), Some("request"));
    assert_eq!(calls[0].flags, ["--url", "--timeout"]);
    assert!(invocations("cargo build --release -p purchasing-api").is_empty());
    assert_eq!(flag_name("--idempotency[=<BOOL>]"), "--idempotency");
    assert_eq!(flag_name("--prioritize-work=false"), "--prioritize-work");
    assert_eq!(code_lines("```sh\na \\\n  b # note\n```\n"), ["a    b"]);
}
