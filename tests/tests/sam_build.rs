//! What `sam build` compiles: it runs `cargo lambda build --release --bin <Binary>` for each
//! function (template.yaml's `rust-cargolambda` build method), and cargo-lambda adds its own
//! "release optimizations" as `--config profile.release.*` overrides for every setting the
//! workspace's release profile leaves unsaid. One of them is `panic = "abort"`, under which
//! the mail parser's panic fallback and the HTTP layer's catch-panic stop working. This test
//! runs the real cargo-lambda against the real workspace with a `cargo` that records the build
//! command instead of compiling, and checks that nothing of the release profile is overridden.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo-lambda`: `CARGO_LAMBDA` (the test command sets it), else the test tools' virtualenv.
fn cargo_lambda() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_LAMBDA") {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let path = Path::new(&home).join(".cache/eider/venv/bin/cargo-lambda");
    assert!(
        path.is_file(),
        "cargo-lambda not found (scripts/test.sh --setup-only installs it)"
    );
    path
}

#[test]
fn sam_builds_the_functions_with_the_workspace_release_profile_as_written() {
    let real_cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("build-command");
    // The stand-in answers `cargo build` (and `cargo zigbuild`) by writing down its arguments;
    // everything else (`cargo metadata`, `cargo --version`) goes to the real cargo.
    let fake_cargo = dir.path().join("cargo");
    std::fs::write(
        &fake_cargo,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = build ] || [ \"$1\" = zigbuild ]; then\n  \
               printf '%s\\n' \"$@\" > '{record}'\n  exit 3\n\
             fi\n\
             exec '{real_cargo}' \"$@\"\n",
            record = record.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &fake_cargo,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let cargo_lambda = cargo_lambda();
    // cargo-lambda's own folder holds the zig it links with when installed from PyPI.
    let tools = cargo_lambda.parent().unwrap().to_path_buf();
    let path = std::env::join_paths([dir.path().to_path_buf(), tools].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let output = Command::new(&cargo_lambda)
        .args(["lambda", "build", "--release", "--bin", "eider-users"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PATH", path)
        .env("CARGO", &fake_cargo)
        .output()
        .expect("cargo-lambda runs");
    let recorded = std::fs::read_to_string(&record).unwrap_or_else(|_| {
        panic!(
            "cargo-lambda ran no build: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let args: Vec<&str> = recorded.lines().collect();
    assert!(args.contains(&"--release"), "{args:?}");
    assert!(args.contains(&"eider-users"), "{args:?}");

    let overrides: Vec<&str> = args
        .windows(2)
        .filter(|pair| pair[0] == "--config")
        .map(|pair| pair[1])
        .filter(|config| config.starts_with("profile."))
        .collect();
    assert!(
        overrides.is_empty(),
        "cargo-lambda overrides the release profile of Cargo.toml with {overrides:?}: name \
         those settings in [profile.release]"
    );
}
