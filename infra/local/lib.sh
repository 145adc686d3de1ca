# Shared by `make dev` (stack.sh) and `make sam-local` (sam-local.sh): where things go, messages,
# the processes a script started and their clean-up, port waits, the quick model and the local
# S3 server. Sourced after `cd` to the repository root.

S3_PORT=4566
BUCKET=demand-models
ROUNDS=${ROUNDS:-200}
DATA=data/generated
MODEL_DIR=data/models/demand
LOGS=.local
mkdir -p "$LOGS"

say() { printf '==> %s\n' "$*" >&2; }

# Process groups started with setsid, stopped last first on exit; an entry that is not a pid
# names a function to call at that point of the teardown (sam-local.sh sweeps the containers
# SAM left, after SAM stops and before the dockerd it may have started goes).
pids=()
stop_all() {
    trap - EXIT INT TERM
    local i pid
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid=${pids[$i]}
        if ! [[ $pid =~ ^[0-9]+$ ]]; then
            "$pid" || true
            continue
        fi
        # A minute's grace: SAM stops and removes its warm containers one by one on SIGTERM.
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 600); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    say "stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() { # wait_port HOST PORT PID NAME SECONDS
    for _ in $(seq $(($5 * 10))); do
        if ! port_free "$1" "$2"; then return 0; fi
        kill -0 "$3" 2>/dev/null || { say "$4 exited; see $LOGS/$4.log"; tail -n 20 "$LOGS/$4.log" >&2; exit 1; }
        sleep 0.1
    done
    say "$4 did not listen on $1:$2 within $5 s"
    exit 1
}
require_free() { # require_free HOST PORT...
    local host=$1 port
    shift
    for port in "$@"; do
        port_free "$host" "$port" || { say "$host:$port is in use; stop what runs there first"; exit 1; }
    done
}

# The workspace's build (one build serves the trainer here and the functions under `cargo
# lambda watch`, which runs `cargo run --bin <function>` with the same features), then the
# generated history and a quick model unless they exist.
quick_model() {
    export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    say "building the workspace"
    cargo build --quiet --workspace --bins
    if [ ! -f "$DATA/train.csv" ]; then
        say "generating $DATA/train.csv"
        demand generate --out "$DATA"
    fi
    if [ ! -f "$MODEL_DIR/manifest.json" ]; then
        say "training a quick model ($ROUNDS rounds) into $MODEL_DIR"
        demand train --data "$DATA/train.csv" --out "$MODEL_DIR" --version local --rounds "$ROUNDS"
    fi
}
demand() { target/debug/demand "$@"; }

# The S3 server (moto) on HOST:S3_PORT, with the model published to BUCKET.
s3_with_model() { # s3_with_model HOST
    say "starting S3 server on $1:$S3_PORT"
    setsid moto_server -H "$1" -p "$S3_PORT" >"$LOGS/moto.log" 2>&1 &
    pids+=($!)
    wait_port "$1" "$S3_PORT" "$!" moto 60
    AWS_ENDPOINT_URL_S3="http://$1:$S3_PORT" demand publish \
        --model-dir "$MODEL_DIR" --bucket "$BUCKET" --create-bucket
}
