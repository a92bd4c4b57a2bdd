#!/usr/bin/env bash
# Eider's one test command: installs what the tests need (idempotent, quick when already
# there), then runs every check. Used as is by CI (.ci/run).
#
#   scripts/test.sh               install tools if needed, then run all checks
#   scripts/test.sh --setup-only  only install the tools
#
# Environment:
#   EIDER_TOOLS_DIR   where tools and caches live (default: $HOME/.cache/eider)
#   CARGO_TARGET_DIR  cargo's target dir (default: $EIDER_TOOLS_DIR/target, reused across clones)
#   CARGO_INCREMENTAL 0 by default here (no incremental caches: they fill the disk per clone path)
#   EIDER_FUZZ_SECONDS the schemathesis run's time budget (default 120)
#
# Steps: prune the workspace's own build artifacts unused for 12 hours and any artifact unread
# for two days; cargo fmt --check; cargo clippy -D warnings; moto_server on a free loopback
# port (EIDER_TEST_AWS_ENDPOINT, EIDER_MOTO_SERVER, CARGO_LAMBDA); cargo test --workspace;
# schemathesis against eider-local from docs/openapi.json (scripts/api-fuzz/run.sh); cfn-lint;
# sam validate --lint.
set -euo pipefail

setup_only=0
case "${1:-}" in
    "") ;;
    --setup-only) setup_only=1 ;;
    -h | --help)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: $0 [--setup-only]" >&2
        exit 2
        ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)

tools_dir=${EIDER_TOOLS_DIR:-${HOME:-/tmp}/.cache/eider}
venv=$tools_dir/venv
requirements=$repo_root/scripts/requirements-test.txt
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$tools_dir/target}
# Every clone path compiles the workspace crates anew in the shared target dir; without
# incremental caches each such build leaves about half the disk behind (a run from a fresh
# clone gains nothing from them). Set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-$([ -t 1 ] && echo always || echo auto)}

started=$SECONDS
step_no=0
step() {
    step_no=$((step_no + 1))
    printf '\n==> [%d] %s   (%ds)\n' "$step_no" "$*" "$((SECONDS - started))"
}
die() {
    echo "eider: error: $*" >&2
    exit 1
}

# moto_server is stopped on any exit, success or not.
moto_pid=
test_log=
stop_moto() {
    if [ -n "$moto_pid" ] && kill -0 "$moto_pid" 2>/dev/null; then
        # Its state is thrown away: SIGKILL spares minutes of freeing a large heap at exit.
        kill -KILL "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    moto_pid=
}
on_exit() {
    local rc=$?
    stop_moto
    [ -z "$test_log" ] || rm -f "$test_log"
    if [ "$rc" != 0 ]; then
        echo "eider: FAILED (exit $rc) at step $step_no after $((SECONDS - started))s" >&2
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------- tools
mkdir -p "$tools_dir"

# Serialise installs between concurrent runs sharing the tools dir (a developer and CI).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools_dir/.setup.lock"
    flock 9
fi

step "tools: Python venv at $venv"
command -v python3 >/dev/null 2>&1 || die "python3 is required (3.9 or newer)"
if [ -e "$venv" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "venv is broken (its Python moved?); recreating"
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv"; then
        rm -rf "$venv"
        # Debian's python3 lacks the venv module until python3-venv is installed.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "installing python3-venv with apt-get"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            python3 -m venv "$venv"
        else
            die "python3 -m venv failed; install your distribution's python3-venv package"
        fi
    fi
fi
stamp=$venv/.eider-requirements.sha256
want=$({ cat "$requirements"; "$venv/bin/python" -V; } 2>&1 | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "up to date ($(basename "$requirements") unchanged)"
else
    pip_started=$SECONDS
    echo "installing $(grep -c '==' "$requirements") pinned packages (about a minute on a fresh machine)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet \
        --no-input -r "$requirements"
    echo "$want" >"$stamp"
    echo "installed in $((SECONDS - pip_started))s"
fi
for tool in moto_server cfn-lint sam schemathesis cargo-lambda; do
    [ -x "$venv/bin/$tool" ] || die "$venv/bin/$tool missing after install"
done

step "tools: rustfmt and clippy"
command -v cargo >/dev/null 2>&1 || die "cargo is required (install Rust with rustup)"
missing=()
cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
if [ ${#missing[@]} -gt 0 ]; then
    command -v rustup >/dev/null 2>&1 || die "missing ${missing[*]} and no rustup to add them"
    rustup component add "${missing[@]}"
fi
echo "$(cargo fmt --version); $(cargo clippy --version)"

# Release the install lock: the checks below may run side by side.
if command -v flock >/dev/null 2>&1; then
    exec 9>&-
fi

if [ "$setup_only" = 1 ]; then
    echo
    echo "eider: tools ready in $tools_dir ($((SECONDS - started))s)"
    exit 0
fi

# ------------------------------------------------------------------------ checks
# Each clone path compiles the workspace's own crates and test binaries anew in the shared
# target dir (about 2.3 GB per run from a fresh clone): those not touched for 12 hours belong
# to clones gone by. Third-party artifacts (lib<crate>-*) are kept: they are shared.
step "prune stale build artifacts in $CARGO_TARGET_DIR"
deps_dir=$CARGO_TARGET_DIR/debug/deps
if [ -d "$deps_dir" ]; then
    stale_names=(eider_ libeider_)
    for t in "$repo_root"/tests/tests/*.rs "$repo_root"/functions/*/tests/*.rs; do
        stale_names+=("$(basename "$t" .rs)-")
    done
    before_kb=$(du -sk "$deps_dir" | cut -f1)
    for name in "${stale_names[@]}"; do
        find "$deps_dir" -maxdepth 1 -type f -name "$name*" -mmin +720 -delete 2>/dev/null || true
    done
    echo "freed $(((before_kb - $(du -sk "$deps_dir" | cut -f1)) / 1024)) MB"
fi
# Any artifact not read for two days (dependencies' old versions and feature sets, the release
# and profiling builds of benches, incremental caches): without this the shared target dir grew
# to 72 GB and filled the disk (2026-12-07). Cargo rebuilds whatever it still needs.
mkdir -p "$CARGO_TARGET_DIR" # a fresh machine has none yet
before_kb=$(du -sk "$CARGO_TARGET_DIR" | cut -f1)
for dir in "$CARGO_TARGET_DIR"/*/deps; do
    find "$dir" -maxdepth 1 -type f -atime +1 -delete 2>/dev/null || true
done
for dir in "$CARGO_TARGET_DIR"/*/incremental; do
    find "$dir" -mindepth 1 -maxdepth 1 -type d -mtime +1 -exec rm -rf {} + 2>/dev/null || true
done
echo "freed $(((before_kb - $(du -sk "$CARGO_TARGET_DIR" | cut -f1)) / 1024)) MB unread for two days"

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "moto_server (DynamoDB + S3 emulator for the backend contract tests)"
moto_log=$tools_dir/moto-server.log
moto_port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Requests serialized: moto's threaded server does not isolate transactions.
"$venv/bin/python" scripts/moto_serial.py -H 127.0.0.1 -p "$moto_port" >"$moto_log" 2>&1 &
moto_pid=$!
# Ready when it answers HTTP; give up after 30 s or if it died.
if ! "$venv/bin/python" - "$moto_port" "$moto_pid" <<'PY'; then
import os, sys, time, urllib.request, urllib.error
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
        sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # any HTTP answer means it is up
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit("moto_server exited")
        time.sleep(0.1)
sys.exit("moto_server did not answer within 30 s")
PY
    tail -n 30 "$moto_log" >&2 || true
    die "could not start moto_server (log: $moto_log)"
fi
export EIDER_TEST_AWS_ENDPOINT=http://127.0.0.1:$moto_port
export EIDER_MOTO_SERVER=$venv/bin/moto_server
# The runtime emulator of the cloud-shape test (tests/tests/cloud_shape.rs).
export CARGO_LAMBDA=$venv/bin/cargo-lambda
echo "moto_server pid $moto_pid at $EIDER_TEST_AWS_ENDPOINT (log: $moto_log)"

step "cargo test --workspace"
test_log=$(mktemp "${TMPDIR:-/tmp}/eider-test.XXXXXX")
cargo test --workspace 2>&1 | tee "$test_log"
counts=$(sed 's/\x1b\[[0-9;]*m//g' "$test_log" | awk '
    /^test result: / {
        for (i = 1; i <= NF; i++) {
            n = $(i - 1) + 0
            if ($i ~ /^passed/) p += n
            if ($i ~ /^failed/) f += n
            if ($i ~ /^ignored/) s += n
        }
    }
    END { printf "%d passed, %d failed, %d skipped", p, f, s }')
rm -f "$test_log"
test_log=
stop_moto

step "schemathesis against eider-local (scripts/api-fuzz/run.sh, ${EIDER_FUZZ_SECONDS:-120} s)"
EIDER_TOOLS_DIR=$tools_dir scripts/api-fuzz/run.sh "${EIDER_FUZZ_SECONDS:-120}"

step "cfn-lint template.yaml"
"$venv/bin/cfn-lint" template.yaml
echo "no findings"

step "sam validate --lint"
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
    "$venv/bin/sam" validate --lint --template template.yaml --region us-east-1

echo
echo "eider: all checks passed in $((SECONDS - started))s (fmt, clippy, cargo test, schemathesis, cfn-lint, sam validate)"
echo "eider: $counts"
