//! The house's shape, checked as code (docs/architecture.md, "Rules"): the API's operations
//! as the served document lists them (a route added, removed or rescoped changes
//! `openapi_operations.txt` in the same commit), each route written once, no file past 450
//! lines, no glob re-export, the staff console in its own room, and the apps importing only
//! downwards.

use std::{collections::HashMap, path::Path};

use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TestApp, json};

/// Every `.rs` file under `src/`, with its text.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a source file");
                let name = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&path).display().to_string();
                out.push((name, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out
}

#[sqlx::test]
async fn the_document_lists_the_operations_of_record(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let doc = json(app.get("/api/v1/openapi.json").await).await;
    let mut lines = Vec::new();
    let paths = doc["paths"].as_object().expect("paths");
    let mut sorted: Vec<(&String, &Value)> = paths.iter().collect();
    sorted.sort_by_key(|(p, _)| p.as_str());
    for (path, item) in sorted {
        for method in ["get", "put", "post", "patch", "delete"] {
            if let Some(op) = item.get(method) {
                let scope = op["x-api-key-scope"].as_str().unwrap_or("-");
                let permission = op["x-permission"].as_str().unwrap_or("-");
                lines.push(format!("{} {path} key={scope} permission={permission}", method.to_uppercase()));
            }
        }
    }
    let expected = include_str!("openapi_operations.txt");
    // `UPDATE_OPERATIONS=1 cargo test structure::` rewrites the record; review its diff.
    if std::env::var_os("UPDATE_OPERATIONS").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/openapi_operations.txt");
        std::fs::write(path, lines.join("\n") + "\n").expect("the record is writable");
        return;
    }
    assert_eq!(lines.join("\n") + "\n", expected, "the API's operations changed: update openapi_operations.txt");
    // An operation with a key scope says so in its security too; each operationId is
    // unique (OpenAPI requires it; client generators name methods by it).
    let mut ids = std::collections::HashSet::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            if op.get("x-api-key-scope").is_some() {
                assert!(op["security"].to_string().contains("api_key"), "{op}");
            }
            if let Some(id) = op["operationId"].as_str() {
                assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            }
        }
    }
}

#[test]
fn each_route_is_written_once() {
    let mut declared: HashMap<(String, String), String> = HashMap::new();
    let mut routed: HashMap<String, String> = HashMap::new();
    for (file, text) in sources() {
        for (i, _) in text.match_indices("#[utoipa::path(") {
            let attr = &text[i..];
            let method = attr["#[utoipa::path(".len()..].split(',').next().unwrap_or("").trim().to_owned();
            let Some(start) = attr.find("path = \"") else { continue };
            let path = attr[start + 8..].split('"').next().unwrap_or("").to_owned();
            if let Some(other) = declared.insert((method.clone(), path.clone()), file.clone()) {
                panic!("{method} {path} is declared in {other} and {file}");
            }
        }
        for (i, _) in text.match_indices(".route(\"") {
            let path = text[i + 8..].split('"').next().unwrap_or("").to_owned();
            if let Some(other) = routed.insert(path.clone(), file.clone()) {
                panic!("{path} is routed in {other} and {file}");
            }
        }
    }
    assert!(declared.len() > 80, "{} declarations found", declared.len());
    for path in routed.keys() {
        assert!(!declared.keys().any(|(_, p)| p == path), "{path} is both declared and routed by hand");
        assert!(
            !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json",
            "{path}: API routes come from their declarations"
        );
    }
}

/// The rooms a file imports through `crate::`: the first segment of every path in its
/// `use crate::...` and `crate::...` expressions, braces included.
fn rooms_imported(text: &str) -> Vec<String> {
    fn heads(tree: &str, out: &mut Vec<String>) {
        let tree = tree.trim();
        if let Some(inner) = tree.strip_prefix('{') {
            // Split the group at its top-level commas.
            let (mut depth, mut start) = (0usize, 0usize);
            let inner = inner.strip_suffix('}').unwrap_or(inner);
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth = depth.saturating_sub(1),
                    ',' if depth == 0 => {
                        heads(&inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            heads(&inner[start..], out);
        } else {
            let head: String = tree.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !head.is_empty() {
                out.push(head);
            }
        }
    }
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if rest.starts_with('{') {
            // The balanced group that follows.
            let mut depth = 0usize;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i + 1);
            heads(&rest[..end], &mut out);
        } else {
            heads(rest, &mut out);
        }
    }
    out
}

#[test]
fn imports_are_read_through_groups() {
    let text = "use crate::{\n    audit_log::{self, X},\n    core::{a, b::{c}},\n};\nlet x = crate::otp::y();";
    assert_eq!(rooms_imported(text), ["audit_log", "core", "otp"]);
}

#[test]
fn the_rooms_keep_their_shape() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(root.join("src/admin_ui/mod.rs").exists(), "the staff console is a room of its own");
    assert!(!root.join("src/accounts/admin_ui").exists(), "and it left accounts");
    // Each app imports only the rooms below it: accounts -> otp -> notifications ->
    // audit_log -> core; admin_ui, console and jobs sit above them all and nothing imports them.
    let above: [(&str, &[&str]); 5] = [
        ("src/accounts/", &["admin_ui", "console", "jobs"]),
        ("src/otp/", &["accounts", "admin_ui", "console", "jobs"]),
        ("src/notifications/", &["accounts", "otp", "admin_ui", "console", "jobs"]),
        ("src/audit_log/", &["accounts", "otp", "notifications", "admin_ui", "console", "jobs"]),
        ("src/core/", &["accounts", "otp", "notifications", "audit_log", "admin_ui", "console", "jobs"]),
    ];
    let mut files = 0;
    for (file, text) in sources() {
        files += 1;
        let lines = text.lines().count();
        assert!(lines <= 450, "{file} has {lines} lines (at most 450: split it along its seams)");
        for line in text.lines().map(str::trim) {
            assert!(!(line.starts_with("pub use") && line.contains("::*")), "{file}: a glob re-export: {line}");
        }
        if file.starts_with("src/admin_ui/") || file.starts_with("src/console/") || file.starts_with("src/jobs/") {
            // Above the apps, they call services; the SQL stays with the app that owns it.
            assert!(!text.contains("repo::") && !text.contains("sqlx::query"), "{file} reaches past a service");
        }
        let imported = rooms_imported(&text);
        for (room, forbidden) in above {
            if file.starts_with(room) {
                for app in forbidden {
                    assert!(!imported.iter().any(|r| r == app), "{file} imports {app}, a room above it");
                }
            }
        }
    }
    assert!(files > 100, "{files} source files found");
}
