"""Wrap a LightGBM text booster as an MLflow model and upload it to S3.

This is how the original Python service got its model: an MLflow LightGBM model directory in
S3 that `mlflow models serve -m s3://...` downloads and serves. Prints the s3 URI.
"""

import argparse
import os
import tempfile

import boto3
import lightgbm
import mlflow.lightgbm
from botocore.config import Config
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

# The order the booster was trained on; the scoring server reorders request columns to the
# signature, so the signature is what pins it.
FEATURES = ["store", "item", "month", "day", "year"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-txt", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:4566")
    args = ap.parse_args()

    booster = lightgbm.Booster(model_file=args.model_txt)
    # double, not long: JSON ints are accepted for double columns, while a long schema would
    # reject floats; and it is what pandas hands the booster anyway.
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in FEATURES]),
        outputs=Schema([ColSpec("double")]),
    )

    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if args.bucket not in buckets:
        s3.create_bucket(Bucket=args.bucket)

    prefix = args.prefix.strip("/")
    with tempfile.TemporaryDirectory(prefix="peer-mlflow-") as tmp:
        local = os.path.join(tmp, "model")
        # pip_requirements given explicitly: otherwise mlflow infers them by importing the model
        # in a subprocess, which is slow and irrelevant with --env-manager local.
        mlflow.lightgbm.save_model(
            booster,
            local,
            signature=signature,
            pip_requirements=[f"lightgbm=={lightgbm.__version__}"],
        )
        for dirpath, _, files in os.walk(local):
            for name in files:
                path = os.path.join(dirpath, name)
                key = f"{prefix}/{os.path.relpath(path, local)}"
                s3.upload_file(path, args.bucket, key)
    print(f"s3://{args.bucket}/{prefix}")


if __name__ == "__main__":
    main()
