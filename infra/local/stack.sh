#!/usr/bin/env bash
# `make dev`: the whole stack on 127.0.0.1, until Ctrl-C.
#   1. generates data/generated/train.csv if absent, trains a quick model if none;
#   2. starts a real S3 server (moto) on 127.0.0.1:4566 and publishes the model to it;
#   3. starts `cargo lambda watch` on 127.0.0.1:9000 serving the model and orchestrator;
#   4. prints a working curl line, and stops everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

LAMBDA_PORT=9000
# shellcheck source=infra/local/lib.sh
. infra/local/lib.sh
require_free 127.0.0.1 "$S3_PORT" "$LAMBDA_PORT"
quick_model
s3_with_model 127.0.0.1

say "starting cargo lambda watch on 127.0.0.1:$LAMBDA_PORT"
setsid cargo lambda watch --ignore-changes -A 127.0.0.1 -P "$LAMBDA_PORT" \
    --env-file infra/local/watch.env >"$LOGS/watch.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$LAMBDA_PORT" "$!" watch 120

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
