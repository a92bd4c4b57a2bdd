#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time each (not part of CI or scripts/test.sh).
#
#   scripts/fuzz.sh [seconds per target, default 120] [target ...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds into
# $EIDER_TOOLS_DIR/fuzz-target (default ~/.cache/eider/fuzz-target), keeps each target's corpus
# in fuzz/corpus/<target> and crashing inputs in fuzz/artifacts/<target>. A crash found here
# becomes a regression test (tests/tests/fuzz_regressions.rs) before it is fixed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-120}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(mime_parse cursor_decode ids_and_ranges filter_match lmtp_commands)
fi
target_dir=${EIDER_TOOLS_DIR:-$HOME/.cache/eider}/fuzz-target
cargo +nightly fuzz build --target-dir "$target_dir" -O
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run --target-dir "$target_dir" -O "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144 2>&1 | \
        grep -E "^#[0-9]+.*DONE|^Done|SUMMARY|panicked|ERROR|crash-" || true
done
