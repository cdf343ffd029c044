"""A real HTTP receiver on 127.0.0.1 (a thread) for webhook and SMS-gateway tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


class Receiver:
    def __init__(self, secret: str | None = None, fail_first: int = 0, fail_status: int = 500) -> None:
        self.secret = secret
        self.fail_left = fail_first
        self.fail_status = fail_status
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    signature = self.headers.get("LC-Signature")
                    valid = bool(receiver.secret and signature and verify(receiver.secret, signature, body))
                    failing = receiver.fail_left > 0
                    if failing:
                        receiver.fail_left -= 1
                    receiver.requests.append(
                        {"headers": dict(self.headers), "body": body, "json": json.loads(body), "valid": valid, "failed": failing}
                    )
                self.send_response(receiver.fail_status if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def succeeded(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if not r["failed"]]
