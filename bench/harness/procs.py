"""Processes: started in sessions of their own, their memory, ports, and every one stopped; the
command lines started, for the report."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.report import COMMANDS


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def record_command(what: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    line = shlex.join(str(c) for c in cmd)
    if env:
        line = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + line
    if all(w != what for w, _ in COMMANDS):
        COMMANDS.append((what, line))


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is `sid` (we start each service in its own)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def proc_mem_kib(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def proc_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def proc_exe_name(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


class Procs:
    """Starts services in their own session / process group and stops every one of them."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.items: list[tuple[str, subprocess.Popen]] = []
        self.started: list[tuple[str, subprocess.Popen]] = []  # every one ever, for the final check
        self.ports: list[int] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None, what: str | None = None,
              shown_env: dict[str, str] | None = None) -> subprocess.Popen:
        logfile = open(self.logdir / f"{name}.log", "wb")
        try:
            proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=logfile,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    start_new_session=True)
        finally:
            logfile.close()
        self.items.append((name, proc))
        self.started.append((name, proc))
        record_command(what or name, cmd, shown_env)
        return proc

    def log_tail(self, name: str, lines: int = 25) -> str:
        try:
            text = (self.logdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen) -> None:
        sid = proc.pid
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            members = session_pids(sid)
            if proc.poll() is not None and not members:
                break
            try:
                os.killpg(sid, sig)
            except ProcessLookupError:
                pass
            for pid in members:  # a member that left the group but not the session
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if proc.poll() is not None and not session_pids(sid):
                    break
                time.sleep(0.05)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            log(f"warning: pid {proc.pid} did not stop")
        self.items = [(n, p) for n, p in self.items if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.items)):
            self.stop(proc)

    def leftovers(self) -> list[str]:
        bad = [f"127.0.0.1:{p} still listening" for p in sorted(set(self.ports)) if port_open(p)]
        for name, proc in self.started:
            if proc.poll() is None or session_pids(proc.pid):
                bad.append(f"{name} (pid {proc.pid}) still running")
        return bad


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, proc: subprocess.Popen, name: str, procs: Procs, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}) before listening:\n{procs.log_tail(name)}")
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")
