//! The test tools installed beside the repository (`scripts/test.sh --setup-only`).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// `cargo-lambda`: `CARGO_LAMBDA`, else on `PATH`, else in the test tools' virtualenv.
pub fn cargo_lambda() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CARGO_LAMBDA") {
        return Ok(path.into());
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("cargo-lambda"))
        .find(|p| p.is_file());
    let tools = std::env::var_os("EIDER_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/eider")));
    on_path
        .or_else(|| {
            tools
                .map(|t| t.join("venv/bin/cargo-lambda"))
                .filter(|p| p.is_file())
        })
        .context("cargo-lambda not found (scripts/test.sh --setup-only installs it)")
}
