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

with_authorizer() { # <file> <iam|jwt|none>: the caller API Gateway's authorizer vouched for
    python3 - "$1" "$2" <<'PY'
import json, sys
path, kind = sys.argv[1], sys.argv[2]
with open(path) as f:
    event = json.load(f)
context = event["requestContext"]
if kind == "none":
    # What the function gets when no authorizer ran: a route without one, or a direct invoke.
    context.pop("authorizer", None)
elif kind == "iam":
    # A SigV4-signed request: API Gateway passes its headers on, signature included, which
    # the function must never log.
    event["headers"]["authorization"] = (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20200312/us-east-1/execute-api/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")
    event["headers"]["x-amz-date"] = "20200312T190358Z"
    context["authorizer"] = {"iam": {
        "accessKey": "AKIAIOSFODNN7EXAMPLE", "accountId": "123456789012",
        "callerId": "AROAEXAMPLEROLEID:forecaster", "cognitoIdentity": None,
        "principalOrgId": None, "userArn": "arn:aws:sts::123456789012:assumed-role/forecast-client/forecaster",
        "userId": "AROAEXAMPLEROLEID:forecaster"}}
elif kind == "jwt":
    # The generator's JWT context lacks a subject; a validated token carries its issuer's claims.
    # The header holds the token itself, which the function must never log.
    context["authorizer"]["jwt"]["claims"].update({
        "sub": "5f1c2b9e-retailer-client", "iss": "https://issuer.example.com",
        "aud": "forecast-api", "exp": "1583352238"})
    event["headers"]["authorization"] = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiI1ZjFjMmI5ZSJ9.c2lnbmF0dXJl"
with open(path, "w") as f:
    json.dump(event, f, indent=2)
    f.write("\n")
PY
}

event predict.json POST /v1/api/predict '{"date": "2018-01-01", "store": 1, "item": 1}'
for kind in iam jwt none; do
    event "predict-caller-$kind.json" POST /v1/api/predict '{"date": "2018-01-01", "store": 1, "item": 1}'
    with_authorizer "predict-caller-$kind.json" "$kind"
done
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
