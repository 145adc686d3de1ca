#!/usr/bin/env bash
# smoke.sh STACK: calls the deployed API (health, one prediction, one 422) and fails on any
# unexpected answer. Skips with a message when no AWS credentials are configured.
#
# When the stack's ApiAuth is IAM every request is signed with AWS Signature Version 4 (curl
# --aws-sigv4, service execute-api) with the caller's own credentials from the standard chain;
# the caller needs execute-api:Invoke on the API. With JWT, SMOKE_BEARER_TOKEN is sent as
# `Authorization: Bearer ...`. SMOKE_API_URL and SMOKE_API_AUTH stand in for the stack's outputs
# (tests/tests/smoke_sigv4.rs runs this script against a local SigV4-checking endpoint).
set -euo pipefail
cd "$(dirname "$0")"
stack=$1
if ! ./has-credentials.sh; then
    echo "smoke: skipped, no AWS credentials configured (set AWS_PROFILE or AWS_ACCESS_KEY_ID)"
    exit 0
fi
url=${SMOKE_API_URL:-$(./stack-output.sh "$stack" ApiUrl)}
auth=${SMOKE_API_AUTH:-$(./stack-output.sh "$stack" ApiAuth)}

auth_args=()
secrets=$(mktemp)
chmod 600 "$secrets"
trap 'rm -f "$secrets"' EXIT
case "$auth" in
IAM)
    # The region is the API's own (https://<id>.execute-api.<region>.amazonaws.com).
    region=${SMOKE_REGION:-}
    if [ -z "$region" ] && [[ "$url" =~ \.execute-api\.([a-z0-9-]+)\. ]]; then
        region=${BASH_REMATCH[1]}
    fi
    region=${region:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}
    [ -n "$region" ] || { echo "smoke: cannot tell the API's region" >&2; exit 1; }
    # The credentials go to curl through a private config file, never on its command line.
    python3 - "$secrets" <<'PY'
import sys, boto3
credentials = boto3.Session().get_credentials().get_frozen_credentials()
with open(sys.argv[1], "w") as config:
    config.write(f'user = "{credentials.access_key}:{credentials.secret_key}"\n')
    if credentials.token:
        config.write(f'header = "x-amz-security-token: {credentials.token}"\n')
PY
    auth_args=(--aws-sigv4 "aws:amz:$region:execute-api" --config "$secrets")
    echo "smoke: signing with SigV4 (execute-api, $region)"
    ;;
JWT)
    [ -n "${SMOKE_BEARER_TOKEN:-}" ] || {
        echo "smoke: the API requires a JWT; set SMOKE_BEARER_TOKEN" >&2
        exit 1
    }
    printf 'header = "authorization: Bearer %s"\n' "$SMOKE_BEARER_TOKEN" >"$secrets"
    auth_args=(--config "$secrets")
    ;;
NONE) ;;
*) echo "smoke: unknown ApiAuth $auth" >&2; exit 1 ;;
esac

check() { # check NAME EXPECTED_STATUS CURL_ARGS...
    local name=$1 expected=$2; shift 2
    local status body
    body=$(mktemp)
    status=$(curl -s -o "$body" -w '%{http_code}' --max-time 30 ${auth_args[@]+"${auth_args[@]}"} "$@")
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
