#!/usr/bin/env bash
# Proves the documented cargo-lambda flow (infra/README.md, "Run a function locally"): for each
# function, starts `cargo lambda watch -p <function>` on a free loopback port over a moto
# server, invokes the function with `cargo lambda invoke` and a sample event (infra/events/,
# or a GET of one of its routes) and checks its answer. Not part of scripts/test.sh (it builds
# every function once in its own feature set, about a minute each); run it after changing a
# function's start-up or the events. The test command runs the same binaries under the same
# emulator through tests/tests/cloud_shape.rs. Left out: eider-updates (its answer is a
# stream; cloud_shape.rs reads it) and eider-webhooks (it needs its queue).
#
#   scripts/lambda-invoke.sh [function ...]      default: every function but those two
#
# cargo-lambda and moto come from the test tools' virtualenv (scripts/test.sh creates it;
# cargo-lambda is installed there on first use). `cargo lambda watch` runs
# `cargo run --bin <function>`, which only finds binaries of the workspace's default members
# (the local server), so each function gets its own emulator started with `-p <package>`
# (cargo-lambda issue #670).
set -euo pipefail
cd "$(dirname "$0")/.."
tools=${EIDER_TOOLS_DIR:-$HOME/.cache/eider}
venv=$tools/venv
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$tools/target}
[ -x "$venv/bin/moto_server" ] || { echo "run scripts/test.sh once first (it installs moto)"; exit 2; }
[ -x "$venv/bin/cargo-lambda" ] || "$venv/bin/python" -m pip install --quiet cargo-lambda==1.9.2
export PATH=$venv/bin:$PATH

free_port() { "$venv/bin/python" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# function -> sample event, and what its answer must be: an HTTP status for the HTTP functions
# (the WebSocket connect event and the GETs name a placeholder user, so their own 404
# UserNotFound is the right answer), "handled" for the event-driven ones (an answer that is
# not a Lambda error). The HTTP groups without a sample event get a GET of one of their routes,
# made from the users listing's event.
scratch=$(mktemp -d)
get_event() {
    "$venv/bin/python" - "$1" "$scratch/$2.json" <<'PY'
import json, sys
path, out = sys.argv[1], sys.argv[2]
event = json.load(open("infra/events/users-list.json"))
event["rawPath"] = event["requestContext"]["http"]["path"] = path
event["routeKey"] = "GET " + path
event["rawQueryString"] = ""
event.pop("queryStringParameters", None)
json.dump(event, open(out, "w"))
PY
    echo "$scratch/$2.json"
}
placeholder=/users/6620f1a2b3c4d5e6f7a8b9c0
declare -A events=(
    [eider-users]=infra/events/users-create.json
    [eider-addresses]=infra/events/addresses-list.json
    [eider-auth]=infra/events/auth-authenticate.json
    [eider-ws]=infra/events/ws-connect.json
    [eider-mailboxes]=$(get_event "$placeholder/mailboxes" mailboxes)
    [eider-messages]=$(get_event "$placeholder/search" messages)
    [eider-archive]=$(get_event "$placeholder/archived/messages" archive)
    [eider-filters]=$(get_event "$placeholder/filters" filters)
    [eider-autoreply]=$(get_event "$placeholder/autoreply" autoreply)
    [eider-submit]=$(get_event "$placeholder/storage" submit)
    [eider-ingest]=infra/events/ses-receipt.json
    [eider-stream-bridge]=infra/events/stream-bridge-journal.json
    [eider-janitor]=infra/events/janitor-schedule.json
)
declare -A expected=(
    [eider-ws]=404 [eider-mailboxes]=404 [eider-messages]=404 [eider-archive]=404
    [eider-filters]=404 [eider-autoreply]=404 [eider-submit]=404
    [eider-ingest]=handled [eider-stream-bridge]=handled [eider-indexer]=handled [eider-janitor]=handled
)
functions=("$@")
[ ${#functions[@]} -gt 0 ] || functions=(eider-users eider-addresses eider-auth eider-ws
    eider-mailboxes eider-messages eider-archive eider-filters eider-autoreply eider-submit
    eider-ingest eider-stream-bridge eider-indexer eider-janitor)

moto_port=$(free_port)
"$venv/bin/python" scripts/moto_serial.py -H 127.0.0.1 -p "$moto_port" >/tmp/eider-lambda-moto.log 2>&1 &
moto_pid=$!
watch_pid=
cleanup() {
    [ -z "$watch_pid" ] || kill -- -"$watch_pid" 2>/dev/null || kill "$watch_pid" 2>/dev/null || true
    kill -KILL "$moto_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
sleep 1
table=eider-lambda-$RANDOM
bucket=eider-lambda-$RANDOM
"$venv/bin/python" - "$moto_port" "$table" "$bucket" <<'EOF'
import sys, boto3
port, table, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
url = f"http://127.0.0.1:{port}"
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
ddb = boto3.client("dynamodb", **kw)
attrs = [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")]
gsi = lambda name, pk, sk: {"IndexName": name, "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}, {"AttributeName": sk, "KeyType": "RANGE"}], "Projection": {"ProjectionType": "ALL"}}
ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=attrs,
                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                 GlobalSecondaryIndexes=[gsi("gsi1", "gsi1pk", "gsi1sk"), gsi("gsi2", "gsi2pk", "gsi2sk")])
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket=bucket)
# The raw message the SES receipt event names, where the receipt rule would have written it.
s3.put_object(Bucket=bucket, Key="incoming/o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
              Body=open("infra/events/ses-receipt.eml", "rb").read())
EOF

failed=0
for function in "${functions[@]}"; do
    event=${events[$function]:-}
    [ -n "$event" ] || { echo "$function: no sample event"; failed=1; continue; }
    port=$(free_port)
    started=$SECONDS
    # Built first, so the emulator's `cargo run` starts it at once.
    cargo build --quiet -p "$function"
    setsid cargo lambda watch -p "$function" -A 127.0.0.1 -P "$port" --quiet \
        --env-var "EIDER_TABLE=$table,EIDER_BUCKET=$bucket,EIDER_DOMAIN=example.com,RUST_LOG=warn" \
        --env-var "AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port,AWS_REGION=us-east-1" \
        --env-var AWS_ACCESS_KEY_ID=test,AWS_SECRET_ACCESS_KEY=test \
        --env-var EIDER_WS_ENDPOINT=http://127.0.0.1:9/live \
        >"/tmp/eider-lambda-watch-$function.log" 2>&1 &
    watch_pid=$!
    # The emulator answers once it listens; the first invoke builds the function.
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        sleep 0.2
    done
    answer=$(cargo lambda invoke "$function" --invoke-address 127.0.0.1 --invoke-port "$port" \
        --data-file "$event" 2>&1) || true
    kill -- -"$watch_pid" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
    watch_pid=
    status=$(printf '%s' "$answer" | "$venv/bin/python" -c 'import json,sys
try:
    answer = json.loads(sys.stdin.read())
except Exception:
    print("unreadable"); sys.exit()
if isinstance(answer, dict) and "statusCode" in answer:
    print(answer["statusCode"])
elif isinstance(answer, dict) and "errorType" in answer:
    print("error " + answer["errorType"])
else:
    print("handled")')
    if [ "$status" = "${expected[$function]:-200}" ]; then
        echo "$function: ok ($event answered $status, $((SECONDS - started)) s incl. its build)"
    else
        echo "$function: FAILED ($status): $answer"; failed=1
    fi
done
exit $failed
