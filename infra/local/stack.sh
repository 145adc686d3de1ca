#!/usr/bin/env bash
# `make dev`: the whole stack on 127.0.0.1, until Ctrl-C.
#   1. generates data/generated/train.csv if absent, trains a quick model if none;
#   2. starts a real S3 server (moto) on 127.0.0.1:4566 and publishes the model to it;
#   3. starts `cargo lambda watch` on 127.0.0.1:9000 serving the model and orchestrator;
#   4. prints a working curl line, and stops everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

S3_PORT=4566
LAMBDA_PORT=9000
BUCKET=demand-models
ROUNDS=${ROUNDS:-200}
DATA=data/generated
MODEL_DIR=data/models/demand
LOGS=.local
mkdir -p "$LOGS"

say() { printf '==> %s\n' "$*" >&2; }
pids=()
stop_all() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    say "stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # wait_port PORT PID NAME SECONDS
    for _ in $(seq $(( $4 * 10 ))); do
        if ! port_free "$1"; then return 0; fi
        kill -0 "$2" 2>/dev/null || { say "$3 exited; see $LOGS/$3.log"; tail -n 20 "$LOGS/$3.log" >&2; exit 1; }
        sleep 0.1
    done
    say "$3 did not listen on 127.0.0.1:$1 within $4 s"; exit 1
}
for port in $S3_PORT $LAMBDA_PORT; do
    port_free "$port" || { say "127.0.0.1:$port is in use; stop what runs there first"; exit 1; }
done

export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1
# One workspace build serves the trainer here and both functions under `cargo lambda watch`
# (which runs `cargo run --bin <function>` from the workspace root, with the same features).
say "building the workspace"
cargo build --quiet --workspace --bins
demand() { target/debug/demand "$@"; }

if [ ! -f "$DATA/train.csv" ]; then
    say "generating $DATA/train.csv"
    demand generate --out "$DATA"
fi
if [ ! -f "$MODEL_DIR/manifest.json" ]; then
    say "training a quick model ($ROUNDS rounds) into $MODEL_DIR"
    demand train --data "$DATA/train.csv" --out "$MODEL_DIR" --version local --rounds "$ROUNDS"
fi

say "starting S3 server on 127.0.0.1:$S3_PORT"
setsid moto_server -H 127.0.0.1 -p "$S3_PORT" >"$LOGS/moto.log" 2>&1 &
pids+=($!)
wait_port "$S3_PORT" "$!" moto 60
AWS_ENDPOINT_URL_S3="http://127.0.0.1:$S3_PORT" demand publish \
    --model-dir "$MODEL_DIR" --bucket "$BUCKET" --create-bucket

say "starting cargo lambda watch on 127.0.0.1:$LAMBDA_PORT"
setsid cargo lambda watch --ignore-changes -A 127.0.0.1 -P "$LAMBDA_PORT" \
    --env-file infra/local/watch.env >"$LOGS/watch.log" 2>&1 &
pids+=($!)
wait_port "$LAMBDA_PORT" "$!" watch 120

url="http://127.0.0.1:$LAMBDA_PORT/lambda-url/orchestrator/v1/api"
say "warming up"
curl -s --max-time 300 "$url/health" >/dev/null || true
cat >&2 <<MSG

The stack is up (logs in $LOGS/). Try:

  curl -s -X POST $url/predict -H 'content-type: application/json' -d '{"date": "2018-01-01", "store": 1, "item": 1}'
  curl -s $url/health
  curl -s -X POST $url/predict/batch -H 'content-type: application/json' -d '{"instances": [{"date": "2018-01-01", "store": 1, "item": 1}, {"date": "2018-01-02", "store": 2, "item": 3}]}'
  curl -s "$url/forecast?store=1&item=1&start=2018-01-01&days=7"
  curl -s $url/openapi.json

Press Ctrl-C to stop.
MSG
wait
