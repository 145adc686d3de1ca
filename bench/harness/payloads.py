"""The requests and payloads both stacks are sent."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from pathlib import Path

from harness.procs import record_command


def domain(manifest: dict) -> tuple[list[int], list[int]]:
    d = manifest.get("domain") or {}
    return d.get("stores") or list(range(1, 11)), d.get("items") or list(range(1, 51))


def predict_bodies(manifest: dict, n: int) -> list[dict]:
    """n distinct {date, store, item} requests inside the model's training domain."""
    stores, items = domain(manifest)
    start = dt.date(2018, 1, 1)
    return [{"date": (start + dt.timedelta(days=i % 365)).isoformat(),
             "store": stores[i % len(stores)], "item": items[(i // len(stores)) % len(items)]}
            for i in range(n)]


def batch_requests() -> list[dict]:
    """10 stores x 50 items x 90 days of 2018 = 45,000 requests (as bench/peer/check.sh)."""
    days = [dt.date(2018, 1, 1) + dt.timedelta(n) for n in range(90)]
    return [{"date": d.isoformat(), "store": s, "item": i}
            for s in range(1, 11) for i in range(1, 51) for d in days]


def model_rows(demand_bin: Path, model_dir: Path, requests: list[dict], work: Path, name: str
               ) -> tuple[list[str], list[list[float]]]:
    """(columns, one feature row per request): the model function's payload for the requests,
    written by `demand predict --payload` with the orchestrator's own feature code (none is written here)."""
    csv = work / f"{name}.csv"
    csv.write_text("id,date,store,item\n" + "".join(
        f"{n},{r['date']},{r['store']},{r['item']}\n" for n, r in enumerate(requests)))
    out = work / f"{name}.json"
    cmd = [str(demand_bin), "predict", "--payload", "--model-dir", str(model_dir), "--test", str(csv),
           "--out", str(out)]
    record_command(f"the model payload of {len(requests)} requests", cmd)
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    split = json.loads(out.read_bytes())["dataframe_split"]
    return split["columns"], split["data"]


def split_payload(columns: list[str], rows: list[list[float]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()


def apigw_event(body: dict, path: str = "/v1/api/predict") -> bytes:
    """An API Gateway HTTP API (payload 2.0) event, as the function URL / HTTP API sends."""
    now = dt.datetime.now(dt.timezone.utc)
    rid = str(uuid.uuid4())
    return json.dumps({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "bench.local", "user-agent": "bench"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "bench.local",
            "domainPrefix": "bench", "requestId": rid, "routeKey": "$default", "stage": "$default",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": json.dumps(body), "isBase64Encoded": False,
    }).encode()
