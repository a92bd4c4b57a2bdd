//! What `sam build` compiles: for each function of template.yaml (`rust-cargolambda` build
//! method) it runs `cargo lambda build --release --bin <Binary>` in the function's `CodeUri`.
//! Two ways that went wrong, each checked here with the real cargo-lambda and the real cargo:
//! - cargo-lambda adds its own "release optimizations" as `--config profile.release.*`
//!   overrides for every setting the workspace's release profile leaves unsaid, among them
//!   `panic = "abort"`, under which the mail parser's panic fallback and the HTTP layer's
//!   catch-panic stop working;
//! - at the workspace root, cargo looks for `--bin` only in the default member (the local
//!   server) and fails.
//!
//! A `cargo` stand-in writes down the build command cargo-lambda makes and hands it to the real
//! cargo, whose compiler wrapper stops at the first compilation: getting that far means the
//! command chose the function's binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use eider_tests::template;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn sam_builds_each_function_with_the_workspace_release_profile_as_written() {
    let real_cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("build-command");
    let compiled = dir.path().join("compiled");
    let fake_cargo = dir.path().join("cargo");
    script(
        &fake_cargo,
        &format!(
            "if [ \"$1\" = build ] || [ \"$1\" = zigbuild ]; then\n  \
               printf '%s\\n' \"$@\" > '{record}'\n\
             fi\n\
             exec '{real_cargo}' \"$@\"\n",
            record = record.display(),
        ),
    );
    // The compiler wrapper answers cargo's questions about the compiler and refuses to compile.
    let stop_rustc = dir.path().join("stop-rustc");
    script(
        &stop_rustc,
        &format!(
            "case \" $* \" in *\" -vV \"*|*\" ___ \"*) exec \"$@\" ;; esac\n\
             echo \"$*\" >> '{compiled}'\n\
             exit 1\n",
            compiled = compiled.display(),
        ),
    );

    let cargo_lambda = eider_tests::tools::cargo_lambda().unwrap();
    // cargo-lambda's own folder holds the zig it links with when installed from PyPI.
    let tools = cargo_lambda.parent().unwrap().to_path_buf();
    let path = std::env::join_paths([dir.path().to_path_buf(), tools].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();

    let functions = template::functions(&workspace().join("template.yaml")).unwrap();
    assert!(functions.len() >= 16, "{functions:?}");
    for template::Function {
        binary, code_uri, ..
    } in functions
    {
        let _ = std::fs::remove_file(&record);
        let _ = std::fs::remove_file(&compiled);
        let output = Command::new(&cargo_lambda)
            .args(["lambda", "build", "--release", "--bin", &binary])
            .current_dir(workspace().join(&code_uri))
            .env("PATH", &path)
            .env("CARGO", &fake_cargo)
            .env("RUSTC_WRAPPER", &stop_rustc)
            .env("CARGO_TARGET_DIR", dir.path().join("target"))
            .output()
            .expect("cargo-lambda runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let recorded = std::fs::read_to_string(&record)
            .unwrap_or_else(|_| panic!("{binary}: cargo-lambda ran no build: {stderr}"));
        let args: Vec<&str> = recorded.lines().collect();
        assert!(args.contains(&"--release"), "{binary}: {args:?}");

        let overrides: Vec<&str> = args
            .windows(2)
            .filter(|pair| pair[0] == "--config")
            .map(|pair| pair[1])
            .filter(|config| config.starts_with("profile."))
            .collect();
        assert!(
            overrides.is_empty(),
            "{binary}: cargo-lambda overrides the release profile of Cargo.toml with \
             {overrides:?}: name those settings in [profile.release]"
        );
        assert!(
            compiled.exists(),
            "{binary}: cargo did not get to compiling from {code_uri} with {args:?}: {stderr}"
        );
    }
}
