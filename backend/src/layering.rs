//! The layering check: every module imports only from the layers below its
//! own. It reads `backend/src/**/*.rs`, finds each `crate::x` path (in `use`
//! lines, grouped `use crate::{a, b}` imports and paths in code alike) and
//! each `super::` path that leaves its top folder, and fails naming every
//! import that points up or sideways.
//!
//! Layers, from the top (a module may import from any layer below its own,
//! never from its own layer's siblings nor from above):
//!
//! ```text
//! main, cli
//! server
//! http, api                  siblings
//! flows
//! app                        the state
//! engine
//! auth, gitlab, kube, prometheus   siblings
//! db, jwks                 siblings
//! config, domain            siblings
//! secret, error              siblings
//! ```
//!
//! `sim` stands apart: it imports only itself, and only `cli` imports it.
//! A new top-level module fails the check until it is given a layer here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layer of each top-level module; higher imports lower.
const LAYERS: &[(&str, u8)] = &[
    ("main", 9),
    ("cli", 9),
    ("server", 8),
    ("http", 7),
    ("api", 7),
    ("flows", 6),
    ("app", 5),
    ("engine", 4),
    ("auth", 3),
    ("gitlab", 3),
    ("kube", 3),
    ("prometheus", 3),
    ("smoke", 3),
    ("db", 2),
    ("jwks", 2),
    // config and domain hold secrets wrapped (`Secret<String>`: settings,
    // a cluster's opened credentials): they sit just above the leaves.
    ("config", 1),
    ("domain", 1),
    ("secret", 0),
    ("error", 0),
];

/// The module that stands apart.
const APART: &str = "sim";
/// The one module that may import it.
const APART_USER: &str = "cli";

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// Why `from` may not import `to` (both top-level modules), or `None`.
fn refusal(from: &str, to: &str) -> Option<String> {
    if from == to {
        return None;
    }
    if to == APART {
        return (from != APART_USER).then(|| format!("only {APART_USER} may import {APART}"));
    }
    if from == APART {
        return Some(format!("{APART} stands apart and imports only itself"));
    }
    let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) else {
        return Some(format!(
            "`{from}` or `{to}` has no layer: add it to LAYERS in layering.rs"
        ));
    };
    match a.cmp(&b) {
        std::cmp::Ordering::Greater => None,
        std::cmp::Ordering::Equal => {
            Some("siblings in one layer must not import each other".into())
        }
        std::cmp::Ordering::Less => Some("imports from a layer above".into()),
    }
}

/// The source with comments, string and char literals blanked out (kept
/// as spaces so nothing that looks like a path inside them counts).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            i = j;
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push(' ');
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push(' ');
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The identifier starting at `s` (after skipping whitespace).
fn ident_at(s: &str) -> &str {
    let s = s.trim_start();
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// The top-level names a grouped import `{a, b::c, d::{e}}` starts with
/// (`s` begins just after the opening brace).
fn group_heads(s: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_start = true,
            c if at_start && is_ident(c) => {
                at_start = false;
                if depth == 0 {
                    heads.push(ident_at(&s[i..]));
                }
            }
            _ => {}
        }
    }
    heads
}

/// Every top-level module `code` refers to through `crate::`, and through
/// `super::` chains that climb out of `module_path` (the file's module
/// path, e.g. `["http", "pods"]`).
fn referenced_tops(code: &str, module_path: &[String]) -> BTreeSet<String> {
    let mut tops = BTreeSet::new();
    let preceded_by_path = |i: usize| {
        code[..i].ends_with(|c: char| is_ident(c) || c == '$')
            || code[..i].trim_end().ends_with("::")
    };
    for (i, _) in code.match_indices("crate::") {
        if preceded_by_path(i) {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.trim_start().strip_prefix('{') {
            tops.extend(group_heads(group).into_iter().map(str::to_string));
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                tops.insert(name.to_string());
            }
        }
    }
    for (i, _) in code.match_indices("super::") {
        if preceded_by_path(i) {
            continue;
        }
        let mut rest = &code[i..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r.trim_start();
        }
        if climbs < module_path.len() {
            continue;
        }
        // The chain reaches the crate root: what follows is a top module.
        if let Some(group) = rest.strip_prefix('{') {
            tops.extend(group_heads(group).into_iter().map(str::to_string));
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                tops.insert(name.to_string());
            }
        }
    }
    tops
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a file under `src` (`http/pods.rs` → `[http, pods]`,
/// `http/mod.rs` → `[http]`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" {
            parts.push(stem.to_string());
        }
    }
    parts
}

/// One import pointing the wrong way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    imports: String,
    why: String,
}

/// Every wrong-way import under `src`.
fn violations(src: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for path in files {
        let relative = path.strip_prefix(src).expect("under src");
        let module = module_path(relative);
        let Some(top) = module.first().cloned() else {
            continue;
        };
        // lib.rs only declares the modules.
        if top == "lib" {
            continue;
        }
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for to in referenced_tops(&code_only(&source), &module) {
            if let Some(why) = refusal(&top, &to) {
                found.push(Violation {
                    file: relative.to_string_lossy().replace('\\', "/"),
                    imports: to,
                    why,
                });
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn every_module_imports_only_from_the_layers_below_it() {
        let found = violations(&src());
        let unexpected: Vec<String> = found
            .iter()
            .map(|v| format!("  {} imports crate::{}: {}", v.file, v.imports, v.why))
            .collect();
        assert!(
            unexpected.is_empty(),
            "imports that point up or sideways (see the layers in layering.rs):\n{}",
            unexpected.join("\n")
        );
    }

    #[test]
    fn the_rules_follow_the_layers() {
        assert_eq!(refusal("http", "db"), None);
        assert_eq!(refusal("cli", "sim"), None);
        assert_eq!(refusal("config", "secret"), None);
        assert!(refusal("secret", "config").is_some(), "up");
        assert!(refusal("secret", "error").is_some(), "siblings");
        assert!(refusal("domain", "config").is_some(), "siblings");
        assert_eq!(refusal("domain", "secret"), None);
        assert_eq!(refusal("kube", "kube"), None);
        assert!(refusal("auth", "http").is_some(), "up");
        assert!(refusal("db", "engine").is_some(), "up");
        assert!(refusal("api", "http").is_some(), "siblings");
        assert!(refusal("kube", "auth").is_some(), "siblings");
        assert!(refusal("kube", "sim").is_some(), "only cli imports sim");
        assert!(refusal("sim", "db").is_some(), "sim imports only itself");
        assert!(
            refusal("notify", "db").is_some(),
            "a module without a layer"
        );
    }

    fn tops(code: &str, module: &[&str]) -> Vec<String> {
        let module: Vec<String> = module.iter().map(|s| s.to_string()).collect();
        referenced_tops(&code_only(code), &module)
            .into_iter()
            .collect()
    }

    #[test]
    fn imports_are_found_in_every_form() {
        assert_eq!(
            tops("use crate::http::page_error;", &["auth", "extract"]),
            ["http"]
        );
        assert_eq!(
            tops("use crate::{api, http::{self, x}};", &["server"]),
            ["api", "http"]
        );
        assert_eq!(
            tops(
                "let e = crate::engine::engine_actor();",
                &["db", "work_orders"]
            ),
            ["engine"]
        );
        assert_eq!(tops("use super::super::db::Tx;", &["kube", "x"]), ["db"]);
        assert_eq!(tops("use super::Tx;", &["db", "x"]), Vec::<String>::new());
        assert_eq!(tops("use super::db;", &["kube"]), ["db"]);
    }

    #[test]
    fn comments_and_strings_do_not_count() {
        let code = "// use crate::http;\n/* crate::api */ let s = \"crate::engine\";\n\
                    let r = r#\"crate::flows\"#; let c = '\"'; use crate::db;";
        assert_eq!(tops(code, &["kube"]), ["db"]);
        assert_eq!(
            tops("$crate::db::x; rollway::crate::y", &["kube"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_check_catches_an_upward_import_in_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("auth")).unwrap();
        std::fs::write(
            dir.path().join("auth/extract.rs"),
            "use crate::http::page_error;\nuse crate::db::Tx;\n",
        )
        .unwrap();
        let found = violations(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].file, "auth/extract.rs");
        assert_eq!(found[0].imports, "http");
    }
}
