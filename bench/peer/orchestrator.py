"""The original Python orchestrator: FastAPI in front of MLflow's scoring server.

POST /v1/api/predict {date, store, item} -> {"sales": float}; GET /v1/api/health.
Run: python orchestrator.py --port 8000 --mlflow-url http://127.0.0.1:5000
(or MLFLOW_URL=... uvicorn orchestrator:app --host 127.0.0.1 --port 8000).
"""

import argparse
import os
from contextlib import asynccontextmanager
from datetime import date

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

COLUMNS = ["store", "item", "month", "day", "year"]
# As long as the scoring server's own request timeout, so a slow model answers 504 from MLflow
# rather than an httpx timeout here.
TIMEOUT_S = 60.0


class PredictRequest(BaseModel):
    date: date
    store: int
    item: int


class PredictResponse(BaseModel):
    sales: float


@asynccontextmanager
async def lifespan(app: FastAPI):
    # One pooled client for the process: a client per request would reconnect every time.
    app.state.mlflow_url = os.environ.get("MLFLOW_URL", "http://127.0.0.1:5000").rstrip("/")
    app.state.client = httpx.AsyncClient(timeout=TIMEOUT_S)
    yield
    await app.state.client.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/api/predict", response_model=PredictResponse)
async def predict(req: PredictRequest) -> PredictResponse:
    d = req.date
    row = [req.store, req.item, d.month, d.weekday(), d.year]
    payload = {"dataframe_split": {"columns": COLUMNS, "data": [row]}}
    try:
        r = await app.state.client.post(f"{app.state.mlflow_url}/invocations", json=payload)
    except httpx.TimeoutException:
        raise HTTPException(504, "model timed out")
    except httpx.HTTPError as e:
        raise HTTPException(503, f"model unreachable: {e}")
    if r.status_code != 200:
        raise HTTPException(502, f"model answered {r.status_code}: {r.text[:200]}")
    return PredictResponse(sales=r.json()["predictions"][0])


@app.get("/v1/api/health")
async def health() -> dict:
    try:
        r = await app.state.client.get(f"{app.state.mlflow_url}/ping")
        ok = r.status_code == 200
    except httpx.HTTPError:
        ok = False
    if not ok:
        raise HTTPException(503, "model not ready")
    return {"status": "healthy"}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    ap.add_argument("--mlflow-url", default=os.environ.get("MLFLOW_URL", "http://127.0.0.1:5000"))
    args = ap.parse_args()
    os.environ["MLFLOW_URL"] = args.mlflow_url
    # Single worker and uvicorn's default logging (access log on), like the original deployment.
    uvicorn.run(app, host=args.host, port=args.port, workers=1)
