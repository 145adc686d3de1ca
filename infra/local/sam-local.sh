#!/usr/bin/env bash
# `make sam-local`: the stack under `sam local`, in containers, until Ctrl-C.
#   1. (after `make deps`, which installs docker.io, and qemu-user-static for arm64 on another
#      CPU) starts dockerd when none answers;
#   2. builds the local stand-in for public.ecr.aws/lambda/provided:al2023-<arch> once;
#   3. `sam build` for SAM_LOCAL_ARCH (default arm64, what deploys) into .aws-sam/local-<arch>;
#   4. trains a quick model if none, starts the S3 server (moto) on the Docker bridge address
#      (containers reach it as host.docker.internal) and publishes the model to it;
#   5. `sam local start-lambda` (the model function, on the bridge address: the orchestrator's
#      container invokes it there) and `sam local start-api` on 127.0.0.1:3000, warm containers;
#   6. prints a working curl line, and stops everything it started (dockerd only if it started
#      it) on exit, removing any Lambda container SAM left behind.
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCH=${SAM_LOCAL_ARCH:-arm64}
# The ports infra/local/sam-env.json names (and S3 on lib.sh's 4566).
LAMBDA_PORT=3001
API_PORT=3000
BUILD_DIR=.aws-sam/local-$ARCH
# shellcheck source=infra/local/lib.sh
. infra/local/lib.sh

if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (log in $LOGS/dockerd.log)"
    # No userland proxy: a published port then refuses connections until the container listens,
    # so SAM's wait for a function's runtime API is real (under qemu it starts slowly).
    setsid dockerd --userland-proxy=false >"$LOGS/dockerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 600); do docker info >/dev/null 2>&1 && break; sleep 0.1; done
    docker info >/dev/null 2>&1 || { say "dockerd did not answer within 60 s"; tail -n 20 "$LOGS/dockerd.log" >&2; exit 1; }
fi
# SAM removes its warm containers when it stops, but once left one behind (a Lambda container
# still there after SAM exited): the teardown removes every Lambda container that was not
# there before this script, after SAM has stopped.
lambda_containers() { docker ps --all --quiet --filter label=sam.cli.container.type=lambda | sort; }
containers_before=$(lambda_containers)
sweep_sam_containers() {
    local left
    left=$(comm -13 <(echo "$containers_before") <(lambda_containers))
    [ -z "$left" ] && return 0
    say "removing Lambda containers SAM left: $(echo $left)"
    # shellcheck disable=SC2086 # one id per word
    docker rm --force $left >/dev/null
}
pids+=(sweep_sam_containers)
# The address of the default bridge on this host: what host.docker.internal resolves to in the
# containers (--add-host host.docker.internal:host-gateway).
# The engine reports no Gateway for it on some versions: then it is the subnet's first address.
BRIDGE=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}' \
    | python3 -c 'import ipaddress, sys
fields = sys.stdin.read().split()
print(fields[0] if len(fields) > 1 else ipaddress.ip_network(fields[0]).network_address + 1)')
require_free "$BRIDGE" "$S3_PORT" "$LAMBDA_PORT"
require_free 127.0.0.1 "$API_PORT"

infra/local/lambda-base-image.sh "$ARCH"
say "sam build ($ARCH) into $BUILD_DIR (log in $LOGS/sam-build.log)"
infra/local/sam-build.sh "$ARCH" "$BUILD_DIR" >"$LOGS/sam-build.log" 2>&1 \
    || { tail -n 30 "$LOGS/sam-build.log" >&2; exit 1; }

quick_model
s3_with_model "$BRIDGE"

# SAM CLI asks STS for the account id when it starts: the local server answers it, so nothing
# leaves this machine and there is no retrying against an unreachable endpoint.
export AWS_ENDPOINT_URL_STS="http://$BRIDGE:$S3_PORT" SAM_CLI_TELEMETRY=0
sam_local=(--template "$BUILD_DIR/template.yaml" --parameter-overrides "Architecture=$ARCH"
    --env-vars infra/local/sam-env.json --skip-pull-image --warm-containers EAGER --no-watch
    --add-host host.docker.internal:host-gateway --container-host 127.0.0.1)

say "starting sam local start-lambda (ModelFunction) on $BRIDGE:$LAMBDA_PORT"
setsid sam local start-lambda ModelFunction "${sam_local[@]}" --host "$BRIDGE" --port "$LAMBDA_PORT" \
    >"$LOGS/sam-lambda.log" 2>&1 &
pids+=($!)
wait_port "$BRIDGE" "$LAMBDA_PORT" "$!" sam-lambda 300

say "starting sam local start-api on 127.0.0.1:$API_PORT"
setsid sam local start-api "${sam_local[@]}" --host 127.0.0.1 --port "$API_PORT" \
    >"$LOGS/sam-api.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$API_PORT" "$!" sam-api 300

url="http://127.0.0.1:$API_PORT/v1/api"
say "warming up"
curl -s --max-time 300 "$url/health" >/dev/null || true
cat >&2 <<MSG

The stack is up under sam local ($ARCH; logs in $LOGS/sam-*.log). Try:

  curl -s -X POST $url/predict -H 'content-type: application/json' -d '{"date": "2018-01-01", "store": 1, "item": 1}'
  curl -s $url/health
  curl -s "$url/forecast?store=1&item=1&start=2018-01-01&days=7"
  sam local invoke ModelFunction --event data/events/model-ping.json --template $BUILD_DIR/template.yaml \\
      --parameter-overrides Architecture=$ARCH --env-vars infra/local/sam-env.json --skip-pull-image \\
      --add-host host.docker.internal:host-gateway

Press Ctrl-C to stop.
MSG
wait
