#!/usr/bin/env bash
# The bench command: builds the binaries and prints figures, each against a baseline
# measured in the same run (ratios hold on a noisy machine), and writes docs/benchmarks.md.
# Not part of CI. Arguments go to eider-bench: --sizes 1000,10000 (the default), --full (adds
# 100,000), --seed N, --runs N, --wrk-seconds N, --no-inprocess, --no-memory, --no-lambda,
# --no-load, --no-compare, --no-cloud, --no-doc.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${EIDER_TOOLS_DIR:-$HOME/.cache/eider}/target}

# The load figures need wrk (Debian package `wrk`).
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bench.sh: installing wrk (apt-get install -y wrk)" >&2
        apt-get install -y -q wrk >&2 || { apt-get update -q >&2 && apt-get install -y -q wrk >&2; }
    else
        echo "bench.sh: wrk is not on PATH; install it (Debian/Ubuntu: sudo apt-get install wrk)," >&2
        echo "          or run without the load figures: scripts/bench.sh --no-load" >&2
        case " $* " in *" --no-load "*) ;; *) exit 1 ;; esac
    fi
fi

# The local server and the bench (with its hello-world server) built for speed: the `fast`
# profile. The Lambda side in the release profile, which is what sam build deploys.
cargo build --profile fast -q -p eider-local -p eider-tests --bin eider-local --bin eider-bench
# Each function alone, as sam build / cargo lambda build it (its own features of eider-shared),
# beside a hello-world lambda_http built the same way, for the Lambda figures (skipped with
# --no-lambda).
case " $* " in
    *" --no-lambda "*) ;;
    *) cargo build --release -q -p eider-tests --bin hello-lambda
       for f in users addresses auth mailboxes messages archive filters autoreply submit ingest ws stream-bridge indexer webhooks janitor; do
           cargo build --release -q -p "eider-$f" --bin "eider-$f"
       done ;;
esac
EIDER_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" exec "$CARGO_TARGET_DIR/fast/eider-bench" "$@"
