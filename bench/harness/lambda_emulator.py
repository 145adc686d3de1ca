"""A mini Lambda Runtime API (+ the Invoke API): hands events to a function binary started
with AWS_LAMBDA_RUNTIME_API pointing at it and records when each event went out and when its
response came back."""

from __future__ import annotations

import json
import queue
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Invocation:
    def __init__(self, function: str, body: bytes):
        self.function = function
        self.id = str(uuid.uuid4())
        self.body = body
        self.t_queued = time.perf_counter_ns()
        self.t_out_start: int | None = None  # before the event was written to the function
        self.t_out: int | None = None  # after it was written
        self.t_in: int | None = None  # when the function's whole response was read
        self.error = False
        self.error_type = ""
        self.result = b""
        self.done = threading.Event()

    @property
    def duration_ms(self) -> float:
        start = self.t_out if self.t_out is not None and self.t_out <= self.t_in else self.t_out_start
        return (self.t_in - start) / 1e6


class Function:
    def __init__(self, name: str):
        self.name = name
        self.queue: queue.Queue[Invocation] = queue.Queue()
        self.inflight: dict[str, Invocation] = {}
        self.completed: list[Invocation] = []
        self.init_error: bytes | None = None
        self.lock = threading.Lock()


RUNTIME_PATH = re.compile(
    r"^(?:/(?P<fn>[^/]+))?/2018-06-01/runtime/"
    r"(?:invocation/(?:(?P<next>next)|(?P<id>[^/]+)/(?P<kind>response|error))|(?P<init>init/error))$")
INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<fn>[^/]+)/invocations$")


class MiniLambda:
    """Lambda Runtime API for one or more functions (AWS_LAMBDA_RUNTIME_API=http://H:P/NAME;
    the bare /2018-06-01/... paths serve the only function), plus the Invoke API."""

    def __init__(self, deadline_ms: int = 900_000):
        self.functions: dict[str, Function] = {}
        self.deadline_ms = deadline_ms
        self.stopping = threading.Event()
        mini = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle's algorithm
                # and the client's delayed ACK hold the body back ~40 ms.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def read_body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def function(self, name: str | None) -> Function | None:
                if name is None and len(mini.functions) == 1:
                    return next(iter(mini.functions.values()))
                return mini.functions.get(name or "")

            def do_GET(self):
                m = RUNTIME_PATH.match(self.path)
                fn = self.function(m.group("fn")) if m and m.group("next") else None
                if fn is None:
                    self.reply(404, b'{"errorMessage": "unknown route"}')
                    return
                while not mini.stopping.is_set():
                    try:
                        inv = fn.queue.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    with fn.lock:
                        fn.inflight[inv.id] = inv
                    trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"
                    inv.t_out_start = time.perf_counter_ns()
                    self.reply(200, inv.body, {
                        "Lambda-Runtime-Aws-Request-Id": inv.id,
                        "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + mini.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn":
                            f"arn:aws:lambda:us-east-1:123456789012:function:{fn.name}",
                        "Lambda-Runtime-Trace-Id": trace,
                    })
                    inv.t_out = time.perf_counter_ns()
                    return

            def do_POST(self):
                m = RUNTIME_PATH.match(self.path)
                if m and (m.group("id") or m.group("init")):
                    body = self.read_body()
                    t_in = time.perf_counter_ns()
                    fn = self.function(m.group("fn"))
                    if fn is None:
                        self.reply(404, b'{"errorMessage": "unknown function"}')
                        return
                    if m.group("init"):
                        fn.init_error = body or b"init error"
                        self.reply(202, b'{"status": "OK"}')
                        return
                    with fn.lock:
                        inv = fn.inflight.pop(m.group("id"), None)
                    if inv is None:
                        self.reply(400, b'{"errorMessage": "unknown request id"}')
                        return
                    inv.t_in, inv.result = t_in, body
                    inv.error = m.group("kind") == "error"
                    inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
                    with fn.lock:
                        fn.completed.append(inv)
                    self.reply(202, b'{"status": "OK"}')
                    inv.done.set()
                    return
                m = INVOKE_PATH.match(self.path)
                if m:
                    body = self.read_body()
                    name = urllib.parse.unquote(m.group("fn")).rsplit(":function:", 1)[-1].split(":")[0]
                    if name not in mini.functions:
                        self.reply(404, json.dumps({"Type": "User", "Message": f"Function not found: {name}"}).encode(),
                                   {"X-Amzn-ErrorType": "ResourceNotFoundException"})
                        return
                    inv = mini.invoke(name, body)
                    headers = {"X-Amz-Executed-Version": "$LATEST", "X-Amzn-RequestId": inv.id}
                    if inv.error:
                        headers["X-Amz-Function-Error"] = "Unhandled"
                    self.reply(200, inv.result, headers)
                    return
                self.reply(404, b'{"errorMessage": "unknown route"}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, name: str) -> Function:
        self.functions[name] = Function(name)
        return self.functions[name]

    def runtime_api(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def submit(self, name: str, body: bytes) -> Invocation:
        inv = Invocation(name, body)
        self.functions[name].queue.put(inv)
        return inv

    def invoke(self, name: str, body: bytes, timeout: float = 900.0,
               proc: subprocess.Popen | None = None) -> Invocation:
        inv = self.submit(name, body)
        self.wait(inv, timeout, proc)
        return inv

    def wait(self, inv: Invocation, timeout: float, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        fn = self.functions[inv.function]
        while not inv.done.wait(0.05):
            if fn.init_error is not None:
                raise RuntimeError(f"{fn.name}: init error {fn.init_error[:300]!r}")
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{fn.name} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{fn.name}: no response within {timeout:.0f} s")

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
