#!/usr/bin/env python3
"""Trains the Python LightGBM package on rows `demand train` fitted, for the parity test.

Reads the fit rows (features then label), the validation rows (features) and the parameters
`demand train` recorded in its manifest; trains with them for the same number of rounds;
writes the booster's model text and its predictions on the validation rows (JSON numbers in
Python's shortest round-trip form, so the comparison is bit for bit). The test (`tests/tests/parity.rs`) compares.
It needs only lightgbm and numpy (`make deps` installs lightgbm into .local/parity-venv).
"""

import argparse
import json

import lightgbm as lgb
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", required=True, help="CSV: header of feature names then label")
    parser.add_argument("--valid", required=True, help="CSV: header of feature names")
    parser.add_argument("--params", required=True, help="JSON object of LightGBM parameters")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    with open(args.fit) as f:
        names = f.readline().strip().split(",")[:-1]
    fit = np.loadtxt(args.fit, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    valid = np.loadtxt(args.valid, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    with open(args.params) as f:
        params = json.load(f)

    # The label is single precision, as `demand train` hands it to LightGBM.
    train_set = lgb.Dataset(fit[:, :-1], label=fit[:, -1].astype(np.float32), feature_name=names)
    booster = lgb.train(params, train_set, num_boost_round=params["num_iterations"])
    predictions = booster.predict(valid, num_threads=params.get("num_threads", 0))
    with open(args.out, "w") as f:
        json.dump(
            {
                "lightgbm": lgb.__version__,
                "model": booster.model_to_string(),
                "predictions": [float(p) for p in predictions],
            },
            f,
        )


if __name__ == "__main__":
    main()
