#!/usr/bin/env bash
# schemathesis against the real eider-local process, from the shipped API document
# (docs/openapi.json), bounded in time: no 5xx, no dropped connection, every status, content
# type and body as the document says, and no panic in the server's log.
#
#   scripts/api-fuzz/run.sh [seconds]     (default 120; scripts/test.sh runs it)
#
# Needs schemathesis (scripts/requirements-test.txt; SCHEMATHESIS overrides the path) and
# builds eider-local in the debug profile.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-120}
tools_dir=${EIDER_TOOLS_DIR:-${HOME:-/tmp}/.cache/eider}
schemathesis=${SCHEMATHESIS:-$tools_dir/venv/bin/schemathesis}
python=$(dirname "$schemathesis")/python
[ -x "$schemathesis" ] || { echo "api-fuzz: $schemathesis missing (run scripts/test.sh --setup-only)" >&2; exit 1; }

cargo build -q -p eider-local
target_dir=$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d "${TMPDIR:-/tmp}/eider-api-fuzz.XXXXXX")
port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port=$(port)
lmtp_port=$(port)
export EIDER_FUZZ_TOKEN
EIDER_FUZZ_TOKEN=$("$python" -c 'import secrets; print(secrets.token_hex(16))')
EIDER_LISTEN=127.0.0.1:$http_port EIDER_LMTP_LISTEN=127.0.0.1:$lmtp_port \
    EIDER_DATA_DIR=$work/data EIDER_ACCESS_TOKEN=$EIDER_FUZZ_TOKEN \
    EIDER_UPDATES_MAX_SECONDS=2 NO_COLOR=1 \
    "$target_dir/debug/eider-local" >"$work/server.log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
base=http://127.0.0.1:$http_port

# A user with a message in INBOX, once the server answers.
eval "$("$python" - "$base" <<'PY'
import json, sys, time, urllib.request, os
base, token = sys.argv[1], os.environ["EIDER_FUZZ_TOKEN"]
def call(method, path, body=None, content_type="application/json"):
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"X-Access-Token": token, "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
deadline = time.monotonic() + 30
while True:
    try:
        call("GET", "/health")
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("eider-local did not answer within 30 s")
        time.sleep(0.2)
user = call("POST", "/users", {"username": "fuzz", "password": "fuzz-password-1", "address": "fuzz@example.com"})["id"]
inbox = next(m["id"] for m in call("GET", f"/users/{user}/mailboxes")["results"] if m["path"] == "INBOX")
raw = b"From: a@example.com\r\nTo: fuzz@example.com\r\nSubject: hello\r\n\r\nbody\r\n"
call("POST", f"/users/{user}/mailboxes/{inbox}/messages", raw, "message/rfc822")
print(f"export EIDER_FUZZ_USER={user} EIDER_FUZZ_MAILBOX={inbox}")
PY
)"

# import_data takes JSON lines, which schemathesis can't generate (tests/tests/data_export.rs
# covers it). From the scratch folder: schemathesis keeps a cache in the current directory.
repo=$PWD
fuzz() {
    (cd "$work" && "$schemathesis" --config-file "$repo/scripts/api-fuzz/schemathesis.toml" \
        run "$repo/docs/openapi.json" \
        --url "$base" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
        --exclude-operation-id import_data \
        --max-time "$seconds" --workers 1 --request-timeout 30 \
        --suppress-health-check all --no-color >"$work/schemathesis.log" 2>&1)
}
# One worker: with two threads, hypothesis' ast.parse calls race in CPython 3.11
# ("SystemError: AST constructor recursion depth mismatch": the parser's recursion counter is
# shared between threads), which failed two CI runs. A run whose only errors are
# schemathesis' own ("Runtime Error"), with no failure and no network error, runs once more
# with a new seed.
only_tool_errors() {
    local log=$work/schemathesis.log kinds
    grep -q "^Failures:" "$log" && return 1
    # The kinds of error listed under "Errors:", up to the blank line after them.
    kinds=$(awk '/^Errors:/ {on = 1; next} on && NF == 0 {exit} on' "$log")
    [ -n "$kinds" ] && ! printf '%s\n' "$kinds" | grep -qv "Runtime Error"
}
status=0
for attempt in 1 2; do
    echo "api-fuzz: schemathesis for ${seconds}s against $base (user $EIDER_FUZZ_USER), attempt $attempt"
    status=0
    fuzz || status=$?
    if [ "$status" != 0 ] && [ "$attempt" = 1 ] && only_tool_errors; then
        echo "api-fuzz: schemathesis failed by itself (no failure of the API); once more:"
        grep -B2 -A3 "SystemError\|Runtime Error" "$work/schemathesis.log" | tail -8
        continue
    fi
    break
done
tail -n 40 "$work/schemathesis.log"
if grep -q "panicked" "$work/server.log"; then
    echo "api-fuzz: the server panicked:" >&2
    grep -A5 "panicked" "$work/server.log" | head -40 >&2
    status=1
fi
if [ "$status" != 0 ]; then
    cp "$work/schemathesis.log" "${TMPDIR:-/tmp}/eider-api-fuzz-failed.log"
    echo "api-fuzz: FAILED (full log: ${TMPDIR:-/tmp}/eider-api-fuzz-failed.log)" >&2
fi
exit "$status"
