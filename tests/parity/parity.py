#!/usr/bin/env python3
"""Parity of `demand train` with the Python LightGBM package.

Trains the Python package with the same parameters, threads and data on the same time
split as `demand train`, and prints a markdown table comparing validation SMAPE, training
time (median of --repeats runs of each, measured side by side, whole command: read CSV,
build features, train, score, save) and the predictions of the two boosters on the
validation rows.

Run through `make parity` (it creates the venv with lightgbm and pandas).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import lightgbm as lgb
import numpy as np
import pandas as pd

FEATURES = ["store", "item", "month", "day", "year"]


def smape(actual, forecast):
    """Kaggle's SMAPE in percent; a term is 0 when actual and forecast are both 0."""
    actual = np.asarray(actual, dtype=float)
    forecast = np.asarray(forecast, dtype=float)
    denominator = np.abs(actual) + np.abs(forecast)
    terms = np.where(denominator == 0, 0.0, 200.0 * np.abs(forecast - actual) / np.where(denominator == 0, 1, denominator))
    return float(terms.mean())


def features(frame):
    """The original notebook's features: day is the day of the week, Monday = 0."""
    date = pd.to_datetime(frame["date"])
    return pd.DataFrame(
        {
            "store": frame["store"].astype(float),
            "item": frame["item"].astype(float),
            "month": date.dt.month.astype(float),
            "day": date.dt.day_of_week.astype(float),
            "year": date.dt.year.astype(float),
        }
    )


def train_python(data, cutoff, params, out_path):
    """The notebook's pipeline, timed end to end like `demand train`."""
    started = time.perf_counter()
    frame = pd.read_csv(data)
    fit = frame[frame["date"] < cutoff]
    valid = frame[frame["date"] >= cutoff]
    train_set = lgb.Dataset(features(fit), label=fit["sales"].astype(np.float32), feature_name=FEATURES)
    booster = lgb.train(params, train_set, num_boost_round=params["num_iterations"])
    predicted = booster.predict(features(valid), num_threads=params.get("num_threads", 0))
    score = smape(valid["sales"], predicted)
    booster.save_model(out_path)
    return time.perf_counter() - started, score


def train_rust(demand, data, cutoff, threads, rounds, out_dir):
    started = time.perf_counter()
    subprocess.run(
        [demand, "train", "--data", data, "--out", out_dir, "--version", "parity",
         "--split", f"time:{cutoff}", "--threads", str(threads), "--rounds", str(rounds)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - started
    with open(os.path.join(out_dir, "manifest.json")) as f:
        manifest = json.load(f)
    return elapsed, manifest


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demand", required=True, help="path of the release `demand` binary")
    parser.add_argument("--data", required=True)
    parser.add_argument("--cutoff", default="2017-10-01")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="parity-")
    rust_dir = os.path.join(work, "rust")
    python_model = os.path.join(work, "python-model.txt")

    rust_times, python_times = [], []
    manifest, python_smape = None, None
    for _ in range(args.repeats):
        elapsed, manifest = train_rust(args.demand, args.data, args.cutoff, args.threads, args.rounds, rust_dir)
        rust_times.append(elapsed)
        params = dict(manifest["parameters"])
        elapsed, python_smape = train_python(args.data, args.cutoff, params, python_model)
        python_times.append(elapsed)

    rust_smape = manifest["metrics"]["smape"]
    frame = pd.read_csv(args.data)
    valid = features(frame[frame["date"] >= args.cutoff])
    rust_predictions = lgb.Booster(model_file=os.path.join(rust_dir, "model.txt")).predict(valid)
    python_predictions = lgb.Booster(model_file=python_model).predict(valid)
    max_diff = float(np.max(np.abs(rust_predictions - python_predictions)))
    identical = bool(np.array_equal(rust_predictions, python_predictions))

    rust_median = statistics.median(rust_times)
    python_median = statistics.median(python_times)
    spread = lambda xs: f"{min(xs):.1f}-{max(xs):.1f}"
    relative = abs(rust_smape - python_smape) / python_smape * 100
    print(f"Parity on {args.data}: split time:{args.cutoff}, {args.rounds} rounds, "
          f"{args.threads} thread(s), {len(valid)} validation rows, "
          f"lightgbm {lgb.__version__} (Python) vs the LightGBM vendored by lightgbm3-sys")
    print()
    print("| figure | demand (Rust) | Python lightgbm | comparison |")
    print("|---|---|---|---|")
    print(f"| validation SMAPE (%) | {rust_smape:.4f} | {python_smape:.4f} | {relative:.3f}% relative (goal <= 0.5%) |")
    print(f"| train time, median of {args.repeats} (s) | {rust_median:.1f} ({spread(rust_times)}) | "
          f"{python_median:.1f} ({spread(python_times)}) | Rust/Python {rust_median / python_median:.2f} (goal <= 1.15) |")
    verdict = "identical" if identical else f"max abs difference {max_diff:.3g}"
    print(f"| predictions on the validation rows | | | {verdict} |")
    ok = relative <= 0.5 and rust_median / python_median <= 1.15
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
