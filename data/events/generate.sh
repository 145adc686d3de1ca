#!/usr/bin/env bash
# Regenerates the API Gateway HTTP API (payload 2.0) events the orchestrator tests replay.
# `sam local generate-event` needs no Docker. The forecast events get their query string
# set afterwards (the generator has no option for it).
set -euo pipefail
cd "$(dirname "$0")"

event() { # <file> <method> <path> [body] [stage]
    sam local generate-event apigateway http-api-proxy \
        --method "$2" --path "${3#/}" --body "${4:-}" --stage "${5:-\$default}" >"$1"
}
with_query() { # <file> <query>
    python3 - "$1" "$2" <<'PY'
import json, sys, urllib.parse
path, query = sys.argv[1], sys.argv[2]
with open(path) as f:
    event = json.load(f)
event["rawQueryString"] = query
event["queryStringParameters"] = {
    k: ",".join(v) for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()
}
with open(path, "w") as f:
    json.dump(event, f, indent=2)
    f.write("\n")
PY
}

event predict.json POST /v1/api/predict '{"date": "2018-01-01", "store": 1, "item": 1}'
event predict-malformed.json POST /v1/api/predict '{"date": "2018-01-01", "store": '
event predict-invalid.json POST /v1/api/predict '{"date": "2018-02-30", "store": 0, "item": 1}'
event predict-wrong-method.json GET /v1/api/predict
event batch.json POST /v1/api/predict/batch \
    '{"instances": [{"date": "2018-01-01", "store": 1, "item": 1}, {"date": "2018-01-02", "store": 2, "item": 5}, {"date": "2018-03-31", "store": 10, "item": 50}]}'
event forecast.json GET /v1/api/forecast
with_query forecast.json 'store=3&item=7&start=2018-01-01&days=7'
event forecast-invalid.json GET /v1/api/forecast
with_query forecast-invalid.json 'store=3&start=2018-01-01&days=400'
event health.json GET /v1/api/health
event health-named-stage.json GET /v1/api/health '' prod
event openapi.json GET /v1/api/openapi.json
event not-found.json GET /v1/api/nope
