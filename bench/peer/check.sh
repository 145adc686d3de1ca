#!/usr/bin/env bash
# End-to-end self check of the Python peer stack, loopback only:
#   check.sh MODEL_DIR      (a directory holding model.txt, e.g. from `demand train`)
# moto S3 -> to_mlflow.py upload -> `mlflow models serve` from s3:// -> FastAPI orchestrator.
# Checks one /v1/api/predict answer equals lightgbm's own prediction, and that a 45,000-row
# dataframe_split to MLflow returns 45,000 predictions equal to lightgbm's. Reports MLflow's
# time from process start to first prediction and its RSS. Stops all it started, always.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
model_txt="$(cd "${1:?usage: check.sh MODEL_DIR}" && pwd)/model.txt"
[ -f "$model_txt" ] || { echo "check.sh: no $model_txt" >&2; exit 2; }
command -v moto_server >/dev/null || { echo "check.sh: moto_server not on PATH (make deps)" >&2; exit 2; }

venv=$("$here/setup.sh")
py="$venv/bin/python"
work=$(mktemp -d /tmp/peer-check.XXXXXX)
# mlflow downloads the model into a tempdir it never removes; keep that inside $work.
mkdir -p "$work/tmp"
export TMPDIR="$work/tmp" MLFLOW_TRACKING_URI="file://$work/mlruns"

say() { printf '==> %s\n' "$*" >&2; }
pids=() ports=()
stop_all() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    for port in "${ports[@]}"; do
        if ! port_free "$port"; then say "127.0.0.1:$port still listening"; rc=1; fi
    done
    if [ "$rc" = 0 ]; then rm -rf "$work"; else say "logs kept in $work"; fi
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # wait_port PORT PID NAME SECONDS
    for _ in $(seq $(( $4 * 10 ))); do
        port_free "$1" || return 0
        kill -0 "$2" 2>/dev/null || { say "$3 exited"; tail -n 20 "$work/$3.log" >&2; exit 1; }
        sleep 0.1
    done
    say "$3 did not listen on 127.0.0.1:$1 within $4 s"; exit 1
}
start() { # start NAME PORT CMD...: own session, so stop_all can kill the whole group
    local name=$1 port=$2; shift 2
    setsid "$@" >"$work/$name.log" 2>&1 &
    pids+=($!) ports+=("$port")
}

s3_port=$(free_port); start moto "$s3_port" moto_server -H 127.0.0.1 -p "$s3_port"
wait_port "$s3_port" "${pids[-1]}" moto 60
export S3_ENDPOINT="http://127.0.0.1:$s3_port"
uri=$("$py" "$here/to_mlflow.py" --model-txt "$model_txt" --bucket peer-models \
    --prefix models/demand/check --endpoint "$S3_ENDPOINT")
say "uploaded $uri"

ml_port=$(free_port); t0=$(date +%s.%N)
start mlflow "$ml_port" "$here/serve.sh" mlflow "$uri" "$ml_port"
ml_pid=${pids[-1]}
# Ready = the first prediction answered, not just the port open.
"$py" - "$ml_port" "$ml_pid" "$t0" <<'EOF'
import os, sys, time, httpx
port, pid, t0 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
body = {"dataframe_split": {"columns": ["store", "item", "month", "day", "year"], "data": [[1, 1, 1, 0, 2018]]}}
while time.time() - t0 < 180:
    try:
        if httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=10).status_code == 200:
            print(f"==> mlflow: first prediction {time.time() - t0:.1f} s after process start", file=sys.stderr)
            sys.exit(0)
    except httpx.HTTPError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("mlflow exited")
    time.sleep(0.1)
sys.exit("mlflow gave no prediction within 180 s")
EOF
say "mlflow processes (RSS KiB):"
ps -o pid=,rss=,args= --sid "$ml_pid" | cut -c1-120 >&2

or_port=$(free_port)
start orchestrator "$or_port" "$here/serve.sh" orchestrator "http://127.0.0.1:$ml_port" "$or_port"
wait_port "$or_port" "${pids[-1]}" orchestrator 60

"$py" - "$model_txt" "$or_port" "$ml_port" <<'EOF'
import sys, datetime, httpx, lightgbm, numpy as np
model_txt, or_port, ml_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
booster = lightgbm.Booster(model_file=model_txt)
base = f"http://127.0.0.1:{or_port}/v1/api"

assert httpx.get(f"{base}/health").json() == {"status": "healthy"}
r = httpx.post(f"{base}/predict", json={"date": "2018-01-01", "store": 2, "item": 3})
r.raise_for_status()
want = float(booster.predict([[2, 3, 1, 0, 2018]])[0])
got = r.json()["sales"]
assert got == want, f"orchestrator said {got!r}, lightgbm {want!r}"
print(f"==> predict 2018-01-01 store 2 item 3: {got!r} == lightgbm", file=sys.stderr)

# 10 stores x 50 items x 90 days of 2018 = 45,000 rows, straight to MLflow.
days = [datetime.date(2018, 1, 1) + datetime.timedelta(n) for n in range(90)]
rows = [[s, i, d.month, d.weekday(), d.year] for s in range(1, 11) for i in range(1, 51) for d in days]
body = {"dataframe_split": {"columns": ["store", "item", "month", "day", "year"], "data": rows}}
r = httpx.post(f"http://127.0.0.1:{ml_port}/invocations", json=body, timeout=120)
r.raise_for_status()
preds = r.json()["predictions"]
assert len(preds) == 45_000, len(preds)
diff = np.abs(np.array(preds) - booster.predict(np.array(rows, dtype=np.float64))).max()
assert diff == 0, f"45,000 rows: max |mlflow - lightgbm| = {diff}"
print(f"==> 45,000-row dataframe_split: {len(preds)} predictions, equal to lightgbm", file=sys.stderr)
EOF
say "mlflow processes after the 45,000-row request (RSS KiB):"
ps -o pid=,rss=,args= --sid "$ml_pid" | cut -c1-120 >&2
say "check passed"
