//! House rules checked on the repository's own sources, so they cannot quietly erode:
//!
//! - **No module cycles** in any crate: a module that uses another (`use crate::a::B`,
//!   `super::b::f()`, `crate::a::C` anywhere in code, also inside macros) depends on it;
//!   two files that depend on each other, directly or around a circle, are a cycle, and
//!   the test names it. (Declaring a child with `mod` is not a use; a re-export is
//!   followed to the module that defines the item; `#[cfg(test)]` code is left out.)
//! - **No unused dependencies**: every crate named in a package's `[dependencies]`,
//!   `[dev-dependencies]` or `[build-dependencies]` appears in that package's own sources
//!   (for the root package: tests/, not the member crates below it). A dependency needed
//!   for a reason the sources cannot show is listed in its manifest under
//!   `[package.metadata.cargo-machete] ignored = [...]`, cargo-machete's convention.
//! - **No redundant dev-dependency**: one that repeats a normal dependency of the same
//!   package without adding features.
//!
//! The packages and their dependencies come from `cargo metadata --no-deps`; the sources are parsed with syn. Why not
//! cargo-machete: it searches a package's whole directory, so the root package (whose
//! directory holds every crate) never has an unused dependency; and it takes minutes to
//! install on each fresh CI machine. `scripts/check-module-cycles` and
//! `scripts/check-unused-deps` run the rules on their own. The module graph is built in
//! `syntax.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use syn::visit::Visit;
use syntax::{Crate, cycles, parse, paths_in_tokens};

mod syntax;

// ------------------------------------------------------------------ the workspace

/// One package of the workspace, as `cargo metadata` describes it.
struct Package {
    name: String,
    dir: PathBuf,
    /// Its targets: (kind: "lib", "bin", "test", …; name; root file).
    targets: Vec<(String, String, PathBuf)>,
    /// (name code uses, package name, kinds: "normal" | "dev" | "build")
    dependencies: Vec<(String, String, BTreeSet<String>)>,
    /// Raw dependency entries of the manifest, for the redundancy rule.
    declared: Vec<Value>,
    /// `[package.metadata.cargo-machete] ignored`.
    ignored: BTreeSet<String>,
}

fn workspace() -> Vec<Package> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        // --no-deps: only the workspace's own manifests, so nothing needs downloading
        // (a full resolve wants every platform's packages, which an offline cache lacks).
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let members: BTreeSet<String> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    let mut packages = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let id = text(&package["id"]);
        if !members.contains(&id) {
            continue;
        }
        let manifest = PathBuf::from(text(&package["manifest_path"]));
        let targets = package["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let kind = t["kind"]
                    .as_array()
                    .map(|k| text(&k[0]))
                    .unwrap_or_default();
                (kind, text(&t["name"]), PathBuf::from(text(&t["src_path"])))
            })
            .collect();
        // One entry per declaration; a crate declared as normal and dev is one dependency
        // of two kinds. Code names it by its rename, or by its package name with `-` as `_`
        // (a library named otherwise would need the ignore list: none is, today).
        let mut dependencies: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for d in package["dependencies"].as_array().unwrap() {
            let name = text(&d["name"]);
            let code_name = d["rename"].as_str().unwrap_or(&name).replace('-', "_");
            let kind = d["kind"].as_str().unwrap_or("normal").to_string();
            dependencies
                .entry((code_name, name))
                .or_default()
                .insert(kind);
        }
        let dependencies = dependencies
            .into_iter()
            .map(|((code_name, name), kinds)| (code_name, name, kinds))
            .collect();
        let ignored = package["metadata"]["cargo-machete"]["ignored"]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default();
        packages.push(Package {
            name: text(&package["name"]),
            dir: manifest.parent().unwrap().to_path_buf(),
            targets,
            dependencies,
            declared: package["dependencies"].as_array().unwrap().clone(),
            ignored,
        });
    }
    packages
}

/// The package's own `.rs` files: everything under its directory except `target/`,
/// hidden directories and the directories of other packages (the root package's
/// directory holds all the others).
fn own_sources(package: &Package, all: &[Package]) -> Vec<PathBuf> {
    let others: BTreeSet<&Path> = all
        .iter()
        .map(|p| p.dir.as_path())
        .filter(|d| *d != package.dir)
        .collect();
    let mut files = Vec::new();
    let mut todo = vec![package.dir.clone()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                if name != "target" && !name.starts_with('.') && !others.contains(path.as_path()) {
                    todo.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

// ------------------------------------------------------------------ unused dependencies

/// The first segment of every path in a file: the crates it names.
#[derive(Default)]
struct Roots(BTreeSet<String>);

impl<'a> Visit<'a> for Roots {
    fn visit_path(&mut self, path: &'a syn::Path) {
        if let Some(first) = path.segments.first() {
            self.0.insert(first.ident.to_string());
        }
        syn::visit::visit_path(self, path);
    }
    fn visit_item_use(&mut self, item: &'a syn::ItemUse) {
        fn roots(tree: &syn::UseTree, into: &mut BTreeSet<String>) {
            match tree {
                syn::UseTree::Path(p) => {
                    into.insert(p.ident.to_string());
                }
                syn::UseTree::Name(n) => {
                    into.insert(n.ident.to_string());
                }
                syn::UseTree::Rename(r) => {
                    into.insert(r.ident.to_string());
                }
                syn::UseTree::Group(g) => g.items.iter().for_each(|t| roots(t, into)),
                syn::UseTree::Glob(_) => {}
            }
        }
        roots(&item.tree, &mut self.0);
    }
    fn visit_item_extern_crate(&mut self, item: &'a syn::ItemExternCrate) {
        self.0.insert(item.ident.to_string());
    }
    fn visit_macro(&mut self, mac: &'a syn::Macro) {
        for path in paths_in_tokens(&mac.tokens) {
            self.0.insert(path[0].clone());
        }
        syn::visit::visit_macro(self, mac);
    }
    fn visit_attribute(&mut self, attr: &'a syn::Attribute) {
        if let syn::Meta::List(list) = &attr.meta {
            for path in paths_in_tokens(&list.tokens) {
                self.0.insert(path[0].clone());
            }
        }
        syn::visit::visit_attribute(self, attr);
    }
}

/// Redundant dev-dependencies their crates' owners are removing now: (package,
/// dependency). Each goes when its crate is clean; the list only shrinks.
const KNOWN_REDUNDANT_DEV_DEPENDENCIES: &[(&str, &str)] = &[("loadtest", "serde_json")];

#[test]
fn every_dependency_is_used_by_its_package() {
    let packages = workspace();
    let mut unused = Vec::new();
    for package in &packages {
        let mut roots = Roots::default();
        for file in own_sources(package, &packages) {
            roots.visit_file(&parse(&file));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let manifest = package.dir.join("Cargo.toml");
        let manifest = manifest.strip_prefix(root).unwrap_or(&manifest);
        for (code_name, package_name, kinds) in &package.dependencies {
            if !roots.0.contains(code_name) && !package.ignored.contains(package_name) {
                let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
                unused.push(format!(
                    "{}: {package_name} ({}) is never named in its sources; remove it from {}",
                    package.name,
                    kinds.join(", "),
                    manifest.display()
                ));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "unused dependencies:\n{}",
        unused.join("\n")
    );
}

#[test]
fn no_dev_dependency_repeats_a_normal_one() {
    let packages = workspace();
    let mut redundant = Vec::new();
    let mut still_known = BTreeSet::new();
    for package in &packages {
        let features = |d: &Value| -> BTreeSet<String> {
            d["features"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        };
        for dev in package.declared.iter().filter(|d| d["kind"] == "dev") {
            let repeated = package.declared.iter().any(|normal| {
                normal["kind"].is_null()
                    && normal["name"] == dev["name"]
                    && normal["target"] == dev["target"]
                    && normal["optional"] == false
                    && features(dev).is_subset(&features(normal))
                    && (normal["uses_default_features"] == true
                        || dev["uses_default_features"] == false)
            });
            let name = dev["name"].as_str().unwrap_or_default();
            let known = (package.name.as_str(), name);
            if repeated && KNOWN_REDUNDANT_DEV_DEPENDENCIES.contains(&known) {
                still_known.insert(known);
            } else if repeated {
                redundant.push(format!(
                    "{}: the dev-dependency {name} repeats the normal dependency (same features); remove it from [dev-dependencies]",
                    package.name
                ));
            }
        }
    }
    for known in KNOWN_REDUNDANT_DEV_DEPENDENCIES {
        if !still_known.contains(known) {
            redundant.push(format!(
                "{}: {} is no longer a redundant dev-dependency; remove it from KNOWN_REDUNDANT_DEV_DEPENDENCIES in tests/house_rules/main.rs",
                known.0, known.1
            ));
        }
    }
    assert!(
        redundant.is_empty(),
        "redundant dev-dependencies:\n{}",
        redundant.join("\n")
    );
}

// ------------------------------------------------------------------ module cycles

/// Every module cycle in the workspace, one line each, paths relative to the repository.
fn module_cycles() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let relative = |p: &PathBuf| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let mut found = BTreeSet::new();
    for package in workspace() {
        for (kind, name, src) in &package.targets {
            if kind == "custom-build" {
                continue;
            }
            let graph = Crate::load(src).file_graph();
            for (members, circle) in cycles(&graph) {
                let members: Vec<String> = members.iter().map(relative).collect();
                let circle: Vec<String> = circle.iter().map(relative).collect();
                found.insert(format!(
                    "{} ({kind} {name}): {} files in a cycle ({}), e.g. {}",
                    package.name,
                    members.len(),
                    members.join(", "),
                    circle.join(" → ")
                ));
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn no_crate_has_a_module_cycle() {
    let cycles = module_cycles();
    assert!(
        cycles.is_empty(),
        "module cycles (a file that uses another which, directly or around the circle, uses it back):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_through_re_exports_and_macros() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "mod a; mod b; mod c; pub mod report; pub use report::escape;\n\
         #[cfg(test)] mod tests { use super::*; }",
    );
    write("a.rs", "pub fn f() { crate::b::g() }");
    write("b.rs", "use crate::c::C; pub fn g() { let _ = C; }");
    // Around the circle through a macro and a re-export in the crate root.
    write(
        "c.rs",
        "pub struct C; fn h() { format!(\"{}\", crate::escape()); }",
    );
    write(
        "report/mod.rs",
        "mod markup; mod html; pub use markup::escape; use std::fmt;",
    );
    write(
        "report/markup.rs",
        "pub fn escape() -> u8 { super::html::size() }",
    );
    write(
        "report/html.rs",
        "pub fn size() -> u8 { crate::a::f(); 1 }\n\
         #[cfg(test)] mod tests { fn t() { crate::report::escape(); } }",
    );
    let graph = Crate::load(&dir.path().join("lib.rs")).file_graph();
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    let names: Vec<String> = found[0]
        .0
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        ["a.rs", "b.rs", "c.rs", "report/html.rs", "report/markup.rs"]
    );
    assert_eq!(found[0].1.first(), found[0].1.last());

    // Without the edge back; a test module's use does not count.
    write(
        "report/html.rs",
        "pub fn size() -> u8 { 1 }\n#[cfg(test)] mod tests { fn t() { crate::a::f(); } }",
    );
    let graph = Crate::load(&dir.path().join("lib.rs")).file_graph();
    assert!(cycles(&graph).is_empty(), "{:?}", cycles(&graph));
}
