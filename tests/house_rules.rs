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
//! The packages, their dependencies and the names code uses for them come from
//! `cargo metadata` (offline, locked); the sources are parsed with syn. Why not
//! cargo-machete: it searches a package's whole directory, so the root package (whose
//! directory holds every crate) never has an unused dependency; and it takes minutes to
//! install on each fresh CI machine. `scripts/check-module-cycles` and
//! `scripts/check-unused-deps` run the rules on their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use syn::visit::Visit;

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
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
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
    let names_by_id: HashMap<String, String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (text(&p["id"]), text(&p["name"])))
        .collect();
    let resolved: HashMap<String, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (text(&n["id"]), n))
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
        let dependencies = resolved[&id]["deps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let kinds = d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k["kind"].as_str().unwrap_or("normal").to_string())
                    .collect();
                (
                    text(&d["name"]),
                    names_by_id[&text(&d["pkg"])].clone(),
                    kinds,
                )
            })
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

fn parse(file: &Path) -> syn::File {
    let text = std::fs::read_to_string(file).unwrap();
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every `a::b` path in a macro's or attribute's tokens, as segments (the tokens are
/// not parsed as code, so paths there are read from their text).
fn paths_in_tokens(tokens: &impl std::fmt::Display) -> Vec<Vec<String>> {
    let text = tokens.to_string();
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < words.len() {
        // `to_string` spaces tokens: "crate :: a :: b" → words "crate", "::", "a", "::", "b".
        if words[i] != "::" && words.get(i + 1) == Some(&"::") {
            let mut path = vec![words[i].to_string()];
            let mut j = i + 1;
            while words.get(j) == Some(&"::") && j + 1 < words.len() && words[j + 1] != "::" {
                path.push(words[j + 1].to_string());
                j += 2;
            }
            paths.push(path);
            i = j;
        } else {
            i += 1;
        }
    }
    paths
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
const KNOWN_REDUNDANT_DEV_DEPENDENCIES: &[(&str, &str)] =
    &[("inventory", "tokio"), ("loadtest", "serde_json")];

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
                "{}: {} is no longer a redundant dev-dependency; remove it from KNOWN_REDUNDANT_DEV_DEPENDENCIES in tests/house_rules.rs",
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

/// One module of a crate: file-backed (its own file) or inline (`mod x { … }`).
struct Module {
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    /// The file whose module this is, or that holds it inline: the graph's node.
    file: PathBuf,
    /// Its items, without those of its child modules.
    items: Vec<syn::Item>,
    /// `use` declarations: the name brought in → the path it names (as written).
    uses: HashMap<String, Vec<String>>,
    /// `use …::*` globs: the paths of the modules whose items it brings in.
    globs: Vec<Vec<String>>,
}

struct Crate {
    modules: Vec<Module>,
}

impl Crate {
    fn load(root: &Path) -> Crate {
        let mut krate = Crate {
            modules: Vec::new(),
        };
        let dir = root.parent().unwrap().to_path_buf();
        krate.add(Vec::new(), None, root.to_path_buf(), dir, parse(root).items);
        krate
    }

    fn add(
        &mut self,
        path: Vec<String>,
        parent: Option<usize>,
        file: PathBuf,
        dir: PathBuf,
        items: Vec<syn::Item>,
    ) -> usize {
        let index = self.modules.len();
        self.modules.push(Module {
            parent,
            children: BTreeMap::new(),
            file: file.clone(),
            items: Vec::new(),
            uses: HashMap::new(),
            globs: Vec::new(),
        });
        let mut own = Vec::new();
        for item in items.into_iter().filter(|item| !test_only(item)) {
            let syn::Item::Mod(module) = item else {
                if let syn::Item::Use(item_use) = &item {
                    let module = &mut self.modules[index];
                    collect_uses(
                        &item_use.tree,
                        &mut Vec::new(),
                        &mut module.uses,
                        &mut module.globs,
                    );
                }
                own.push(item);
                continue;
            };
            let name = module.ident.to_string();
            let mut child_path = path.clone();
            child_path.push(name.clone());
            let child = match module.content {
                Some((_, items)) => self.add(
                    child_path,
                    Some(index),
                    file.clone(),
                    dir.join(&name),
                    items,
                ),
                None => {
                    let child_file = path_attribute(&module.attrs)
                        .map(|p| file.parent().unwrap().join(p))
                        .or_else(|| {
                            [
                                dir.join(format!("{name}.rs")),
                                dir.join(&name).join("mod.rs"),
                            ]
                            .into_iter()
                            .find(|f| f.is_file())
                        });
                    let Some(child_file) = child_file else {
                        continue; // a cfg'd module for another platform, say
                    };
                    let child_dir = if child_file.file_name().is_some_and(|n| n == "mod.rs")
                        || path_attribute(&module.attrs).is_some()
                    {
                        child_file.parent().unwrap().to_path_buf()
                    } else {
                        dir.join(&name)
                    };
                    let items = parse(&child_file).items;
                    self.add(child_path, Some(index), child_file, child_dir, items)
                }
            };
            self.modules[index].children.insert(name, child);
        }
        self.modules[index].items = own;
        index
    }

    /// The module a path used in module `from` lands in: the deepest module it walks
    /// through, following `use` declarations (re-exports and imports) to where the item
    /// is defined. `None` for paths that leave the crate or name local items.
    fn resolve(&self, from: usize, path: &[String], depth: usize) -> Option<(usize, bool)> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (mut at, rest) = match path[0].as_str() {
            "crate" => (0, &path[1..]),
            "self" => (from, &path[1..]),
            "super" => {
                let mut at = from;
                let mut rest = path;
                while rest.first().is_some_and(|s| s == "super") {
                    at = self.modules[at].parent?;
                    rest = &rest[1..];
                }
                (at, rest)
            }
            first => {
                if self.modules[from].children.contains_key(first) {
                    (from, path)
                } else if let Some(target) = self.modules[from].uses.get(first) {
                    let mut full = target.clone();
                    full.extend_from_slice(&path[1..]);
                    if full == path {
                        return None; // `use serde;` and the like
                    }
                    return self.resolve(from, &full, depth + 1);
                } else {
                    return None;
                }
            }
        };
        for (i, segment) in rest.iter().enumerate() {
            if let Some(&child) = self.modules[at].children.get(segment) {
                at = child;
                continue;
            }
            if let Some(target) = self.modules[at].uses.get(segment) {
                let mut full = target.clone();
                full.extend_from_slice(&rest[i + 1..]);
                return self.resolve(at, &full, depth + 1).or(Some((at, false)));
            }
            return Some((at, false));
        }
        Some((at, true))
    }

    /// File → files it uses.
    fn file_graph(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        let mut graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for (index, module) in self.modules.iter().enumerate() {
            graph.entry(module.file.clone()).or_default();
            let mut targets = Vec::new();
            let mut paths = Paths::default();
            for item in &module.items {
                let syn::Item::Use(item_use) = item else {
                    paths.visit_item(item);
                    continue;
                };
                // A `use` that brings in a module adds no edge by itself: the paths
                // through it do. One that brings in an item, or a glob, does.
                let mut uses = HashMap::new();
                let mut globs = Vec::new();
                collect_uses(&item_use.tree, &mut Vec::new(), &mut uses, &mut globs);
                for target in uses.values() {
                    if let Some((to, false)) = self.resolve(index, target, 0) {
                        targets.push(to);
                    }
                }
                for glob in &globs {
                    if let Some((to, _)) = self.resolve(index, glob, 0) {
                        targets.push(to);
                    }
                }
            }
            // A path that names a module itself is no use of it (a local variable that
            // shares a child module's name looks like one).
            for path in &paths.0 {
                if let Some((to, false)) = self.resolve(index, path, 0) {
                    targets.push(to);
                }
            }
            for to in targets {
                let to = &self.modules[to].file;
                if *to != module.file {
                    graph
                        .entry(module.file.clone())
                        .or_default()
                        .insert(to.clone());
                }
            }
        }
        graph
    }
}

/// `#[cfg(test)]` items (unit test modules, test-only imports) are left out of the graph:
/// a test of a module may well use the page that module is part of.
fn test_only(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        _ => return false,
    };
    attrs.iter().any(|a| match &a.meta {
        syn::Meta::List(list) => list.path.is_ident("cfg") && list.tokens.to_string() == "test",
        _ => false,
    })
}

fn path_attribute(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// The names a `use` tree brings in (→ the full path each names) and its globs.
fn collect_uses(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    uses: &mut HashMap<String, Vec<String>>,
    globs: &mut Vec<Vec<String>>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            collect_uses(&p.tree, prefix, uses, globs);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                if let Some(last) = prefix.last() {
                    uses.insert(last.clone(), prefix.clone());
                }
            } else {
                let mut full = prefix.clone();
                full.push(name.clone());
                uses.insert(name, full);
            }
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            if r.ident != "self" {
                full.push(r.ident.to_string());
            }
            if r.rename != "_" {
                uses.insert(r.rename.to_string(), full);
            }
        }
        syn::UseTree::Glob(_) => globs.push(prefix.clone()),
        syn::UseTree::Group(g) => {
            for tree in &g.items {
                collect_uses(tree, prefix, uses, globs);
            }
        }
    }
}

/// Every path in some items (not in their `use` declarations nor nested modules).
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl<'a> Visit<'a> for Paths {
    fn visit_path(&mut self, path: &'a syn::Path) {
        self.0
            .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }
    fn visit_item_mod(&mut self, _: &'a syn::ItemMod) {}
    fn visit_item_use(&mut self, _: &'a syn::ItemUse) {}
    fn visit_macro(&mut self, mac: &'a syn::Macro) {
        self.0.extend(paths_in_tokens(&mac.tokens));
        syn::visit::visit_macro(self, mac);
    }
}

/// The cycles of a graph: its strongly connected components of more than one node (the
/// files that all depend on each other), each with its shortest circle through its first
/// file, as an example.
fn cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<(Vec<PathBuf>, Vec<PathBuf>)> {
    let nodes: Vec<&PathBuf> = graph.keys().collect();
    let index: HashMap<&PathBuf, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            graph[*n]
                .iter()
                .filter_map(|t| index.get(t).copied())
                .collect()
        })
        .collect();
    // Tarjan's algorithm, iteratively.
    let n = nodes.len();
    let (mut order, mut low) = (vec![usize::MAX; n], vec![0; n]);
    let (mut on_stack, mut stack, mut components) = (vec![false; n], Vec::new(), Vec::new());
    let mut counter = 0;
    for start in 0..n {
        if order[start] != usize::MAX {
            continue;
        }
        let mut calls = vec![(start, 0)];
        order[start] = counter;
        low[start] = counter;
        counter += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut next)) = calls.last_mut() {
            if let Some(&w) = edges[v].get(*next) {
                *next += 1;
                if order[w] == usize::MAX {
                    order[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    components.push(component);
                }
            }
        }
    }
    components
        .into_iter()
        .map(|component| {
            let inside: BTreeSet<usize> = component.iter().copied().collect();
            let first = *inside.iter().next().unwrap();
            // The shortest way back to `first`, inside the component (breadth first).
            let mut came_from: HashMap<usize, usize> = HashMap::new();
            let mut queue = std::collections::VecDeque::from([first]);
            let mut circle = vec![first];
            'search: while let Some(v) = queue.pop_front() {
                for &w in &edges[v] {
                    if !inside.contains(&w) {
                        continue;
                    }
                    if w == first {
                        let mut back = vec![v];
                        while let Some(&p) = came_from.get(back.last().unwrap()) {
                            back.push(p);
                        }
                        back.reverse();
                        circle = back;
                        circle.push(first);
                        break 'search;
                    }
                    if w != first && !came_from.contains_key(&w) {
                        came_from.insert(w, v);
                        queue.push_back(w);
                    }
                }
            }
            let members = inside.iter().map(|&i| nodes[i].clone()).collect();
            let circle = circle.iter().map(|&i| nodes[i].clone()).collect();
            (members, circle)
        })
        .collect()
}

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
#[ignore = "loadtest's balancer → child → server → report::model → balancer circle is being \
            removed; run it with scripts/check-module-cycles"]
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
