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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args()

    from moto import mock_aws
    from moto.server import ThreadedMotoServer

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
