#!/usr/bin/env bash
# The bench command: builds release binaries and prints figures, each against a baseline
# measured in the same run (ratios hold on a noisy machine). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${EIDER_TOOLS_DIR:-$HOME/.cache/eider}/target}
cargo build --release -q -p eider-local
cargo build --release -q -p eider-tests --bin eider-bench
exec "$CARGO_TARGET_DIR/release/eider-bench"
