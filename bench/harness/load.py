"""The load generator (oha), its JSON summary reduced to what the report shows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.procs import record_command


def run_oha(oha: str, url: str, args: list[str], what: str, bodies: Path | None = None,
            body: bytes | None = None, workdir: Path | None = None) -> dict:
    cmd = [oha, "--no-tui", "--output-format", "json", "-m", "POST", "-T", "application/json", *args]
    if bodies is not None:
        cmd += ["-Z", str(bodies)]
    elif body is not None:
        path = workdir / f"body-{abs(hash(body)) % 10**8}.json"
        path.write_bytes(body)
        cmd += ["-D", str(path)]
    cmd.append(url)
    record_command(what, cmd)
    out = subprocess.run(cmd, capture_output=True, check=False, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"oha failed ({out.returncode}): {out.stderr.decode(errors='replace')[-500:]}")
    data = json.loads(out.stdout)
    codes = {int(k): v for k, v in (data.get("statusCodeDistribution") or {}).items()}
    errors = sum((data.get("errorDistribution") or {}).values())
    non2xx = sum(v for k, v in codes.items() if not 200 <= k < 300)
    lat = data.get("latencyPercentiles") or {}
    return {
        "rps": data["summary"].get("requestsPerSec") or 0.0,
        "p50_ms": (lat.get("p50") or 0) * 1000, "p99_ms": (lat.get("p99") or 0) * 1000,
        "mean_ms": (data["summary"].get("average") or 0) * 1000,
        "requests": sum(codes.values()) + errors, "errors": errors + non2xx,
        "error_detail": {**{str(k): v for k, v in codes.items() if not 200 <= k < 300},
                         **(data.get("errorDistribution") or {})},
    }
