#!/usr/bin/env python3
"""S3 + Step Functions on 127.0.0.1 in one process, with state machines really executed.

moto only runs a state machine's states when its `stepfunctions.execute_state_machine`
config is set, and that config lives in the process that holds the backends. So this starts
`mock_aws` with it and serves the same backends over HTTP with moto's threaded server. Lambda
tasks of the state machines are sent to AWS_ENDPOINT_URL_LAMBDA (e.g. `cargo lambda watch`).

    infra/local/moto_sfn.py --port 4566

Runs until SIGTERM / SIGINT.
"""

import argparse
import signal
import sys
import threading


def tolerate_second_executions() -> None:
    """Lets moto start more than one execution per process.

    moto 5.2 deep-copies a state machine when it starts an execution; once an execution has
    run, the copy reaches its thread locks and fails (HTTP 500). The copy only protects an
    execution from later updates of its state machine, which local tests do not make, so a
    shallow copy is used when the deep one fails.
    """
    import copy
    import types

    from moto.stepfunctions.parser import models

    def deepcopy(obj, memo=None):
        try:
            return copy.deepcopy(obj, memo)
        except TypeError:
            return copy.copy(obj)

    models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args()

    from moto import mock_aws
    from moto.server import ThreadedMotoServer

    tolerate_second_executions()

    mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
    mock.start()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    print(f"moto (S3, Step Functions executing) on http://{args.host}:{args.port}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    mock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
