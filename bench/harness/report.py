"""Goals, statistics and formatting of the report."""

from __future__ import annotations

import statistics
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent.parent


def portable(text: str, work: Path) -> str:
    """The report speaks of the repository, not of the machine it ran on: paths become
    relative to the repository root, the run's work directory `$WORK`, the home `~`."""
    text = text.replace(str(work), "$WORK")
    text = text.replace(str(ROOT) + "/", "").replace(str(ROOT), ".")
    return text.replace(str(Path.home()), "~")


PEER = ROOT / "bench" / "peer"
VENV = ROOT / ".local" / "bench-venv"

# AWS arm64 Lambda and HTTP API prices (us-east-1).
PRICE_GB_S = 0.0000133334
PRICE_LAMBDA_REQUEST = 0.20 / 1e6
PRICE_HTTP_API_REQUEST = 1.00 / 1e6
OUR_MEMORY_MB = 128

GOALS = {
    "cold": ("ours <= 0.01x MLflow server", lambda r: r <= 0.01),
    "first_warm": ("<= 2x", lambda r: r <= 2.0),
    "inproc": ("native <= 0.05x raw LightGBM", lambda r: r <= 0.05),
    "inproc_10k": ("native, 1 thread <= 0.03x raw LightGBM", lambda r: r <= 0.03),
    "inproc_threads": ("all threads >= 1.8x one thread", lambda r: r >= 1.8),
    "parse": ("native parse of 3000 trees <= 15 ms", lambda r: r <= 15.0),
    "e2e_p50": ("ours <= 0.1x peer", lambda r: r <= 0.1),
    "e2e_p99": ("ours <= 0.1x peer", lambda r: r <= 0.1),
    "throughput": ("ours >= 10x peer, 0 errors", lambda r: r >= 10.0),
    "batch": ("ours >= 10x peer", lambda r: r >= 10.0),
    "memory": ("ours <= 0.08x", lambda r: r <= 0.08),
    "artifact": ("reported", None),
    "training": ("<= 1.15x", lambda r: r <= 1.15),
    "cost": ("ours < peer", lambda r: r < 1.0),
}

COMMANDS: list[tuple[str, str]] = []  # (what, command line) of everything started, for the report


def summary(xs: list[float]) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return {}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def fmt_num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_s(s: dict, unit: str = "", scale: float = 1.0) -> str:
    """'median unit (min-max)' over the runs."""
    if not s:
        return "n/a"
    med = fmt_num(s["median"] * scale)
    if s["n"] > 1:
        return f"{med} {unit} ({fmt_num(s['min'] * scale)}-{fmt_num(s['max'] * scale)})".replace("  ", " ")
    return f"{med} {unit}".strip()


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def verdict(key: str, ratio: float | None, extra_ok: bool = True) -> str:
    goal, check = GOALS[key]
    if check is None:
        return "reported"
    if ratio is None:
        return "n/a"
    ok = check(ratio) and extra_ok
    # Ratios are shown to four significant digits so a near miss is not rounded onto the goal.
    shown = f"{ratio:.4g} ms" if key == "parse" else f"{ratio:.4g}x"
    return "met" if ok else f"missed ({shown})"
