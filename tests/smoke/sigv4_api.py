"""A stand-in for the deployed API with ApiAuth=IAM, on 127.0.0.1, for tests/tests/smoke_sigv4.rs.

Like API Gateway with an IAM authorizer it answers 403 {"message": "Forbidden"} to a request
whose AWS Signature Version 4 (service execute-api) is missing or does not verify against the
one set of credentials it is given; signed requests get the answers `make smoke` expects from
the real API (health 200, predict 200, store 0 422). The signature is recomputed with
botocore's SigV4 signer over exactly the headers the request says it signed.

With --bearer it stands in for ApiAuth=JWT instead: only `Authorization: Bearer <that token>`
is answered.

Prints `listening <port>` once ready, then one JSON line per request.
"""

import argparse
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def verify(args, method, path, headers, body):
    """Why the request's signature is refused, or None when it verifies."""
    authorization = headers.get("authorization", "")
    if args.bearer:
        # Like a JWT authorizer, reduced to the one token it accepts.
        if authorization != f"Bearer {args.bearer}":
            return "no valid bearer token"
        return None
    algorithm, _, fields = authorization.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return "not signed with SigV4"
    parts = dict(
        field.strip().split("=", 1) for field in fields.split(",") if "=" in field
    )
    scope = parts.get("Credential", "").split("/")
    if len(scope) != 5 or scope[0] != args.access_key:
        return "another access key"
    if scope[2:] != [args.region, "execute-api", "aws4_request"]:
        return f"scope {scope[2:]} is not {args.region}/execute-api"
    if args.token and headers.get("x-amz-security-token") != args.token:
        return "session token missing"
    signed = parts.get("SignedHeaders", "").split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "host and x-amz-date must be signed"
    request = AWSRequest(
        method=method,
        url=f"http://{headers['host']}{path}",
        data=body,
        headers={name: headers[name] for name in signed if name in headers},
    )
    signer = SigV4Auth(
        Credentials(args.access_key, args.secret_key, args.token or None),
        "execute-api",
        args.region,
    )
    request.context["timestamp"] = headers["x-amz-date"]
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, parts.get("Signature", "")):
        return "signature does not verify"
    return None


def handler(args):
    class Handler(BaseHTTPRequestHandler):
        def answer(self, status, body, record):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            print(json.dumps({**record, "status": status}), flush=True)

        def serve(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            refused = verify(args, self.command, self.path, headers, body)
            record = {
                "method": self.command,
                "path": self.path,
                "refused": refused,
                "signed_headers": headers.get("authorization", "").partition(
                    "SignedHeaders="
                )[2].split(",")[0],
            }
            if refused:
                return self.answer(403, {"message": "Forbidden"}, record)
            if self.command == "GET" and self.path == "/v1/api/health":
                return self.answer(200, {"status": "healthy"}, record)
            if self.command == "POST" and self.path == "/v1/api/predict":
                request = json.loads(body or b"{}")
                if request.get("store", 0) < 1:
                    return self.answer(422, {"detail": [{"loc": ["body", "store"]}]}, record)
                return self.answer(200, {"sales": 12.5}, record)
            return self.answer(404, {"detail": "Not Found"}, record)

        do_GET = serve
        do_POST = serve

        def log_message(self, *_):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--region", required=True)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--bearer", default="", help="accept this bearer token instead of SigV4")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(args))
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
