"""Side-by-side benchmark of our Rust stack against the Python peer stack; writes a markdown report.

The driver behind `make bench`. Run it with the bench venv's python (bench/peer/setup.sh makes
.local/bench-venv with mlflow, lightgbm, fastapi, uvicorn); it uses only that venv's packages
and the standard library:

    .local/bench-venv/bin/python bench/run.py \\
        --model-bin target/release/model --orchestrator-bin target/release/orchestrator \\
        --demand-bin target/release/demand --model-dir data/models/demand \\
        --out BENCHMARKS.md [--quick] [--oha ~/.cargo/bin/oha] [--model-zip PATH] \\
        [--train-rounds 3000] [--repeats 3]

`make bench` is expected to build the release binaries and run
`cargo bench -p model --bench handler` first (optionally with
MODEL_BENCH_MODEL_DIR=<--model-dir> so criterion times the same booster), then this script.
`--quick` (1 repetition, short load tests, training skipped unless --train-rounds is given)
is a smoke run of one to two minutes. A full run takes about 5 minutes plus the training
figure: 3 x (demand train + Python lightgbm), about 20 minutes at 3000 rounds on 2 cores
(`--train-rounds 0` skips it). Work files and logs go to /tmp/bench-*, removed after a
clean run (kept with --keep or when something failed).

What runs, all on 127.0.0.1, all stopped at exit (process groups; try/finally; atexit; the
ports are checked afterwards):

* moto_server (a real S3 HTTP server) on a free port. Our model is published to it with
  `demand publish`; the peer's with bench/peer/to_mlflow.py (an MLflow LightGBM model).
* aws-lambda-rie, the Lambda Runtime Interface Emulator inside the SAM CLI package
  (harness/rie.py), one process per function: it starts the bootstrap at the first invoke
  and logs Lambda's INIT REPORT line. Used for the cold starts: the model's (first invoke
  sent -> its answer read, the booster pulled from S3 on the way) and the orchestrator's
  (invoking the model's RIE through its Invoke API).
* A mini Lambda Runtime API (harness/lambda_emulator.py, MiniLambda): it hands events to a
  function binary started with AWS_LAMBDA_RUNTIME_API pointing at it and records when each
  event was handed out and when its response came back; it also serves the Invoke API, so the
  orchestrator can invoke the model through it. Used for what RIE does not time as Lambda
  bills it (harness/rie.py says why): first vs warm invocation duration and the warm
  durations of both functions used for the cost figure; its spawn -> first answer is kept as
  a cross-check of the cold start.
* Our HTTP stack: `cargo lambda watch --only-lambda-apis` (the project's local emulator:
  function URLs and the Invoke API) with the given --model-bin and --orchestrator-bin started
  by this script against its runtime API (AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:P/.rt/NAME).
  No `cargo run`, hence no compilation and exactly the binaries passed in. One instance of
  each function, like the emulator's default `--concurrency 1`. `--watch-mode cargo-run`
  instead lets watch start the functions itself with `cargo run` (`--watch-release` adds
  --release); it aborts if cargo starts compiling unless --allow-compile is given. (In this
  workspace `cargo run --bin orchestrator` resolves other features than the workspace build
  and recompiles the AWS SDK crates, so expect that abort unless its build is cached.)
* The peer HTTP stack: bench/peer/serve.sh (`mlflow models serve` from s3://, its defaults,
  and the FastAPI orchestrator), one process each, as the original ran.
* Load: oha (`--output-format json`), the same flags against both stacks.

Figures (medians over --repeats runs, spread min-max): model cold start; first vs warm
invocation; single-row predict in process (criterion results from target/criterion, "not
run" if absent); end-to-end predict latency p50/p99 at 1 client; throughput at 8 clients;
a 45,000-row batch straight to each model service; peak memory (VmHWM); deploy artifact;
training (tests/parity/parity.py); cost per million forecasts. Goals are fixed below
(GOALS); a missed goal is reported as missed with its ratio, never tuned away.

Exit status: 0 when every measurement ran (goals met or not), 1 when one failed.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import http.client
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

from harness.http_client import Http, post_once
from harness.load import run_oha
from harness.payloads import apigw_event, batch_requests, model_rows, predict_bodies, split_payload
from harness.lambda_emulator import MiniLambda
from harness.rie import RieFunction, find_rie
from harness.procs import Procs, free_port, log, proc_cmdline, proc_exe_name, proc_mem_kib, record_command, session_pids, wait_port
from harness.report import COMMANDS, GOALS, OUR_MEMORY_MB, PEER, PRICE_GB_S, PRICE_HTTP_API_REQUEST, PRICE_LAMBDA_REQUEST, ROOT, VENV, fmt_bytes, fmt_s, portable, summary, verdict


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.reps = args.repeats or (1 if args.quick else 3)
        q = args.quick
        self.warm_invokes = 50 if q else 300
        self.lat_warmup, self.lat_requests = (20, 100) if q else (50, 500)
        self.tp_seconds = 3 if q else 10
        self.work = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
        (self.work / "tmp").mkdir()
        self.procs = Procs(self.work)
        self.R: dict = {}  # results
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.loads: list[str] = []
        self.manifest = json.loads((Path(args.model_dir) / "manifest.json").read_text())
        self.rie = Path(args.rie)
        self.py = str(VENV / "bin" / "python") if (VENV / "bin" / "python").exists() else sys.executable

    # ---- helpers

    def loadavg(self, when: str) -> None:
        with open("/proc/loadavg") as f:
            self.loads.append(f"{when}: {' '.join(f.read().split()[:3])}")

    def phase(self, name: str, fn) -> None:
        log(name)
        self.loadavg(name)
        try:
            fn()
        except Exception as e:  # a failed measurement is reported, the others still run
            self.errors.append(f"{name}: {type(e).__name__}: {e}")
            log(f"FAILED {name}: {e}")
            traceback.print_exc()

    def base_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        env.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", AWS_REGION="us-east-1")
        return env

    def function_env(self, name: str, runtime_api: str | None) -> dict[str, str]:
        env = self.base_env()
        env.update(AWS_LAMBDA_FUNCTION_NAME=name, AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(OUR_MEMORY_MB),
                   AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_LOG_FORMAT="JSON",
                   AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{name}", AWS_LAMBDA_LOG_STREAM_NAME="bench",
                   RUST_LOG="info")
        if runtime_api:
            env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
        return env

    def model_env(self, runtime_api: str | None) -> dict[str, str]:
        env = self.function_env("model", runtime_api)
        env.update(MODEL_URI=self.model_uri, AWS_ENDPOINT_URL_S3=self.s3, MODEL_MAX_ROWS="50000")
        return env

    def orchestrator_env(self, runtime_api: str | None, lambda_endpoint: str) -> dict[str, str]:
        env = self.function_env("orchestrator", runtime_api)
        env.update(MODEL_FUNCTION_NAME="model", AWS_ENDPOINT_URL_LAMBDA=lambda_endpoint,
                   MODEL_INVOKE_TIMEOUT_MS="60000")
        return env

    def peer_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(S3_ENDPOINT=self.s3, TMPDIR=str(self.work / "tmp"),
                   MLFLOW_TRACKING_URI=f"file://{self.work}/mlruns")
        return env

    @staticmethod
    def shown(env: dict[str, str], keys: list[str]) -> dict[str, str]:
        return {k: env[k] for k in keys if k in env}

    # ---- setup

    def setup(self) -> None:
        a = self.a
        # Private copies: another build may replace the binaries under target/ while we run.
        bindir = self.work / "bin"
        bindir.mkdir()
        self.model_bin = bindir / "model"
        self.orch_bin = bindir / "orchestrator"
        shutil.copy2(a.model_bin, self.model_bin)
        shutil.copy2(a.orchestrator_bin, self.orch_bin)

        port = free_port()
        self.procs.ports.append(port)
        proc = self.procs.spawn("moto", ["moto_server", "-H", "127.0.0.1", "-p", str(port)], what="S3 server")
        wait_port(port, proc, "moto", self.procs, 60)
        self.s3 = f"http://127.0.0.1:{port}"

        env = self.base_env() | {"AWS_ENDPOINT_URL_S3": self.s3}
        cmd = [a.demand_bin, "publish", "--model-dir", a.model_dir, "--bucket", "bench-models", "--create-bucket"]
        record_command("publish our model", cmd, {"AWS_ENDPOINT_URL_S3": self.s3})
        out = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, check=True)
        self.model_uri = re.search(r"s3://\S+", out.stdout + out.stderr).group(0)
        if not self.model_uri.endswith("/"):
            self.model_uri += "/"

        cmd = [self.py, PEER / "to_mlflow.py", "--model-txt", Path(a.model_dir) / "model.txt",
               "--bucket", "peer-models", "--prefix", "models/demand/bench", "--endpoint", self.s3]
        record_command("publish the peer's MLflow model", cmd)
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=True,
                             env=self.peer_env())
        self.peer_uri = out.stdout.strip().splitlines()[-1]
        log(f"models: ours {self.model_uri}, peer {self.peer_uri}")

        bodies = predict_bodies(self.manifest, 500)
        self.bodies = bodies
        self.bodies_file = self.work / "predict-bodies.txt"
        self.bodies_file.write_text("".join(json.dumps(b) + "\n" for b in bodies))
        columns, self.body_rows = model_rows(a.demand_bin, a.model_dir, bodies, self.work, "predict-bodies")
        self.row_payloads = [split_payload(columns, [row]) for row in self.body_rows]
        batch_columns, self.batch_rows = model_rows(a.demand_bin, a.model_dir, batch_requests(),
                                                    self.work, "batch")
        self.batch_body = split_payload(batch_columns, self.batch_rows)
        self.rows_file = self.work / "row-bodies.txt"
        self.rows_file.write_text("".join(p.decode() + "\n" for p in self.row_payloads))

        import lightgbm  # the peer's own package; the reference for every answer
        import numpy as np
        self.booster = lightgbm.Booster(model_file=str(Path(a.model_dir) / "model.txt"))
        self.np = np

    def expected(self, rows: list[list[int]]):
        return self.booster.predict(self.np.array(rows, dtype=self.np.float64), num_threads=1)

    # ---- phase A: cold starts (aws-lambda-rie / MLflow), first vs warm, warm durations (mini runtime)

    def touch_s3(self) -> None:
        """One request to the local S3 server just before a cold start. Left idle for a second or
        more (as it is after each MLflow cold start), this machine's Python servers answer the
        next request late: a 5.2 MB GET took 59 ms (median of 6) after 2.5 s of idle and 21.5 ms
        right after another request; S3 itself has no such idle state. Done before both stacks'
        cold starts (MLflow fetches its model seconds after its start, so it gains little)."""
        client = Http(int(self.s3.rsplit(":", 1)[1]), timeout=10)
        try:
            client.request("GET", "/")
        except OSError as e:
            self.notes.append(f"touching the S3 server failed: {e}")
        finally:
            client.close()

    def cold_ours(self, rep: int) -> None:
        """The model's cold start under RIE, then the orchestrator's, invoking the model's RIE."""
        functions: list[RieFunction] = []
        try:
            name = f"model-cold-{rep}"
            env = self.model_env(None)
            model = RieFunction(self.procs, self.rie, name, self.model_bin, env,
                                what="our model function under aws-lambda-rie",
                                shown_env=self.shown(env, ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                                                           "MODEL_URI", "AWS_ENDPOINT_URL_S3", "MODEL_MAX_ROWS"]))
            functions.append(model)
            # RIE starts the bootstrap on this first invoke, as Lambda does on a cold start.
            self.touch_s3()
            answer, cold_ms = model.invoke(self.row_payloads[0], 120)
            got = json.loads(answer)["predictions"][0]
            want = float(self.expected([self.body_rows[0]])[0])
            if got != want:
                self.notes.append(f"model prediction {got!r} != lightgbm {want!r}")
            self.R.setdefault("ours_cold_ms", []).append(cold_ms)
            self.R.setdefault("ours_rie_init_ms", []).append(model.init_ms())
            init = self.model_init_timings(name)
            if init:
                self.R.setdefault("ours_init", []).append(init)

            # RIE serves one function, named `function`.
            oenv = self.orchestrator_env(None, model.endpoint)
            oenv["MODEL_FUNCTION_NAME"] = "function"
            orch = RieFunction(self.procs, self.rie, f"orchestrator-cold-{rep}", self.orch_bin, oenv,
                               what="our orchestrator function under aws-lambda-rie",
                               shown_env=self.shown(oenv, ["MODEL_FUNCTION_NAME", "AWS_ENDPOINT_URL_LAMBDA"]))
            functions.append(orch)
            oanswer, ocold_ms = orch.invoke(apigw_event(self.bodies[0]), 120)
            if json.loads(oanswer).get("statusCode") != 200:
                raise RuntimeError(f"orchestrator answered {oanswer[:300]!r}")
            self.R.setdefault("ours_orch_cold_ms", []).append(ocold_ms)
        finally:
            for function in functions:
                self.procs.stop(function.proc)
        self.durations_mini(rep)

    def durations_mini(self, rep: int) -> None:
        """First vs warm and warm durations under the mini runtime, where RIE does not measure
        what Lambda bills (see harness/rie.py)."""
        mini = MiniLambda()
        procs = []
        try:
            mini.add("model")
            env = self.model_env(mini.runtime_api("model"))
            first = mini.submit("model", self.row_payloads[0])  # queued before the process exists
            self.touch_s3()
            t0 = time.perf_counter_ns()
            proc = self.procs.spawn(f"model-mini-{rep}", [self.model_bin], env=env,
                                    what="our model function under the mini runtime",
                                    shown_env=self.shown(env, ["AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME",
                                                               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "MODEL_URI",
                                                               "AWS_ENDPOINT_URL_S3", "MODEL_MAX_ROWS"]))
            procs.append(proc)
            mini.wait(first, 120, proc)
            if first.error:
                raise RuntimeError(f"model answered an error: {first.result[:300]!r}")
            # Spawn -> first answer here: a cross-check of the cold start measured under RIE.
            cold_ms = (first.t_in - t0) / 1e6
            got = json.loads(first.result)["predictions"][0]
            want = float(self.expected([self.body_rows[0]])[0])
            if got != want:
                self.notes.append(f"model prediction {got!r} != lightgbm {want!r}")
            mem_after_load = proc_mem_kib(proc.pid)
            warm = []
            for i in range(self.warm_invokes):
                inv = mini.invoke("model", self.row_payloads[(i + 1) % len(self.row_payloads)], 60, proc)
                warm.append(inv.duration_ms)
            self.R.setdefault("ours_cold_mini_ms", []).append(cold_ms)
            self.R.setdefault("ours_first_ms", []).append(first.duration_ms)
            self.R.setdefault("ours_warm_ms", []).append(statistics.median(warm))
            self.R.setdefault("ours_model_rss_loaded_kib", []).append(mem_after_load.get("VmRSS"))

            # The orchestrator against the same runtime: its durations, and the model's under it.
            mini.add("orchestrator")
            oenv = self.orchestrator_env(mini.runtime_api("orchestrator"), f"http://127.0.0.1:{mini.port}")
            ofirst = mini.submit("orchestrator", apigw_event(self.bodies[0]))
            t0 = time.perf_counter_ns()
            oproc = self.procs.spawn(f"orchestrator-mini-{rep}", [self.orch_bin], env=oenv,
                                     what="our orchestrator function under the mini runtime",
                                     shown_env=self.shown(oenv, ["AWS_LAMBDA_RUNTIME_API", "MODEL_FUNCTION_NAME",
                                                                 "AWS_ENDPOINT_URL_LAMBDA"]))
            procs.append(oproc)
            mini.wait(ofirst, 120, oproc)
            answer = json.loads(ofirst.result)
            if answer.get("statusCode") != 200:
                raise RuntimeError(f"orchestrator answered {str(answer)[:300]}")
            for i in range(20):
                mini.invoke("orchestrator", apigw_event(self.bodies[i % 500]), 60, oproc)
            n_model = len(mini.functions["model"].completed)
            orch = []
            for i in range(self.warm_invokes):
                inv = mini.invoke("orchestrator", apigw_event(self.bodies[(i + 20) % 500]), 60, oproc)
                if json.loads(inv.result).get("statusCode") != 200:
                    raise RuntimeError(f"orchestrator answered {inv.result[:300]!r}")
                orch.append(inv.duration_ms)
            under = [i.duration_ms for i in mini.functions["model"].completed[n_model:]]
            self.R.setdefault("ours_orch_warm_ms", []).append(statistics.median(orch))
            self.R.setdefault("ours_model_under_orch_ms", []).append(statistics.median(under))
            self.R.setdefault("ours_orch_rss_kib", []).append(proc_mem_kib(oproc.pid).get("VmHWM"))
            self.R.setdefault("ours_model_hwm_phaseA_kib", []).append(proc_mem_kib(proc.pid).get("VmHWM"))
        finally:
            for p in procs:
                self.procs.stop(p)
            mini.close()

    def model_init_timings(self, name: str) -> dict | None:
        try:
            for line in (self.work / f"{name}.log").read_text().splitlines():
                if '"model_init"' in line or "model loaded" in line:
                    return json.loads(line).get("timings") or json.loads(line).get("fields", {}).get("timings")
        except (OSError, ValueError):
            pass
        return None

    def start_mlflow(self, name: str) -> tuple[subprocess.Popen, int, int]:
        port = free_port()
        self.procs.ports.append(port)
        t0 = time.perf_counter_ns()
        proc = self.procs.spawn(name, [PEER / "serve.sh", "mlflow", self.peer_uri, str(port)],
                                env=self.peer_env(), what="peer: MLflow scoring server",
                                shown_env={"S3_ENDPOINT": self.s3})
        return proc, port, t0

    def mlflow_services(self, proc: subprocess.Popen) -> dict:
        """RSS of the MLflow session: the serving (uvicorn scoring_server) process and all."""
        procs = []
        for pid in session_pids(proc.pid):
            cmd = proc_cmdline(pid)
            if not cmd or cmd.startswith(("bash", "/bin/bash", "/usr/bin/bash")):
                continue
            procs.append((pid, cmd, proc_mem_kib(pid)))
        serving = [p for p in procs if "uvicorn" in p[1] or "scoring_server" in p[1]]
        if not serving:  # one process only: it serves
            serving = procs[-1:]
        return {
            "serving_rss": sum(p[2].get("VmRSS", 0) for p in serving),
            "serving_hwm": sum(p[2].get("VmHWM", 0) for p in serving),
            "total_rss": sum(p[2].get("VmRSS", 0) for p in procs),
            "total_hwm": sum(p[2].get("VmHWM", 0) for p in procs),
            "procs": [(pid, cmd[:110], mem) for pid, cmd, mem in procs],
        }

    def wait_mlflow(self, proc: subprocess.Popen, port: int, t0: int, name: str,
                    timeout: float = 300) -> tuple[float, float]:
        """(seconds from process start to the first prediction answered, its latency in s)."""
        body = self.row_payloads[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"MLflow exited ({proc.returncode}):\n{self.procs.log_tail(name)}")
            try:
                status, data, took = post_once(port, "/invocations", body, timeout=30)
                if status == 200:
                    got = json.loads(data)["predictions"][0]
                    want = float(self.expected([self.body_rows[0]])[0])
                    if got != want:
                        self.notes.append(f"MLflow prediction {got!r} != lightgbm {want!r}")
                    return (time.perf_counter_ns() - t0) / 1e9, took
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"MLflow gave no prediction within {timeout:.0f} s:\n{self.procs.log_tail(name)}")

    def cold_peer(self, rep: int) -> None:
        name = f"mlflow-cold-{rep}"
        self.touch_s3()
        proc, port, t0 = self.start_mlflow(name)
        try:
            cold_s, first_s = self.wait_mlflow(proc, port, t0, name)
            mem = self.mlflow_services(proc)
            client = Http(port)
            warm = []
            for i in range(self.warm_invokes):
                status, _, took = client.request("POST", "/invocations", self.row_payloads[(i + 1) % 500])
                if status != 200:
                    raise RuntimeError(f"MLflow answered {status}")
                warm.append(took * 1000)
            client.close()
            self.R.setdefault("peer_cold_ms", []).append(cold_s * 1000)
            self.R.setdefault("peer_first_ms", []).append(first_s * 1000)
            self.R.setdefault("peer_warm_ms", []).append(statistics.median(warm))
            self.R.setdefault("peer_mlflow_loaded", []).append(mem)
        finally:
            self.procs.stop(proc)

    def phase_cold(self) -> None:
        for rep in range(self.reps):
            log(f"cold start {rep + 1}/{self.reps}: ours")
            self.cold_ours(rep)
            log(f"cold start {rep + 1}/{self.reps}: MLflow")
            self.cold_peer(rep)

    # ---- phase B: both HTTP stacks up, measured side by side

    def start_our_stack(self) -> None:
        a = self.a
        port = free_port()
        self.procs.ports.append(port)
        self.watch_port = port
        self.watch_url = f"http://127.0.0.1:{port}"
        if a.watch_mode == "apis":
            cmd = ["cargo", "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(port)]
            self.watch = self.procs.spawn("watch", cmd, cwd=ROOT, what="our stack: cargo lambda watch (emulator)")
            wait_port(port, self.watch, "watch", self.procs, 120)
            menv = self.model_env(f"{self.watch_url}/.rt/model")
            self.http_model = self.procs.spawn("model", [self.model_bin], env=menv,
                                               what="our model function under cargo lambda watch",
                                               shown_env=self.shown(menv, ["AWS_LAMBDA_RUNTIME_API", "MODEL_URI"]))
            oenv = self.orchestrator_env(f"{self.watch_url}/.rt/orchestrator", self.watch_url)
            self.http_orch = self.procs.spawn("orchestrator", [self.orch_bin], env=oenv,
                                              what="our orchestrator function under cargo lambda watch",
                                              shown_env=self.shown(oenv, ["AWS_LAMBDA_RUNTIME_API",
                                                                          "AWS_ENDPOINT_URL_LAMBDA"]))
            self.our_pids = lambda: {"model": self.http_model.pid, "orchestrator": self.http_orch.pid}
        else:
            envfile = self.work / "watch.env"
            env = self.model_env(None) | self.orchestrator_env(None, self.watch_url)
            for k in ("PATH", "HOME", "LANG", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_LOG_GROUP_NAME",
                      "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_LOG_STREAM_NAME"):
                env.pop(k, None)
            envfile.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
            cmd = ["cargo", "lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P", str(port),
                   "--env-file", str(envfile)] + (["--release"] if a.watch_release else [])
            self.watch = self.procs.spawn("watch", cmd, cwd=ROOT, what="our stack: cargo lambda watch (cargo run)")
            wait_port(port, self.watch, "watch", self.procs, 120)

            def pids():
                found = {}
                for pid in session_pids(self.watch.pid):
                    name = proc_exe_name(pid)
                    if name in ("model", "orchestrator"):
                        found[name] = pid
                return found
            self.our_pids = pids
        # Ready = one prediction answered through the function URL (the orchestrator pings the
        # model at cold start).
        url = "/lambda-url/orchestrator/v1/api/predict"
        deadline = time.monotonic() + (1800 if a.allow_compile else 180)
        while True:
            if a.watch_mode == "cargo-run" and not a.allow_compile:
                text = (self.work / "watch.log").read_text(errors="replace")
                if re.search(r"^\s*Compiling ", text, re.M):
                    raise RuntimeError("cargo lambda watch started compiling (the debug/release binaries are "
                                       "stale); stopped. Use --watch-mode apis or --allow-compile.")
            try:
                status, data, _ = post_once(port, url, json.dumps(self.bodies[0]).encode(), timeout=30)
                if status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline or self.watch.poll() is not None:
                raise RuntimeError(f"our stack did not answer a prediction:\n{self.procs.log_tail('watch')}")
            time.sleep(0.2)
        got = json.loads(data)["sales"]
        want = float(self.expected([self.body_rows[0]])[0])
        if got != want:
            self.notes.append(f"our stack answered {got!r}, lightgbm {want!r}")

    def start_peer_stack(self) -> None:
        name = "mlflow"
        proc, port, t0 = self.start_mlflow(name)
        self.wait_mlflow(proc, port, t0, name)
        self.mlflow_proc, self.mlflow_port = proc, port
        oport = free_port()
        self.procs.ports.append(oport)
        self.fastapi_proc = self.procs.spawn(
            "fastapi", [PEER / "serve.sh", "orchestrator", f"http://127.0.0.1:{port}", str(oport)],
            env=self.peer_env(), what="peer: FastAPI orchestrator")
        wait_port(oport, self.fastapi_proc, "fastapi", self.procs, 60)
        self.fastapi_port = oport
        status, data, _ = post_once(oport, "/v1/api/predict", json.dumps(self.bodies[0]).encode(), timeout=60)
        if status != 200:
            raise RuntimeError(f"peer orchestrator answered {status}: {data[:200]!r}")
        got = json.loads(data)["sales"]
        want = float(self.expected([self.body_rows[0]])[0])
        if got != want:
            self.notes.append(f"peer stack answered {got!r}, lightgbm {want!r}")

    def phase_http(self) -> None:
        self.start_our_stack()
        self.start_peer_stack()
        oha = self.a.oha
        ours_predict = f"{self.watch_url}/lambda-url/orchestrator/v1/api/predict"
        peer_predict = f"http://127.0.0.1:{self.fastapi_port}/v1/api/predict"
        ours_model = f"{self.watch_url}/2015-03-31/functions/model/invocations"
        peer_model = f"http://127.0.0.1:{self.mlflow_port}/invocations"
        rows = self.batch_rows
        batch_body = self.batch_body
        want = self.expected(rows)
        for rep in range(self.reps):
            log(f"HTTP {rep + 1}/{self.reps}: 1 client, {self.lat_requests} requests")
            for side, url in (("ours", ours_predict), ("peer", peer_predict)):
                run_oha(oha, url, ["-n", str(self.lat_warmup), "-c", "1"], f"load ({side}): warm-up",
                        self.bodies_file)
                r = run_oha(oha, url, ["-n", str(self.lat_requests), "-c", "1"],
                            f"load ({side}): 1 client", self.bodies_file)
                self.R.setdefault(f"{side}_e2e", []).append(r)
            for side, url in (("ours", ours_model), ("peer", peer_model)):
                r = run_oha(oha, url, ["-n", str(self.lat_requests), "-c", "1"],
                            f"load ({side}): model service, single row, 1 client", self.rows_file)
                self.R.setdefault(f"{side}_model_http", []).append(r)
            log(f"HTTP {rep + 1}/{self.reps}: 8 clients, {self.tp_seconds} s")
            for side, url in (("ours", ours_predict), ("peer", peer_predict)):
                r = run_oha(oha, url, ["-z", f"{self.tp_seconds}s", "-w", "-c", "8"],
                            f"load ({side}): 8 clients", self.bodies_file)
                self.R.setdefault(f"{side}_tp", []).append(r)
            log(f"HTTP {rep + 1}/{self.reps}: 45,000-row batch")
            for side, port, path in (("ours", self.watch_port, "/2015-03-31/functions/model/invocations"),
                                     ("peer", self.mlflow_port, "/invocations")):
                if not any(w.startswith(f"batch ({side})") for w, _ in COMMANDS):
                    COMMANDS.append((f"batch ({side}): one request from Python's http.client, timed to the "
                                     "whole answer read", f"POST http://127.0.0.1:{port}{path}  "
                                     "# body: 45,000-row dataframe_split"))
                status, data, took = post_once(port, path, batch_body, timeout=900)
                if status != 200:
                    raise RuntimeError(f"{side} batch answered {status}: {data[:300]!r}")
                preds = json.loads(data)["predictions"]
                if len(preds) != len(rows):
                    raise RuntimeError(f"{side} batch: {len(preds)} predictions for {len(rows)} rows")
                diff = float(self.np.max(self.np.abs(self.np.array(preds) - want)))
                self.R.setdefault(f"{side}_batch_s", []).append(took)
                self.R.setdefault(f"{side}_batch_maxdiff", []).append(diff)
        # Memory after the whole workload.
        pids = self.our_pids()
        self.R["ours_model_hwm_kib"] = proc_mem_kib(pids["model"]).get("VmHWM")
        self.R["ours_model_rss_kib"] = proc_mem_kib(pids["model"]).get("VmRSS")
        self.R["ours_orch_hwm_kib"] = proc_mem_kib(pids["orchestrator"]).get("VmHWM")
        self.R["watch_hwm_kib"] = proc_mem_kib(self.watch.pid).get("VmHWM")
        self.R["peer_mlflow_after"] = self.mlflow_services(self.mlflow_proc)
        fastapi = [proc_mem_kib(p) for p in session_pids(self.fastapi_proc.pid)
                   if not proc_cmdline(p).startswith(("bash", "/bin/bash"))]
        self.R["peer_fastapi_hwm_kib"] = sum(m.get("VmHWM", 0) for m in fastapi)
        self.R["peer_fastapi_rss_kib"] = sum(m.get("VmRSS", 0) for m in fastapi)
        for p in (self.fastapi_proc, self.mlflow_proc, self.watch):
            self.procs.stop(p)
        for p in (getattr(self, "http_model", None), getattr(self, "http_orch", None)):
            if p is not None:
                self.procs.stop(p)

    # ---- in process, artifact, training

    def phase_inproc(self) -> None:
        base = Path(self.a.criterion_dir)
        est = {}
        benches = [(group, bench, group.split("_")[1])
                   for group in ("rows_1", "rows_100", "rows_10000")
                   for bench in ("handler", "raw_predict", "raw_single_row_fast", "handler_overhead",
                                 "native_1_thread", "native_all_threads")]
        benches += [("parse", "native", None), ("parse", "lightgbm", None)]
        for group, bench, rows in benches:
            path = base / group / bench / (rows or "") / "new" / "estimates.json"
            if path.exists():
                data = json.loads(path.read_text())["median"]
                ci = data.get("confidence_interval", {})
                est[(group, bench)] = {"ns": data["point_estimate"], "lo": ci.get("lower_bound"),
                                       "hi": ci.get("upper_bound"),
                                       "mtime": dt.datetime.fromtimestamp(path.stat().st_mtime)}
        self.R["criterion"] = est
        # The peer's in-process single-row call (Python lightgbm, and MLflow's pyfunc), for context.
        script = r"""
import json, os, statistics, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, lightgbm as lgb
model_txt, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
b = lgb.Booster(model_file=model_txt)
x = np.array([[1, 1, 1, 0, 2018]], dtype=np.float64)
def timeit(f):
    for _ in range(50): f()
    out = []
    for _ in range(n):
        t = time.perf_counter_ns(); f(); out.append(time.perf_counter_ns() - t)
    return statistics.median(out)
res = {"lightgbm_ns": timeit(lambda: b.predict(x))}
import mlflow.lightgbm, mlflow.pyfunc
path = os.path.join(work, "pyfunc-model")
mlflow.lightgbm.save_model(b, path, pip_requirements=["lightgbm"])
m = mlflow.pyfunc.load_model(path)
df = pd.DataFrame(x, columns=["store", "item", "month", "day", "year"])
res["pyfunc_ns"] = timeit(lambda: m.predict(df))
print(json.dumps(res))
"""
        n = 300 if self.a.quick else 2000
        env = self.peer_env()
        out = subprocess.run([self.py, "-c", script, str(Path(self.a.model_dir) / "model.txt"), str(n),
                              str(self.work)], capture_output=True, text=True, env=env, timeout=600)
        if out.returncode == 0:
            self.R["python_inproc"] = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            self.notes.append(f"Python in-process timing failed: {out.stderr[-300:]}")

    def phase_artifact(self) -> None:
        a = self.a
        if a.model_zip:
            self.R["ours_zip"] = (os.path.getsize(a.model_zip), str(a.model_zip), True)
        else:
            path = self.work / "model-bootstrap.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o755 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(self.model_bin, "rb") as f:
                    z.writestr(info, f.read())
            self.R["ours_zip"] = (path.stat().st_size, str(a.model_bin), False)
        self.R["ours_bin_size"] = os.path.getsize(self.model_bin)
        self.R["orch_bin_size"] = os.path.getsize(self.orch_bin)
        site = sorted((VENV / "lib").glob("python*/site-packages"))
        total = files = 0
        for sp in site:
            for dirpath, _, names in os.walk(sp):
                for n in names:
                    p = os.path.join(dirpath, n)
                    if not os.path.islink(p):
                        total += os.path.getsize(p)
                        files += 1
        self.R["peer_site"] = (total, files, str(site[0]) if site else "")

    def phase_training(self) -> None:
        a = self.a
        if a.quick and a.train_rounds is None:
            self.R["training"] = "skipped (--quick; pass --train-rounds to run it)"
            return
        if a.train_rounds == 0:
            self.R["training"] = "skipped (--train-rounds 0)"
            return
        rounds = a.train_rounds or 3000
        data = Path(a.train_data)
        if not data.exists():
            gen = self.work / "generated"
            cmd = [a.demand_bin, "generate", "--out", gen]
            record_command("generate training data", cmd)
            subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
            data = gen / "train.csv"
        repeats = self.reps
        cmd = [self.py, ROOT / "tests" / "parity" / "parity.py", "--demand", a.demand_bin, "--data", data,
               "--cutoff", "2017-10-01", "--threads", str(a.train_threads), "--rounds", str(rounds),
               "--repeats", str(repeats)]
        record_command("training: demand train vs Python lightgbm", cmd)
        env = dict(os.environ, TMPDIR=str(self.work / "tmp"))
        out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
        text = out.stdout
        m = re.search(r"\| train time, median of \d+ \(s\) \| ([\d.]+) \(([\d.]+)-([\d.]+)\) \| "
                      r"([\d.]+) \(([\d.]+)-([\d.]+)\) \|", text)
        if not m:
            raise RuntimeError(f"parity.py gave no timing (exit {out.returncode}):\n{text[-500:]}\n{out.stderr[-800:]}")
        v = [float(x) for x in m.groups()]
        self.R["training"] = {"ours": {"median": v[0], "min": v[1], "max": v[2], "n": repeats},
                              "peer": {"median": v[3], "min": v[4], "max": v[5], "n": repeats},
                              "rounds": rounds, "threads": a.train_threads, "output": text.strip()}

    # ---- run and report

    def run(self) -> int:
        self.loadavg("start")
        self.started = dt.datetime.now(dt.timezone.utc)
        t_start = time.monotonic()
        try:
            self.phase("setup", self.setup)
            if not self.errors:
                self.phase("cold starts and warm durations", self.phase_cold)
                self.phase("HTTP stacks side by side", self.phase_http)
            self.phase("in-process single row (criterion)", self.phase_inproc)
            self.phase("deploy artifact", self.phase_artifact)
            self.phase("training", self.phase_training)
        finally:
            self.procs.stop_all()
        self.loadavg("end")
        self.elapsed = time.monotonic() - t_start
        left = self.procs.leftovers()
        if left:
            self.errors.append("left running: " + "; ".join(left))
        table, report = self.report()
        Path(self.a.out).write_text(portable(report, self.work))
        print(table)
        print(f"\nreport written to {self.a.out} ({self.elapsed / 60:.1f} min)")
        if self.errors:
            print("errors:\n  " + "\n  ".join(self.errors), file=sys.stderr)
            print(f"logs kept in {self.work}", file=sys.stderr)
        elif self.a.keep:
            print(f"logs kept in {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        return 1 if self.errors else 0

    def rows(self) -> list[list[str]]:
        R = self.R
        out = []

        def S(key, f=lambda x: x):
            return summary([f(x) for x in R.get(key, [])])

        def ratio(a, b):
            return a["median"] / b["median"] if a and b and b["median"] else None

        # cold start
        o, p = S("ours_cold_ms"), S("peer_cold_ms")
        r = ratio(o, p)
        out.append(["model cold start (first invoke under aws-lambda-rie -> its answer; the bootstrap starts on it, the model comes from local S3)",
                    fmt_s(o, "ms"), fmt_s(p, "ms"), f"{r:.3g}x" if r else "n/a",
                    GOALS["cold"][0], verdict("cold", r)])
        # first vs warm
        of, ow = S("ours_first_ms"), S("ours_warm_ms")
        pf, pw = S("peer_first_ms"), S("peer_warm_ms")
        r = ratio(of, ow)
        rp = ratio(pf, pw)
        out.append(["first vs warm invocation (model function; first / warm median)",
                    f"first {fmt_s(of, 'ms')}, warm {fmt_s(ow, 'ms')}: {r:.3g}x" if r else "n/a",
                    f"MLflow first request {fmt_s(pf, 'ms')}, warm {fmt_s(pw, 'ms')}: {rp:.3g}x" if rp else "n/a",
                    f"{r:.3g}x" if r else "n/a", GOALS["first_warm"][0], verdict("first_warm", r)])
        # in process
        est = R.get("criterion") or {}
        def ci(e, unit=1000, suffix="µs"):
            return f"{e['ns'] / unit:.2f} {suffix} ({e['lo'] / unit:.2f}-{e['hi'] / unit:.2f})"
        n1, h, raw = (est.get(("rows_1", b)) for b in ("native_1_thread", "handler", "raw_predict"))
        if n1 and raw:
            r = n1["ns"] / raw["ns"]
            fast = est.get(("rows_1", "raw_single_row_fast"))
            fast_txt = f"; vs LightGBM's single-row fast path {n1['ns'] / fast['ns']:.3g}x" if fast else ""
            handler_txt = f"; whole handler {ci(h)}" if h else ""
            out.append(["single-row predict, in process: native evaluator vs the raw LightGBM call "
                        "(lightgbm3, Rust; criterion median, 95% CI)",
                        f"native {ci(n1)}{handler_txt}", f"raw LightGBM {ci(raw)}",
                        f"{r:.3g}x{fast_txt}", GOALS["inproc"][0], verdict("inproc", r)])
        else:
            out.append(["single-row predict, in process", "not run", "not run", "n/a", GOALS["inproc"][0],
                        "not run (no target/criterion results)"])
        n1, nall, raw = (est.get(("rows_10000", b)) for b in ("native_1_thread", "native_all_threads", "raw_predict"))
        if n1 and raw:
            r = n1["ns"] / raw["ns"]
            out.append(["10,000 rows in process, one thread: native vs raw LightGBM (criterion)",
                        f"native {ci(n1, 1e6, 'ms')}", f"raw LightGBM {ci(raw, 1e6, 'ms')}",
                        f"{r:.3g}x", GOALS["inproc_10k"][0], verdict("inproc_10k", r)])
        if n1 and nall:
            r = n1["ns"] / nall["ns"]
            out.append([f"10,000 rows in process, all {os.cpu_count()} threads vs one (criterion)",
                        f"all threads {ci(nall, 1e6, 'ms')}", f"one thread {ci(n1, 1e6, 'ms')}",
                        f"{r:.3g}x faster", GOALS["inproc_threads"][0], verdict("inproc_threads", r)])
        pn, pl = est.get(("parse", "native")), est.get(("parse", "lightgbm"))
        if pn:
            ms = pn["ns"] / 1e6
            out.append(["parsing the 3000-tree model.txt (criterion; the cold start's share)",
                        f"native {ci(pn, 1e6, 'ms')}",
                        f"LightGBM's parser {ci(pl, 1e6, 'ms')}" if pl else "n/a",
                        f"{pn['ns'] / pl['ns']:.3g}x" if pl else "n/a",
                        GOALS["parse"][0], verdict("parse", ms)])
        # end to end
        for q, key in (("p50", "e2e_p50"), ("p99", "e2e_p99")):
            o = summary([x[f"{q}_ms"] for x in R.get("ours_e2e", [])])
            p = summary([x[f"{q}_ms"] for x in R.get("peer_e2e", [])])
            r = ratio(o, p)
            out.append([f"end-to-end predict latency {q}, 1 client",
                        fmt_s(o, "ms"), fmt_s(p, "ms"), f"{r:.3g}x" if r else "n/a", GOALS[key][0], verdict(key, r)])
        # throughput
        o = summary([x["rps"] for x in R.get("ours_tp", [])])
        p = summary([x["rps"] for x in R.get("peer_tp", [])])
        oe = sum(x["errors"] for x in R.get("ours_tp", []))
        pe = sum(x["errors"] for x in R.get("peer_tp", []))
        r = ratio(o, p)
        out.append(["throughput, 8 concurrent clients (requests/s)",
                    f"{fmt_s(o, 'req/s')}, {oe} errors" if o else "n/a",
                    f"{fmt_s(p, 'req/s')}, {pe} errors" if p else "n/a",
                    f"{r:.3g}x" if r else "n/a", GOALS["throughput"][0],
                    verdict("throughput", r, oe == 0) + ("" if oe == 0 else f"; {oe} errors")])
        # batch
        o = summary([45_000 / s for s in R.get("ours_batch_s", [])])
        p = summary([45_000 / s for s in R.get("peer_batch_s", [])])
        r = ratio(o, p)
        out.append(["batch of 45,000 rows to the model service (rows/s)",
                    fmt_s(o, "rows/s"), fmt_s(p, "rows/s"), f"{r:.3g}x" if r else "n/a",
                    GOALS["batch"][0], verdict("batch", r)])
        # memory
        ours_hwm = R.get("ours_model_hwm_kib")
        after = R.get("peer_mlflow_after")
        if ours_hwm and after:
            r = ours_hwm / after["serving_hwm"]
            out.append(["peak memory of the model service (VmHWM, after the whole workload)",
                        f"{ours_hwm / 1024:.1f} MiB",
                        f"serving {after['serving_hwm'] / 1024:.1f} MiB, all MLflow processes "
                        f"{after['total_hwm'] / 1024:.1f} MiB",
                        f"{r:.3g}x (vs all: {ours_hwm / after['total_hwm']:.3g}x)",
                        GOALS["memory"][0], verdict("memory", r)])
        else:
            out.append(["peak memory of the model service", "n/a", "n/a", "n/a", GOALS["memory"][0], "n/a"])
        # artifact
        if "ours_zip" in R and "peer_site" in R:
            zsize, src, given = R["ours_zip"]
            site, files, _ = R["peer_site"]
            how = "given --model-zip" if given else "model binary zipped here"
            out.append(["deploy artifact",
                        f"{fmt_bytes(zsize)} zipped bootstrap ({how}; {fmt_bytes(R['ours_bin_size'])} unzipped)",
                        f"{fmt_bytes(site)} installed site-packages ({files:,} files)",
                        f"{zsize / site:.3g}x", GOALS["artifact"][0], "reported"])
        # training
        t = R.get("training")
        if isinstance(t, dict):
            r = t["ours"]["median"] / t["peer"]["median"]
            out.append([f"training ({t['rounds']} rounds, {t['threads']} thread(s), whole command)",
                        fmt_s(t["ours"], "s"), fmt_s(t["peer"], "s"), f"{r:.3g}x",
                        GOALS["training"][0], verdict("training", r)])
        else:
            out.append(["training", t or "not run", "", "n/a", GOALS["training"][0], "not run"])
        # cost
        cost = self.cost()
        if cost:
            r = cost["ours"] / cost["peer"]
            out.append(["cost per million forecasts (arm64 Lambda + HTTP API, warm)",
                        f"${cost['ours']:.2f}", f"${cost['peer']:.2f}", f"{r:.3g}x",
                        GOALS["cost"][0], verdict("cost", r)])
        else:
            out.append(["cost per million forecasts", "n/a", "n/a", "n/a", GOALS["cost"][0], "n/a"])
        return out

    def cost(self) -> dict | None:
        R = self.R
        try:
            orch_ms = statistics.median(R["ours_orch_warm_ms"])
            model_ms = statistics.median(R["ours_model_under_orch_ms"])
            fastapi_ms = statistics.median([x["p50_ms"] for x in R["peer_e2e"]])
            mlflow_ms = statistics.median([x["p50_ms"] for x in R["peer_model_http"]])
            mlflow_kib = statistics.median([m["serving_rss"] for m in R["peer_mlflow_loaded"]])
            fastapi_kib = R["peer_fastapi_rss_kib"]
        except (KeyError, statistics.StatisticsError):
            return None

        def size(kib):
            return max(128, math.ceil(kib / 1024 / 64) * 64)

        def fn(ms, mb):
            return (math.ceil(ms) / 1000 * mb / 1024 * PRICE_GB_S + PRICE_LAMBDA_REQUEST) * 1e6

        http_api = PRICE_HTTP_API_REQUEST * 1e6
        ours = fn(orch_ms, OUR_MEMORY_MB) + fn(model_ms, OUR_MEMORY_MB) + http_api
        peer = fn(fastapi_ms, size(fastapi_kib)) + fn(mlflow_ms, size(mlflow_kib)) + http_api
        self.cost_detail = (
            f"ours: orchestrator {orch_ms:.2f} ms -> {math.ceil(orch_ms)} ms billed at {OUR_MEMORY_MB} MB "
            f"(${fn(orch_ms, OUR_MEMORY_MB):.3f}) + model {model_ms:.2f} ms -> {math.ceil(model_ms)} ms at "
            f"{OUR_MEMORY_MB} MB (${fn(model_ms, OUR_MEMORY_MB):.3f}) + HTTP API ${http_api:.2f} = ${ours:.3f}; "
            f"peer: orchestrator {fastapi_ms:.2f} ms -> {math.ceil(fastapi_ms)} ms at {size(fastapi_kib)} MB "
            f"(RSS {fastapi_kib / 1024:.0f} MiB; ${fn(fastapi_ms, size(fastapi_kib)):.3f}) + model "
            f"{mlflow_ms:.2f} ms -> {math.ceil(mlflow_ms)} ms at {size(mlflow_kib)} MB (RSS "
            f"{mlflow_kib / 1024:.0f} MiB; ${fn(mlflow_ms, size(mlflow_kib)):.3f}) + HTTP API ${http_api:.2f} "
            f"= ${peer:.3f}")
        return {"ours": ours, "peer": peer}

    def machine(self) -> list[str]:
        cpu = "unknown"
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = 0
        try:
            for line in open("/proc/meminfo"):
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1])
        except OSError:
            pass
        return [f"CPU: {cpu}, {os.cpu_count()} logical cores", f"RAM: {mem / 1024 / 1024:.1f} GiB",
                f"kernel: {platform.release()} ({platform.machine()})"]

    def versions(self) -> list[str]:
        def cmd(c):
            try:
                return subprocess.run(c, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()[0]
            except (OSError, IndexError, subprocess.TimeoutExpired):
                return "unknown"

        def pkg(name):
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                return "not installed"
        return [
            f"Rust: {cmd(['rustc', '--version'])}; cargo-lambda: {cmd(['cargo', 'lambda', '--version'])}",
            "LightGBM: 4.7.0 (vendored by lightgbm3-sys; Python package "
            f"{pkg('lightgbm')})",
            f"Python {platform.python_version()}: mlflow {pkg('mlflow')}, fastapi {pkg('fastapi')}, "
            f"uvicorn {pkg('uvicorn')}, pandas {pkg('pandas')}, numpy {pkg('numpy')}",
            f"load generator: {cmd([self.a.oha, '--version'])}",
        ]

    def report(self) -> tuple[str, str]:
        rows = self.rows()
        head = "| figure | ours | peer | ratio ours/peer | goal | met? |\n|---|---|---|---|---|---|\n"
        table = head + "".join("| " + " | ".join(r) + " |\n" for r in rows)
        R = self.R
        a = self.a
        L = [f"# Benchmark: Rust stack vs Python peer stack{' (quick run)' if a.quick else ''}", ""]
        L += [f"Date: {self.started:%Y-%m-%d %H:%M} UTC; took {self.elapsed / 60:.1f} min; "
              f"{self.reps} repetition(s) of every measurement, medians with (min-max) over them.", ""]
        L += ["## Machine", ""] + [f"- {x}" for x in self.machine()]
        L += [f"- load average (1/5/15 min) at each phase: {'; '.join(self.loads)}", ""]
        L += ["## Versions", ""] + [f"- {x}" for x in self.versions()]
        L += [f"- binaries: model `{a.model_bin}`, orchestrator `{a.orchestrator_bin}`, demand `{a.demand_bin}`; "
              f"model `{a.model_dir}` ({self.manifest.get('name')}/{self.manifest.get('version')}, "
              f"{self.manifest.get('num_trees')} trees)", ""]
        L += ["## Results", "", table]
        if self.errors:
            L += ["**Measurements that failed:**", ""] + [f"- {e}" for e in self.errors] + [""]
        L += ["## Notes", ""]
        L += self.note_lines()
        L += ["", "## Commands", "", "```sh", shlex.join([sys.executable, *sys.argv])]
        L += [f"# {what}\n{line}" for what, line in COMMANDS]
        L += ["```", ""]
        t = R.get("training")
        if isinstance(t, dict):
            L += ["## Training parity (tests/parity/parity.py output)", "", t["output"], ""]
        return table, "\n".join(L)

    def note_lines(self) -> list[str]:
        R, a = self.R, self.a
        n = []
        n.append("- **What each figure measures.** In process: the criterion benchmark "
                 "(`cargo bench -p model --bench handler`, group `rows_1`): the handler path (decode, "
                 "predict, serialise) vs the raw `lightgbm3` predict call, no I/O. Cold start, under "
                 "aws-lambda-rie (the Runtime Interface Emulator of the SAM CLI package): first invoke sent "
                 "-> its answer read, RIE starting the model's bootstrap on that invoke (the booster is "
                 "fetched from the local S3 server, verified, parsed). Invocation durations, under this "
                 "script's mini Lambda Runtime API: event handed out -> response received, what Lambda "
                 "bills. End to end: HTTP through each local stack, "
                 "measured by oha on the same machine.")
        mode = ("`cargo lambda watch --only-lambda-apis` with the given binaries started against its runtime "
                "API" if a.watch_mode == "apis" else
                f"`cargo lambda watch --ignore-changes{' --release' if a.watch_release else ''}` (`cargo run`)")
        n.append(f"- **The emulator is part of our end-to-end figures.** Our stack is {mode}: client -> "
                 "function URL (the emulator turns the HTTP request into an API Gateway v2 event and queues "
                 "it) -> orchestrator -> Lambda Invoke API (the emulator again) -> model, i.e. four hops "
                 "through the emulator per request; the peer is client -> FastAPI -> MLflow, two plain HTTP "
                 "hops and no gateway. Real API Gateway and Lambda add their own latency, not measured here. "
                 "One instance of each function (the emulator's default concurrency 1) vs one process per "
                 "peer service (their defaults).")
        ou = R.get("ours_model_http")
        pe = R.get("peer_model_http")
        if ou and pe:
            o = summary([x["p50_ms"] for x in ou])
            p = summary([x["p50_ms"] for x in pe])
            n.append(f"- Model service alone, single row over HTTP, 1 client, p50: ours (watch Invoke API) "
                     f"{fmt_s(o, 'ms')}, MLflow `/invocations` {fmt_s(p, 'ms')}.")
        if R.get("ours_orch_warm_ms"):
            n.append(f"- Warm durations under the mini runtime (no emulator): orchestrator "
                     f"{fmt_s(summary(R['ours_orch_warm_ms']), 'ms')} per predict, of which the model "
                     f"invocation {fmt_s(summary(R['ours_model_under_orch_ms']), 'ms')}. Under aws-lambda-rie: "
                     f"orchestrator cold start (first invoke -> its answer, includes its ping of the model) "
                     f"{fmt_s(summary(R['ours_orch_cold_ms']), 'ms')}; the model's INIT REPORT (bootstrap "
                     f"start -> its first request for an event) {fmt_s(summary(R.get('ours_rie_init_ms', [])), 'ms')}. "
                     f"The model's cold start under the mini runtime (spawn -> first answer), as a cross-check: "
                     f"{fmt_s(summary(R.get('ours_cold_mini_ms', [])), 'ms')}.")
        if R.get("ours_init"):
            keys = ["fetch_ms", "verify_ms", "parse_ms", "warmup_ms", "total_ms"]
            med = {k: statistics.median([i.get(k, 0) for i in R["ours_init"]]) for k in keys}
            n.append("- Our model's own init log (median): " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()) + ".")
        if R.get("peer_mlflow_loaded"):
            m = R["peer_mlflow_loaded"][-1]
            n.append("- MLflow processes after its first prediction (RSS / peak KiB): " + "; ".join(
                f"`{cmd}` {mem.get('VmRSS')} / {mem.get('VmHWM')}" for _, cmd, mem in m["procs"]) + ".")
        if R.get("peer_mlflow_after") and R.get("ours_model_hwm_kib"):
            m = R["peer_mlflow_after"]
            n.append(f"- Memory after the whole workload (peak = VmHWM): our model {R['ours_model_hwm_kib']} KiB "
                     f"(RSS {R['ours_model_rss_kib']}; right after load "
                     f"{fmt_s(summary(R.get('ours_model_rss_loaded_kib', [])), 'KiB')}), our orchestrator "
                     f"{R['ours_orch_hwm_kib']} KiB, cargo lambda watch {R['watch_hwm_kib']} KiB; MLflow serving "
                     f"{m['serving_hwm']} KiB, all MLflow processes {m['total_hwm']} KiB (sum of peaks), FastAPI "
                     f"{R['peer_fastapi_hwm_kib']} KiB. Both model services served the same load, including "
                     f"the 45,000-row batches.")
        if R.get("ours_batch_maxdiff"):
            d = max(R["ours_batch_maxdiff"] + R.get("peer_batch_maxdiff", []))
            n.append(f"- The 45,000-row batch (10 stores x 50 items x 90 days, `dataframe_split`, "
                     f"{len(self.batch_body) / 1e6:.2f} MB of JSON) is one HTTP request to each model "
                     f"service (ours: the emulator's Invoke API; peer: MLflow `/invocations`), timed by the client "
                     f"from sending to the whole answer read. Both answers vs Python lightgbm: max abs difference "
                     f"{d:.3g}. Our booster predicts on one thread (LightGBM is built without OpenMP here); "
                     f"the Python wheel uses OpenMP over all cores.")
        tp = R.get("ours_tp", []) + R.get("peer_tp", [])
        if tp:
            errs = [x["error_detail"] for x in tp if x["errors"]]
            n.append(f"- Load: 1 client = {self.lat_warmup} warm-up then {self.lat_requests} requests per run; "
                     f"8 clients = `oha -z {self.tp_seconds}s -w -c 8` per run; the request bodies cycle through "
                     f"500 distinct {{date, store, item}} inside the model's training domain (`oha -Z`). oha runs "
                     f"on the same 2 cores as both stacks. Errors: {errs or 'none'}.")
        if getattr(self, "cost_detail", None):
            n.append(f"- Cost per million forecasts, at the warm medians, per-ms billing, ${PRICE_GB_S:.10f} per GB-s, "
                     f"$0.20 per million Lambda requests, $1.00 per million HTTP API requests, 2 Lambda "
                     f"invocations per forecast. Our durations are from the mini runtime (billed-duration "
                     f"semantics); the peer's are its HTTP p50s (FastAPI end to end, MLflow single row), sized to "
                     f"its RSS after load (rounded up to 64 MB, min 128; its peak is higher, so this favours the "
                     f"peer). {self.cost_detail}.")
        est = R.get("criterion") or {}
        if est:
            mt = max(v["mtime"] for v in est.values())
            parts = []
            for g in ("rows_1", "rows_100", "rows_10000"):
                h, r, o = est.get((g, "handler")), est.get((g, "raw_predict")), est.get((g, "handler_overhead"))
                if h and r:
                    parts.append(f"{g}: handler {h['ns'] / 1e3:,.1f} µs, raw {r['ns'] / 1e3:,.1f} µs "
                                 f"({h['ns'] / r['ns']:.3g}x)" + (f", host overhead {o['ns'] / 1e3:,.2f} µs" if o else ""))
            n.append(f"- Criterion results read from `{a.criterion_dir}` (newest written {mt:%Y-%m-%d %H:%M}); they "
                     f"time the booster `cargo bench` used (a synthetic 3000-round one unless "
                     f"MODEL_BENCH_MODEL_DIR was set), not necessarily --model-dir. " + "; ".join(parts) + ".")
        py = R.get("python_inproc")
        if py:
            n.append(f"- The peer in process, same single row, on --model-dir's booster: Python "
                     f"`lightgbm.Booster.predict` {py['lightgbm_ns'] / 1e3:.1f} µs, MLflow pyfunc `predict` "
                     f"(pandas DataFrame) {py['pyfunc_ns'] / 1e3:.1f} µs (medians).")
        if "ours_zip" in R and "peer_site" in R:
            n.append(f"- Deploy artifact: ours is the model function's `bootstrap` zipped (orchestrator binary "
                     f"{fmt_bytes(R['orch_bin_size'])} unzipped); unless --model-zip is given it is this "
                     f"machine's binary ({platform.machine()}), not the arm64 build. The peer's figure is the "
                     f"bench venv's site-packages (`{R['peer_site'][2]}`, unzipped; Lambda's zip limit is 250 MB "
                     f"unzipped).")
        t = R.get("training")
        if isinstance(t, dict):
            n.append(f"- Training: tests/parity/parity.py, both sides timed as whole commands (read CSV, "
                     f"features, train, score, save), {t['rounds']} rounds, {t['threads']} thread(s), "
                     f"split time:2017-10-01, alternated {t['ours']['n']} times.")
        n.extend(f"- {x}" for x in self.notes)
        return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--model-bin", default=str(ROOT / "target/release/model"))
    ap.add_argument("--orchestrator-bin", default=str(ROOT / "target/release/orchestrator"))
    ap.add_argument("--demand-bin", default=str(ROOT / "target/release/demand"))
    ap.add_argument("--model-dir", default=str(ROOT / "data/models/demand"),
                    help="a trained model dir (model.txt + manifest.json)")
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--quick", action="store_true", help="1 repetition, short loads, no training")
    ap.add_argument("--repeats", type=int, help="repetitions of each measurement (default 3, 1 with --quick)")
    ap.add_argument("--oha", default=shutil.which("oha") or str(Path.home() / ".cargo/bin/oha"))
    ap.add_argument("--model-zip", help="the deployable zipped bootstrap of the model function")
    ap.add_argument("--rie", help="aws-lambda-rie (default: the one inside the installed SAM CLI package)")
    ap.add_argument("--criterion-dir", default=str(ROOT / "target/criterion"))
    ap.add_argument("--train-rounds", type=int, help="rounds for the training figure (default 3000; 0 skips it)")
    ap.add_argument("--train-threads", type=int, default=1)
    ap.add_argument("--train-data", default=str(ROOT / "data/generated/train.csv"),
                    help="generated with `demand generate` into the work dir if absent")
    ap.add_argument("--watch-mode", choices=["apis", "cargo-run"], default="apis",
                    help="apis: watch --only-lambda-apis + the given binaries (default); cargo-run: watch "
                         "starts the functions with `cargo run`")
    ap.add_argument("--watch-release", action="store_true", help="cargo-run mode: pass --release to watch")
    ap.add_argument("--allow-compile", action="store_true", help="cargo-run mode: let watch compile")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (/tmp/bench-*) and its logs")
    args = ap.parse_args()

    missing = []
    for flag in ("model_bin", "orchestrator_bin", "demand_bin"):
        if not os.access(getattr(args, flag), os.X_OK):
            missing.append(f"--{flag.replace('_', '-')} {getattr(args, flag)}: not an executable")
    for f in ("model.txt", "manifest.json"):
        if not (Path(args.model_dir) / f).is_file():
            missing.append(f"--model-dir {args.model_dir}: no {f}")
    if not args.oha or not os.access(args.oha, os.X_OK):
        missing.append(f"--oha {args.oha}: oha not found; install it with `cargo install --locked oha` "
                       "or pass --oha PATH")
    if not shutil.which("moto_server"):
        missing.append("moto_server not on PATH (make deps)")
    args.rie = args.rie or (str(find_rie() or "") or None)
    if not args.rie or not os.access(args.rie, os.X_OK):
        missing.append(f"--rie {args.rie}: aws-lambda-rie not found; it ships with the SAM CLI "
                       "(make deps installs it) or pass --rie PATH")
    if args.model_zip and not os.path.isfile(args.model_zip):
        missing.append(f"--model-zip {args.model_zip}: no such file")
    try:
        import lightgbm  # noqa: F401
        import mlflow  # noqa: F401
    except ImportError as e:
        missing.append(f"{e}: run this with {VENV}/bin/python (bench/peer/setup.sh creates it)")
    if missing:
        print("run.py: cannot start:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    for flag in ("model_bin", "orchestrator_bin", "demand_bin", "model_dir", "oha", "out"):
        setattr(args, flag, os.path.abspath(getattr(args, flag)))

    bench = Bench(args)
    atexit.register(bench.procs.stop_all)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    return bench.run()


if __name__ == "__main__":
    sys.exit(main())
