//! The runtime crate's shape, checked from its sources: imports read one way (no circle of
//! modules), `unsafe` lives in one module, and `docs/ARCHITECTURE.md` names every file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn runtime_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/src")
}

/// Every `.rs` file under `dir`, relative to it, with `/` separators.
fn rust_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// The file's code: comments and test modules left out.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module a file is: `span` for `span.rs`, `context::current` for `context/current.rs`,
/// `context` for `context/mod.rs`.
fn module_of(file: &str) -> String {
    let file = file.trim_end_matches(".rs");
    let file = file.strip_suffix("/mod").unwrap_or(file);
    file.replace('/', "::")
}

fn identifiers_after<'a>(code: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    code.match_indices(prefix).filter_map(move |(i, _)| {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let rest = &code[i + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

/// The modules named after `prefix`: `crate::a::…`, and each entry of a group,
/// `crate::{a, b::c}`.
fn imported(code: &str, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = identifiers_after(code, prefix).map(str::to_owned).collect();
    let group = format!("{prefix}{{");
    for (i, _) in code.match_indices(&group) {
        let rest = &code[i + group.len()..];
        let mut depth = 0;
        let mut entry_start = true;
        for (j, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => entry_start = true,
                c if entry_start && (c.is_alphanumeric() || c == '_') => {
                    let word = &rest[j..];
                    let end = word
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(word.len());
                    out.push(word[..end].to_owned());
                    entry_start = false;
                }
                c if c.is_whitespace() => {}
                _ => entry_start = false,
            }
        }
    }
    // `self` and types named directly (`crate::{Span, …}`) are not modules.
    out.retain(|m| m != "self" && m.chars().next().is_some_and(|c| c.is_lowercase()));
    out
}

/// Module -> the modules it imports, at one level: top-level modules of the crate, and, inside
/// a folder module, its siblings.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = runtime_src();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        if file == "lib.rs" || file.ends_with("/tests.rs") || file == "private.rs" {
            continue;
        }
        let module = module_of(&file);
        let top = module.split("::").next().unwrap().to_owned();
        let code = code(&src.join(&file));
        let node = graph.entry(module.clone()).or_default();
        for dep in imported(&code, "crate::") {
            if dep != top && dep != "__private" {
                node.insert(dep);
            }
        }
        // Siblings inside a folder module.
        if let Some((parent, _)) = module.rsplit_once("::") {
            for dep in imported(&code, "super::") {
                node.insert(format!("{parent}::{dep}"));
            }
        }
    }
    graph
}

/// The top-level module of every node, for the crate-level graph; submodule edges stay for the
/// graph inside a folder.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn runtime_modules_import_one_way() {
    let graph = import_graph();
    // Crate level: a file's imports count for its top-level module.
    let mut crate_level: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, deps) in &graph {
        let top = module.split("::").next().unwrap();
        let node = crate_level.entry(top.to_owned()).or_default();
        for dep in deps {
            let dep_top = dep.split("::").next().unwrap();
            if dep_top != top && graph.keys().any(|m| m.split("::").next() == Some(dep_top)) {
                node.insert(dep_top.to_owned());
            }
        }
    }
    assert_eq!(find_cycle(&crate_level), None, "{crate_level:#?}");
    // Inside each folder module: siblings import one way too.
    let mut inner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, deps) in &graph {
        if let Some((parent, _)) = module.rsplit_once("::") {
            let node = inner.entry(module.clone()).or_default();
            for dep in deps {
                if dep.starts_with(&format!("{parent}::")) && graph.contains_key(dep) {
                    node.insert(dep.clone());
                }
            }
        }
    }
    assert_eq!(find_cycle(&inner), None, "{inner:#?}");
}

#[test]
fn unsafe_code_lives_in_one_module() {
    let src = runtime_src();
    let with_unsafe: Vec<String> = rust_files(&src)
        .into_iter()
        .filter(|file| {
            let code = std::fs::read_to_string(src.join(file)).unwrap();
            code.lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| {
                    ["unsafe {", "unsafe fn", "unsafe impl"]
                        .iter()
                        .any(|u| l.contains(u))
                })
        })
        .collect();
    assert_eq!(with_unsafe, ["context/current.rs"]);
}

#[test]
fn the_architecture_page_names_every_runtime_file() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ARCHITECTURE.md"),
    )
    .unwrap();
    let missing: Vec<String> = rust_files(&runtime_src())
        .into_iter()
        .filter(|file| !file.ends_with("tests.rs"))
        .filter(|file| !page.contains(&format!("runtime/src/{file}")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not name {missing:?}"
    );
}
