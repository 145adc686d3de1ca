#!/usr/bin/env bash
# smoke.sh STACK: calls the deployed API (health, one prediction, one 422) and fails on any
# unexpected answer. Skips with a message when no AWS credentials are configured.
set -euo pipefail
cd "$(dirname "$0")"
stack=$1
if ! ./has-credentials.sh; then
    echo "smoke: skipped, no AWS credentials configured (set AWS_PROFILE or AWS_ACCESS_KEY_ID)"
    exit 0
fi
url=$(./stack-output.sh "$stack" ApiUrl)
check() { # check NAME EXPECTED_STATUS CURL_ARGS...
    local name=$1 expected=$2; shift 2
    local status body
    body=$(mktemp)
    status=$(curl -s -o "$body" -w '%{http_code}' --max-time 30 "$@")
    echo "smoke: $name -> $status $(head -c 200 "$body")"
    rm -f "$body"
    [ "$status" = "$expected" ] || { echo "smoke: expected $expected" >&2; exit 1; }
}
check health 200 "$url/v1/api/health"
check predict 200 -X POST "$url/v1/api/predict" -H 'content-type: application/json' \
    -d '{"date": "2018-01-01", "store": 1, "item": 1}'
check validation 422 -X POST "$url/v1/api/predict" -H 'content-type: application/json' \
    -d '{"date": "2018-01-01", "store": 0, "item": 1}'
echo "smoke: $url is serving"
