//! The layering of the core crate, as `docs/architecture.md` draws it: every top-level module
//! of `src/` imports (`crate::X`) only the modules below it, and the imports form no cycle.
//!
//! The test reads the crate's own sources as text, so a new upward import fails here with the
//! file and line that made it, instead of slowly turning the layers into a tangle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module, bottom up, with the modules it may import. A module may only be
/// allowed what stands before it in this list, so the allowed graph itself has no cycle.
const LAYERS: &[(&str, &[&str])] = &[
    ("identity", &[]),
    ("wire", &["identity"]),
    ("admission", &["identity"]),
    ("config", &["wire", "identity"]),
    ("tls", &["admission", "identity"]),
    ("session", &["config", "wire", "identity"]),
    (
        "peers",
        &["session", "tls", "admission", "config", "wire", "identity"],
    ),
    ("routing", &["peers", "session", "wire", "identity"]),
    ("status", &["config", "wire", "identity"]),
    ("auth", &["wire", "identity"]),
    ("flow", &["config", "identity"]),
    (
        "node",
        &[
            "flow",
            "auth",
            "status",
            "routing",
            "peers",
            "session",
            "tls",
            "config",
            "admission",
            "wire",
            "identity",
        ],
    ),
    (
        "amop",
        &[
            "node",
            "flow",
            "auth",
            "status",
            "routing",
            "peers",
            "session",
            "tls",
            "config",
            "admission",
            "wire",
            "identity",
        ],
    ),
];

/// Imports against the layering that the code has today, each with what removes it. The test
/// fails once one of them is gone, so that this list (and the architecture document) shrinks
/// with the code instead of excusing edges that no longer exist.
const PENDING: &[(&str, &str, &str)] = &[];

/// One `crate::X` reference.
#[derive(Debug, Clone)]
struct Import {
    to: String,
    file: PathBuf,
    line: usize,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A source file as messages name it: relative to the crate, `src/...`.
fn shown(file: &Path) -> String {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    file.strip_prefix(crate_dir)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// The top-level modules declared in `lib.rs`, except those compiled only for tests.
fn top_level_modules() -> Vec<String> {
    declared_modules(false)
}

/// The top-level modules compiled only for tests: shared test helpers, in no layer, which
/// any module's tests may use.
fn test_only_modules() -> Vec<String> {
    declared_modules(true)
}

/// The top-level modules of `lib.rs` that are (`tests`) or are not behind `#[cfg(test)]`.
fn declared_modules(tests: bool) -> Vec<String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).expect("read src/lib.rs");
    let mut out = Vec::new();
    let mut test_only = false;
    for line in lib.lines().map(str::trim) {
        if line == "#[cfg(test)]" {
            test_only = true;
            continue;
        }
        let decl = line.strip_prefix("pub ").unwrap_or(line);
        if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            if test_only == tests {
                out.push(name.trim().to_owned());
            }
        }
        if !line.is_empty() && !line.starts_with("#[") {
            test_only = false;
        }
    }
    out
}

/// The source files of top-level module `m`: `src/m.rs` or `src/m/**/*.rs`.
fn files_of(m: &str) -> Vec<PathBuf> {
    let single = src_dir().join(format!("{m}.rs"));
    if single.is_file() {
        return vec![single];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src_dir().join(m)];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// How many modules deep a file's top level sits below the crate root: `src/m.rs` and
/// `src/m/mod.rs` are 1, `src/m/x.rs` is 2.
fn file_depth(file: &Path) -> usize {
    let rel = file.strip_prefix(src_dir()).expect("file under src/");
    let parts = rel.components().count();
    if rel.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

/// The code of a Rust file with comments, string literals and char literals blanked out
/// (newlines kept, so line numbers stay right): what is left are paths that the compiler
/// resolves.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if let Some(len) = raw_string_len(rest) {
            blank(&mut out, &rest[..len]);
            i += len;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let len = (j + 1).min(rest.len());
            blank(&mut out, &rest[..len]);
            i += len;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'); anything else is a lifetime.
            let len = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            let len = len.unwrap_or(1);
            blank(&mut out, &rest[..len]);
            i += len;
        } else {
            let ch = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + ch]);
            i += ch;
        }
    }
    out
}

/// The length of a raw string literal (`r"..."`, `r#"..."#`, `br"..."`) at the start of `s`.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let start = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[start..].iter().take_while(|&&c| c == b'#').count();
    if s.get(start + hashes) != Some(&b'"') {
        return None;
    }
    let mut close = vec![b'"'];
    close.extend(std::iter::repeat(b'#').take(hashes));
    let body = start + hashes + 1;
    let end = s[body..].windows(close.len()).position(|w| w == close)?;
    Some(body + end + close.len())
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The identifier at the start of `s`, after whitespace.
fn ident(s: &str) -> &str {
    let s = s.trim_start();
    let end = s.bytes().position(|c| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named by `crate::` paths in `code`, and every `super::` chain that
/// climbs to the crate root (which would reach another module without saying `crate::`).
fn references(code: &str, file: &Path) -> (Vec<Import>, Vec<usize>) {
    let bytes = code.as_bytes();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut imports = Vec::new();
    let mut escapes = Vec::new();
    // Inline `mod x { ... }` blocks open so far, by the brace depth they opened at.
    let mut inline_mods: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !is_ident(bytes[i - 1]);
        let rest = &code[i..];
        if bytes[i] == b'{' {
            braces += 1;
        } else if bytes[i] == b'}' {
            braces = braces.saturating_sub(1);
            if inline_mods.last() == Some(&braces) {
                inline_mods.pop();
            }
        } else if word_start && rest.starts_with("mod ") {
            let name = ident(&rest[4..]);
            let after = rest[4..].trim_start()[name.len()..].trim_start();
            if !name.is_empty() && after.starts_with('{') {
                inline_mods.push(braces);
            }
        } else if word_start && rest.starts_with("crate::") {
            let path = &rest["crate::".len()..];
            let pos = i;
            let mut found = |to: &str| {
                if !to.is_empty() {
                    imports.push(Import {
                        to: to.to_owned(),
                        file: file.to_owned(),
                        line: line_of(pos),
                    });
                }
            };
            match path.trim_start().strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first segment of each item.
                Some(group) => {
                    let mut depth = 0usize;
                    let mut item_start = true;
                    for (k, c) in group.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => item_start = true,
                            c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                                found(ident(&group[k..]));
                                item_start = false;
                            }
                            _ => {}
                        }
                    }
                }
                None => found(ident(path)),
            }
        } else if word_start && rest.starts_with("super::") {
            let supers = rest
                .split("::")
                .take_while(|seg| seg.trim() == "super")
                .count();
            if supers >= file_depth(file) + inline_mods.len() {
                escapes.push(line_of(i));
            }
            i += "super::".len() * supers;
            continue;
        }
        i += 1;
    }
    (imports, escapes)
}

/// Which top-level modules each top-level module imports, with where.
fn import_graph(modules: &[String]) -> BTreeMap<String, Vec<Import>> {
    let helpers = test_only_modules();
    let mut graph = BTreeMap::new();
    let mut escapes = Vec::new();
    for m in modules {
        let mut imports = Vec::new();
        for file in files_of(m) {
            let src = std::fs::read_to_string(&file).expect("read source file");
            let (found, up) = references(&code_only(&src), &file);
            imports.extend(
                found
                    .into_iter()
                    .filter(|i| &i.to != m && !helpers.contains(&i.to)),
            );
            escapes.extend(
                up.into_iter()
                    .map(|line| format!("{}:{line}", shown(&file))),
            );
        }
        graph.insert(m.clone(), imports);
    }
    assert!(
        escapes.is_empty(),
        "`super::` paths that climb out of their top-level module (name the module with \
         `crate::` instead): {escapes:?}"
    );
    graph
}

fn allowed(m: &str) -> Option<&'static [&'static str]> {
    LAYERS.iter().find(|(name, _)| *name == m).map(|(_, a)| *a)
}

#[test]
fn the_layer_list_is_bottom_up_and_names_every_module() {
    for (i, (m, allows)) in LAYERS.iter().enumerate() {
        for a in *allows {
            let below = LAYERS[..i].iter().any(|(name, _)| name == a);
            assert!(
                below,
                "`{m}` may import `{a}`, which is not below it in LAYERS"
            );
        }
    }
    let modules = top_level_modules();
    for m in &modules {
        assert!(
            allowed(m).is_some(),
            "module `{m}` is in no layer: add it to LAYERS here and to docs/architecture.md"
        );
    }
    for (m, _) in LAYERS {
        assert!(
            modules.iter().any(|x| x == m),
            "LAYERS names `{m}`, which src/lib.rs does not declare"
        );
    }
}

#[test]
fn every_import_goes_down_the_layers() {
    let modules = top_level_modules();
    let graph = import_graph(&modules);
    let mut upward = Vec::new();
    for (from, imports) in &graph {
        let Some(allows) = allowed(from) else {
            continue; // reported by the_layer_list_is_bottom_up_and_names_every_module
        };
        for imp in imports {
            let pending = PENDING.iter().any(|(f, t, _)| f == from && *t == imp.to);
            if !allows.contains(&imp.to.as_str()) && !pending {
                upward.push(format!(
                    "{}:{}: `{from}` imports `crate::{}`",
                    shown(&imp.file),
                    imp.line,
                    imp.to
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layering (docs/architecture.md):\n{}",
        upward.join("\n")
    );
    for (from, to, fix) in PENDING {
        let still = graph[*from].iter().any(|i| i.to == *to);
        assert!(
            still,
            "`{from}` no longer imports `{to}` ({fix}): remove the edge from PENDING and from \
             docs/architecture.md"
        );
    }
}

#[test]
fn the_imports_have_no_cycle() {
    let modules = top_level_modules();
    let graph: BTreeMap<String, BTreeSet<String>> = import_graph(&modules)
        .into_iter()
        .map(|(m, imports)| (m, imports.into_iter().map(|i| i.to).collect()))
        .collect();
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|p| p == m) {
            let mut cycle = path[start..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if !done.insert(m.to_owned()) {
            return None;
        }
        path.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_scanner_sees_paths_in_code_only() {
    let src = r##"
use crate::wire::Packet; // crate::status in a comment
use crate::{identity::NodeId, config::{self, Config}};
/* crate::node in a block /* nested */ comment */
const S: &str = "crate::peers in a string";
const R: &str = r#"crate::routing in a raw string"#;
fn f<'a>(x: &'a str) -> char { let _ = crate::tls::X; '"' }
mod tests { use super::super::identity; }
"##;
    let file = src_dir().join("session").join("driver.rs");
    let (imports, escapes) = references(&code_only(src), &file);
    let names: Vec<&str> = imports.iter().map(|i| i.to.as_str()).collect();
    assert_eq!(names, ["wire", "identity", "config", "tls"]);
    assert_eq!(imports[3].line, 7);
    // src/session/driver.rs is two modules deep, and `tests` one more: two `super`s reach
    // `session`, not the crate root.
    assert!(escapes.is_empty(), "{escapes:?}");
    let file = src_dir().join("tls.rs");
    let (_, escapes) = references(&code_only("mod t { use super::super::x; }"), &file);
    assert_eq!(escapes, [1]);
}
