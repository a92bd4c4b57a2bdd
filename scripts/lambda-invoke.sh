#!/usr/bin/env bash
# Proves the documented cargo-lambda flow (infra/README.md, "Run a function locally"): for each
# function with a sample event in infra/events/, starts `cargo lambda watch -p <function>` on a
# free loopback port over a moto server, invokes the function with `cargo lambda invoke` and
# checks its answer. Not part of scripts/test.sh (it builds every function once, several
# minutes); run it after changing a function's start-up or the events.
#
#   scripts/lambda-invoke.sh [function ...]      default: every function with a sample event
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

# function -> sample event, and the status its answer must have: the WebSocket connect event
# names a placeholder user, so the function's own 404 UserNotFound is its right answer.
declare -A events=(
    [eider-users]=infra/events/users-create.json
    [eider-addresses]=infra/events/addresses-list.json
    [eider-auth]=infra/events/auth-authenticate.json
    [eider-ws]=infra/events/ws-connect.json
)
declare -A expected=([eider-ws]=404)
functions=("$@")
[ ${#functions[@]} -gt 0 ] || functions=(eider-users eider-addresses eider-auth eider-ws)

moto_port=$(free_port)
"$venv/bin/python" scripts/moto_serial.py -H 127.0.0.1 -p "$moto_port" >/tmp/eider-lambda-moto.log 2>&1 &
moto_pid=$!
watch_pid=
cleanup() {
    [ -z "$watch_pid" ] || kill -- -"$watch_pid" 2>/dev/null || kill "$watch_pid" 2>/dev/null || true
    kill -KILL "$moto_pid" 2>/dev/null || true
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
boto3.client("s3", **kw).create_bucket(Bucket=bucket)
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
    print(json.loads(sys.stdin.read()).get("statusCode", "none"))
except Exception:
    print("unreadable")')
    if [ "$status" = "${expected[$function]:-200}" ]; then
        echo "$function: ok ($event answered $status, $((SECONDS - started)) s incl. its build)"
    else
        echo "$function: FAILED ($status): $answer"; failed=1
    fi
done
exit $failed
