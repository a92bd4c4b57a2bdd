//! The layers of the common crate hold by construction: the storage port knows nothing above
//! it, mail content knows nothing of WildDuck's rules, and the domain (WildDuck's rules) knows
//! nothing of HTTP. Each layer's sources are read and every non-comment line is checked for
//! the paths it must not use.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(file:line, text)` of every line of the layer under `dir` that mentions one of `banned`.
fn offending(dir: &str, banned: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/src")
        .join(dir);
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if banned.iter().any(|b| code.contains(b)) {
                found.push(format!("{}:{}: {}", file.display(), n + 1, code));
            }
        }
    }
    found
}

#[test]
fn the_domain_does_not_reach_into_http() {
    let found = offending(
        "domain",
        &["crate::http", "axum", "StatusCode", "ApiError", "ApiResult"],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_storage_port_knows_nothing_above_it() {
    let found = offending("store", &["crate::domain", "crate::http", "crate::mail"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn mail_content_knows_neither_rules_nor_http() {
    let found = offending("mail", &["crate::domain", "crate::http", "axum"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}
