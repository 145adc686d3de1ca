#!/usr/bin/env bash
# The Python peer stack, exactly as the original service ran it, on 127.0.0.1:
#   serve.sh mlflow MODEL_URI PORT            MLflow's scoring server (exec, foreground)
#   serve.sh orchestrator MLFLOW_URL PORT     the FastAPI orchestrator (exec, foreground)
#   serve.sh all MODEL_URI MLFLOW_PORT PORT   both, until Ctrl-C or SIGTERM
# MODEL_URI is s3://bucket/prefix as printed by to_mlflow.py; S3_ENDPOINT (default
# http://127.0.0.1:4566) is the S3 server it lives on. Needs setup.sh's venv.
#
# `mlflow models serve` runs with its defaults on purpose (the peer is not tuned): one uvicorn
# worker process (--workers / MLFLOW_MODELS_WORKERS unset), request timeout 60 s. It is two
# processes: the mlflow CLI, which downloads the model and waits, and `uvicorn
# mlflow.pyfunc.scoring_server.app:app`, which serves it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv="$(cd "$here/../.." && pwd)/.local/bench-venv"
[ -x "$venv/bin/mlflow" ] || { echo "serve.sh: run $here/setup.sh first" >&2; exit 1; }
export PATH="$venv/bin:$PATH"

# MLflow's S3 artifact repo is plain boto3: the endpoint comes from MLFLOW_S3_ENDPOINT_URL
# (not AWS_ENDPOINT_URL_S3), and path-style addressing because the bucket is not a hostname.
export MLFLOW_S3_ENDPOINT_URL=${S3_ENDPOINT:-http://127.0.0.1:4566}
export MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE=path
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
# No tracking server exists; keep mlflow from creating ./mlruns or phoning anything.
export MLFLOW_TRACKING_URI=${MLFLOW_TRACKING_URI:-file:///tmp/peer-mlruns}
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

case "${1:-}" in
mlflow)
    exec mlflow models serve -m "$2" --env-manager local -h 127.0.0.1 -p "$3"
    ;;
orchestrator)
    exec python "$here/orchestrator.py" --host 127.0.0.1 --port "$3" --mlflow-url "$2"
    ;;
all)
    setsid "$0" mlflow "$2" "$3" & m=$!
    setsid "$0" orchestrator "http://127.0.0.1:$3" "$4" & o=$!
    trap 'kill -TERM -- -$m -$o 2>/dev/null || true' EXIT
    trap 'exit 130' INT TERM
    echo "orchestrator: http://127.0.0.1:$4/v1/api/predict  mlflow: http://127.0.0.1:$3/invocations" >&2
    wait
    ;;
*)
    sed -n '2,7p' "$0" >&2; exit 2
    ;;
esac
