"""One function under aws-lambda-rie, the Lambda Runtime Interface Emulator that ships inside
the SAM CLI package (what `sam local` runs in its containers), run here as a plain process.

RIE starts the function's bootstrap at the first invoke (as Lambda does on a cold start),
serves it the Runtime API, serves us the Invoke API for the function name `function`, and logs
Lambda's own lines: `INIT REPORT(durationMs: ...)` for the init phase, then a `REPORT` line per
invoke. The benchmark times cold starts through it. It does not take invocation durations from
it: RIE's first `Duration` includes the init phase (Lambda's does not), its `Init Duration`
and `Max Memory Used` are not measured (a fraction of a millisecond, the memory size), and its
warm `Duration`s read about 0.6 ms where the mini runtime (lambda_emulator.py) times the same
model invocations at about 0.2 ms from the event handed out to the answer read, i.e. they
carry RIE's own dispatch.
"""

from __future__ import annotations

import importlib.util
import platform
import re
import shutil
import subprocess
from pathlib import Path

from .http_client import post_once
from .procs import Procs, free_port, wait_port

INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")


def find_rie() -> Path | None:
    """The RIE binary of the installed SAM CLI package, for this machine's architecture."""
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    candidates = []
    spec = importlib.util.find_spec("samcli")
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent)
    # The SAM CLI is installed in an interpreter of its own (pip install aws-sam-cli), not this
    # venv: ask the `python3` on PATH, and the interpreter of the `sam` script if it names one.
    pythons = [shutil.which("python3")]
    sam = shutil.which("sam")
    if sam:
        try:
            first = Path(sam).read_text(errors="replace").splitlines()[0]
        except (OSError, IndexError):
            first = ""
        if first.startswith("#!") and "python" in first:
            pythons.append(first[2:].split()[0])
    for py in filter(None, pythons):
        try:
            out = subprocess.run([py, "-c", "import samcli, os; print(os.path.dirname(samcli.__file__))"],
                                 capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if out:
            candidates.append(Path(out))
    for base in candidates:
        rie = base / "local" / "rapid" / f"aws-lambda-rie-{arch}"
        if rie.is_file():
            return rie
    return None


class RieFunction:
    """A function binary under RIE on two free loopback ports; `procs` stops it."""

    def __init__(self, procs: Procs, rie: Path, name: str, binary: str, env: dict[str, str],
                 what: str, shown_env: dict[str, str]):
        self.procs = procs
        self.name = name
        self.binary = binary
        self.port = free_port()
        runtime_port = free_port()
        procs.ports += [self.port, runtime_port]
        self.proc = procs.spawn(name, [str(rie), "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
                                       "--runtime-api-address", f"127.0.0.1:{runtime_port}", binary],
                                env=env, what=what, shown_env=shown_env)
        wait_port(self.port, self.proc, name, procs, 30)

    @property
    def endpoint(self) -> str:
        """The Invoke API's base URL (AWS_ENDPOINT_URL_LAMBDA for a caller); the function is `function`."""
        return f"http://127.0.0.1:{self.port}"

    def invoke(self, body: bytes, timeout: float) -> tuple[bytes, float]:
        """The function's answer and the wall milliseconds from sending the invoke to reading it."""
        status, answer, seconds = post_once(self.port, "/2015-03-31/functions/function/invocations",
                                            body, timeout)
        wall_ms = seconds * 1e3
        if status != 200:
            raise RuntimeError(f"{self.name}: invoke answered {status}: {answer[:300]!r}\n"
                               f"{self.procs.log_tail(self.name)}")
        return answer, wall_ms

    def log_lines(self) -> list[str]:
        return (self.procs.logdir / f"{self.name}.log").read_text(errors="replace").splitlines()

    def init_ms(self) -> float | None:
        """RIE's INIT REPORT: bootstrap start -> its first request for an event."""
        for line in self.log_lines():
            m = INIT_REPORT.search(line)
            if m:
                return float(m.group(1))
        return None
