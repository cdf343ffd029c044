"""Pure ASGI middleware: request ids, JSON access logs, latency metrics, and a body-size cap."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.i18n import msg
from app.core.logging import request_id_var

log = logging.getLogger("app.access")
REQUEST_LATENCY = Histogram(
    "lc_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


_LATENCY_CHILDREN: dict[tuple[str, str, int], Any] = {}


def _latency(method: str, route: str, status: int) -> Any:
    """The histogram's child for these labels (prometheus_client's `labels()` validates and locks
    on every call; the set of children is bounded by routes × methods × statuses)."""
    key = (method, route, status)
    child = _LATENCY_CHILDREN.get(key)
    if child is None:
        child = _LATENCY_CHILDREN[key] = REQUEST_LATENCY.labels(method, route, str(status))
    return child


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = incoming if incoming.replace("-", "").isalnum() else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            _latency(scope["method"], template, status).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 problem+json, whether announced or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from app.api.errors import language_of_scope, problem

        too_large = msg("the body is over {max_bytes} bytes", max_bytes=self.max_bytes)

        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await problem(413, "payload_too_large", too_large, language=language_of_scope(scope))(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await problem(413, "payload_too_large", too_large, language=language_of_scope(scope))(scope, receive, send)


class _TooLarge(Exception):
    pass
