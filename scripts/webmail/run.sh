#!/usr/bin/env bash
# Browser walk-through of WildDuck's web client (nodemailer/wildduck-webmail, unmodified)
# against eider-local. See scripts/webmail/README.md.
#
#   scripts/webmail/run.sh [--access-token] [--results DIR]
#
# Env: WEBMAIL_DIR (a wildduck-webmail checkout; default: extracted from the mirror into
# ~/.cache/eider/webmail/src), EIDER_LOCAL_BIN (default ~/.cache/eider/target/debug/eider-local),
# RESULTS_DIR (default ~/.cache/eider/webmail/shots), WALK_TIMEOUT (seconds, default 1500).
#
# Every step runs on the unmodified client, except the 2FA login: that one runs on a copy of
# the checkout with one line changed (see FIX_FROM below), served by a second client process
# on its own port that shares Redis (so the browser's session cookie works on both).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${EIDER_WEBMAIL_CACHE:-$HOME/.cache/eider/webmail}"
MIRROR="${WEBMAIL_MIRROR:-/work/.mirror/nodemailer+wildduck-webmail/repo}"
EIDER_LOCAL_BIN="${EIDER_LOCAL_BIN:-$HOME/.cache/eider/target/debug/eider-local}"
WALK_TIMEOUT="${WALK_TIMEOUT:-1500}"
ACCESS=0
RESULTS_BASE="${RESULTS_DIR:-$CACHE/shots}"

while [ $# -gt 0 ]; do
    case "$1" in
        --access-token) ACCESS=1 ;;
        --results) RESULTS_BASE="$2"; shift ;;
        -h|--help) sed -n 2,13p "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

MODE=$([ "$ACCESS" = 1 ] && echo access-token || echo no-token)
RESULTS="$RESULTS_BASE/$MODE"
log() { printf '[run.sh] %s\n' "$*" >&2; }

# ------------------------------------------------------------------ prerequisites
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -d /usr/share/fonts/opentype/noto ] || need_apt+=(fonts-noto-cjk)
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need_apt+=(fonts-noto-color-emoji)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        log "installing ${need_apt[*]} with apt"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        log "missing: ${need_apt[*]} (install them with apt as root)"; exit 1
    fi
fi
command -v node >/dev/null || { log "node is required"; exit 1; }
command -v python3 >/dev/null || { log "python3 is required"; exit 1; }

if [ ! -x "$EIDER_LOCAL_BIN" ]; then
    log "no eider-local at $EIDER_LOCAL_BIN (build it with 'cargo build -p eider-local' or set EIDER_LOCAL_BIN)"; exit 1
fi

mkdir -p "$CACHE"
if [ -z "${WEBMAIL_DIR:-}" ]; then
    WEBMAIL_DIR="$CACHE/src"
    if [ ! -f "$WEBMAIL_DIR/package.json" ]; then
        [ -d "$MIRROR" ] || { log "no WEBMAIL_DIR given and no mirror at $MIRROR"; exit 1; }
        log "extracting wildduck-webmail from $MIRROR into $WEBMAIL_DIR"
        mkdir -p "$WEBMAIL_DIR"
        git --git-dir="$MIRROR" archive HEAD | tar -x -C "$WEBMAIL_DIR"
    fi
fi
WEBMAIL_DIR="$(cd "$WEBMAIL_DIR" && pwd)"
[ -f "$WEBMAIL_DIR/server.js" ] || { log "$WEBMAIL_DIR is not a wildduck-webmail checkout"; exit 1; }

if [ ! -d "$WEBMAIL_DIR/node_modules/express" ]; then
    log "npm install in $WEBMAIL_DIR"
    (cd "$WEBMAIL_DIR" && npm install --no-audit --no-fund --loglevel=error)
fi

# The client's browser libraries come from bower/GitHub; take them from npm instead.
COMP="$CACHE/components-npm"
if [ ! -f "$COMP/node_modules/summernote/dist/summernote.min.js" ]; then
    log "installing the client's browser libraries from npm into $COMP"
    mkdir -p "$COMP"
    [ -f "$COMP/package.json" ] || echo '{"private":true}' >"$COMP/package.json"
    (cd "$COMP" && npm install --no-audit --no-fund --loglevel=error \
        jquery@3 underscore@1 promise-polyfill@7 moment@2 daterangepicker@3 summernote@0.8.20 \
        whatwg-fetch@2.0.4 event-source-polyfill@1 handlebars@4 favico.js@0.3 dompurify@1)
fi
PC="$WEBMAIL_DIR/public/components"
if [ ! -f "$PC/.from-npm" ]; then
    log "copying them to $PC"
    N="$COMP/node_modules"
    mkdir -p "$PC"/{jquery/dist,underscore,promise-polyfill/dist,moment/min,bootstrap-daterangepicker,summernote/dist,fetch,event-source-polyfill/src,handlebars,favico.js,DOMPurify/dist}
    cp "$N/jquery/dist/jquery.min.js" "$PC/jquery/dist/"
    cp "$N/underscore/underscore-min.js" "$PC/underscore/"
    cp "$N/promise-polyfill/dist/promise.min.js" "$PC/promise-polyfill/dist/"
    cp "$N/moment/min/moment-with-locales.min.js" "$PC/moment/min/"
    cp "$N/daterangepicker/daterangepicker.js" "$N/daterangepicker/daterangepicker.css" "$PC/bootstrap-daterangepicker/"
    cp -r "$N/summernote/dist/." "$PC/summernote/dist/"
    cp "$N/whatwg-fetch/fetch.js" "$PC/fetch/"
    cp "$N/event-source-polyfill/src/eventsource.min.js" "$PC/event-source-polyfill/src/"
    cp "$N/handlebars/dist/handlebars.min.js" "$PC/handlebars/"
    cp "$N/favico.js/favico.js" "$PC/favico.js/"
    cp "$N/dompurify/dist/purify.min.js" "$PC/DOMPurify/dist/"
    touch "$PC/.from-npm"
fi

HARNESS="$CACHE/harness-npm"
if [ ! -d "$HARNESS/node_modules/puppeteer-core" ]; then
    log "installing puppeteer-core into $HARNESS"
    mkdir -p "$HARNESS"
    [ -f "$HARNESS/package.json" ] || echo '{"private":true}' >"$HARNESS/package.json"
    (cd "$HARNESS" && npm install --no-audit --no-fund --loglevel=error puppeteer-core@24)
fi

# The 2FA login needs one line changed in the client (its pinned passport 0.6 regenerates
# the session in req.logIn and drops the "2FA required" flag the password step has just set;
# passport's own option keepSessionInfo keeps it). The change goes into a copy, never into
# WEBMAIL_DIR: everything but node_modules is copied, node_modules is a symlink.
FIX_DIR="$CACHE/src-2fa-fix"
FIX_FROM="        req.logIn(user, err => {"
FIX_TO="        req.logIn(user, { keepSessionInfo: true }, err => {"
rm -rf "$FIX_DIR"
mkdir -p "$FIX_DIR"
(cd "$WEBMAIL_DIR" && tar -c --exclude=./node_modules .) | tar -x -C "$FIX_DIR"
ln -s "$WEBMAIL_DIR/node_modules" "$FIX_DIR/node_modules"
FROM="$FIX_FROM" TO="$FIX_TO" python3 - "$FIX_DIR/lib/passport.js" <<'EOF'
import os, sys
p = sys.argv[1]
s = open(p).read()
a, b = os.environ["FROM"], os.environ["TO"]
assert s.count(a) == 1, "the line to fix is not in lib/passport.js exactly once"
open(p, "w").write(s.replace(a, b))
EOF

# ------------------------------------------------------------------ run
mkdir -p "$RESULTS"
rm -rf "$RESULTS/downloads" "$RESULTS/downloads-2" "$RESULTS/upload"
rm -f "$RESULTS"/*.png "$RESULTS"/*.log "$RESULTS"/*.jsonl "$RESULTS"/results.json "$RESULTS"/walkthrough.txt "$RESULTS"/client-fix.diff
diff -u "$WEBMAIL_DIR/lib/passport.js" "$FIX_DIR/lib/passport.js" >"$RESULTS/client-fix.diff" || true
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/eider-webmail.XXXXXX")"
PIDS=()

cleanup() {
    local rc=$?
    for ((i=${#PIDS[@]}-1; i>=0; i--)); do
        kill "${PIDS[$i]}" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        local alive=0
        for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    # the walk-through's Chromium, should the walk-through have been killed before closing it
    if [ -s "$RUN_DIR/browser.pid" ]; then
        kill "$(cat "$RUN_DIR/browser.pid")" 2>/dev/null || true
    fi
    rm -rf "$RUN_DIR"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r P_REDIS P_EIDER P_LMTP P_PROXY P_WEB P_WEBFIX < <(python3 - <<'EOF'
import socket
ss=[socket.socket() for _ in range(6)]
for s in ss: s.bind(('127.0.0.1',0))
print(' '.join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()
EOF
)

wait_port() { # name port seconds
    for _ in $(seq 1 $(( $3 * 10 ))); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "$1 did not start on port $2"; return 1
}

redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$RUN_DIR" >"$RESULTS/redis.log" 2>&1 &
PIDS+=($!)

# a copy, so a rebuild during the run does not swap the binary under us
cp "$EIDER_LOCAL_BIN" "$RUN_DIR/eider-local"
TOKEN=""
[ "$ACCESS" = 1 ] && TOKEN="walk-$(python3 -c 'import secrets;print(secrets.token_hex(12))')"
(
    export EIDER_DATA_DIR="$RUN_DIR/data" EIDER_LISTEN="127.0.0.1:$P_EIDER" EIDER_LMTP_LISTEN="127.0.0.1:$P_LMTP" \
        EIDER_DOMAIN=example.com EIDER_JANITOR_SECONDS=0 RUST_LOG="${RUST_LOG:-info}" NO_COLOR=1
    [ -n "$TOKEN" ] && export EIDER_ACCESS_TOKEN="$TOKEN"
    exec "$RUN_DIR/eider-local"
) >"$RESULTS/eider.log" 2>&1 &
PIDS+=($!)

PROXY_LISTEN="127.0.0.1:$P_PROXY" PROXY_TARGET="http://127.0.0.1:$P_EIDER" PROXY_LOG="$RESULTS/api-log.jsonl" \
    PROXY_ACCESS_TOKEN="$TOKEN" node "$HERE/proxy.mjs" >"$RESULTS/proxy.log" 2>&1 &
PIDS+=($!)

write_config() { # file port
    cat >"$1" <<EOF
[service]
    domain="example.com"
    domains=["example.com"]
[api]
    url="http://127.0.0.1:$P_PROXY"
    accessToken="$TOKEN"
[dbs]
    redis="redis://127.0.0.1:$P_REDIS/5"
[www]
    host="127.0.0.1"
    port=$2
    log="tiny"
[u2f]
    enabled=false
[log]
    level="info"
EOF
}
write_config "$RUN_DIR/webmail.toml" "$P_WEB"
write_config "$RUN_DIR/webmail-fix.toml" "$P_WEBFIX"

wait_port redis "$P_REDIS" 10
wait_port eider-local "$P_EIDER" 30
wait_port proxy "$P_PROXY" 10

# NODE_CONFIG_PATH: wild-config loads this file over config/default.toml (and a
# config/development.toml, if the checkout has one), so the checkout's config stays as it is.
(cd "$WEBMAIL_DIR" && NODE_CONFIG_PATH="$RUN_DIR/webmail.toml" exec node server.js) >"$RESULTS/webmail.log" 2>&1 &
PIDS+=($!)
# the copy with the one-line 2FA fix, used for the 2FA login step only
(cd "$FIX_DIR" && NODE_CONFIG_PATH="$RUN_DIR/webmail-fix.toml" exec node server.js) >"$RESULTS/webmail-fix.log" 2>&1 &
PIDS+=($!)
wait_port webmail "$P_WEB" 30
wait_port webmail-fix "$P_WEBFIX" 30

log "redis :$P_REDIS  eider-local :$P_EIDER (lmtp :$P_LMTP)  proxy :$P_PROXY  webmail http://127.0.0.1:$P_WEB  (2FA-fixed copy :$P_WEBFIX)  ($MODE)"
log "results in $RESULTS"

set +e
WEBMAIL_URL="http://127.0.0.1:$P_WEB" WEBMAIL_FIX_URL="http://127.0.0.1:$P_WEBFIX" PROXY_URL="http://127.0.0.1:$P_PROXY" API_LOG="$RESULTS/api-log.jsonl" \
    SHOTS_DIR="$RESULTS" LMTP_PORT="$P_LMTP" ACCESS_TOKEN="$TOKEN" EIDER_DOMAIN=example.com OUTBOX_DIR="$RUN_DIR/data/outbox" \
    BROWSER_PID_FILE="$RUN_DIR/browser.pid" HARNESS_NODE_MODULES="$HARNESS" CHROMIUM="${CHROMIUM:-$(command -v chromium)}" \
    timeout --kill-after=10 "$WALK_TIMEOUT" node "$HERE/walkthrough.mjs" 2>&1 | tee "$RESULTS/walkthrough.txt"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 124 ] && log "the walk-through timed out after ${WALK_TIMEOUT}s"
exit "$rc"
