//! Reading a crate's sources: parsing with syn, paths inside macro tokens, the module tree
//! with each module's `use` declarations, the file graph of who uses whom, and its cycles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

pub fn parse(file: &Path) -> syn::File {
    let text = std::fs::read_to_string(file).unwrap();
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// Every `a::b` path in a macro's or attribute's tokens, as segments (the tokens are
/// not parsed as code, so paths there are read from their text).
pub fn paths_in_tokens(tokens: &impl std::fmt::Display) -> Vec<Vec<String>> {
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

pub struct Crate {
    modules: Vec<Module>,
}

impl Crate {
    pub fn load(root: &Path) -> Crate {
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
    pub fn file_graph(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
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
pub fn cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<(Vec<PathBuf>, Vec<PathBuf>)> {
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
