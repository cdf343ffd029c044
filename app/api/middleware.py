"""Pure ASGI middleware: request ids, JSON access logs, latency metrics, a body-size cap, header
limits and security headers."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
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


class HeaderLimitMiddleware:
    """Refuse a request whose headers are over the limits (security.md: 8 KiB a header, 64 KiB in
    all) with 431 problem+json `headers_too_large`, whatever server runs the app: uvicorn's
    httptools parser has no limit of its own, and h11's is set from the same figures (app/cli.py)."""

    def __init__(self, app: ASGIApp, max_header_bytes: int, max_total_bytes: int) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_total_bytes = max_total_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            total = 0
            for name, value in scope.get("headers") or ():
                size = len(name) + len(value)
                total += size
                if size > self.max_header_bytes or total > self.max_total_bytes:
                    from app.api.errors import problem

                    which = name.decode("latin-1")
                    detail = (
                        f"the header {which} is over {self.max_header_bytes} bytes"
                        if size > self.max_header_bytes
                        else f"the request's headers are over {self.max_total_bytes} bytes in all"
                    )
                    await problem(431, "headers_too_large", detail)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


# The documentation pages: only the service's own assets (fastapi_offline serves Swagger UI's and
# ReDoc's files under /static-offline-docs), the pages' own inline script by its hash, styles
# inline (ReDoc writes its styles at run time), pictures as data:/blob: URLs (Swagger's icons),
# ReDoc's search worker from a blob:, and no framing.
DOC_PAGES = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_csp(html: bytes) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s).digest()).decode() + "'" for s in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ).replace("  ", " ")


class SecurityHeadersMiddleware:
    """Headers that keep answers where they belong (security.md): `X-Content-Type-Options:
    nosniff` on every answer; `Cache-Control: no-store` on every answer to a request that carries
    credentials (a bearer token, a signed link's `sig`, or the token request itself) unless the
    route set its own; a Content-Security-Policy and `X-Frame-Options: DENY` on /docs and /redoc."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in DOC_PAGES:
            await self._doc_page(scope, receive, send)
            return
        credentialed = (
            path == "/v1/auth/token"
            or any(name == b"authorization" for name, _ in scope.get("headers") or ())
            or b"sig=" in scope.get("query_string", b"")
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"x-content-type-options", b"nosniff"))
                if credentialed and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _doc_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message | None = None
        body = bytearray()

        async def buffer(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body"):
                    return
                assert start is not None
                csp = docs_csp(bytes(body))  # a page's hash is its own (root_path is in it)
                start["headers"] = [
                    *(start.get("headers") or []),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", csp.encode()),
                ]
                await send(start)
                await send({"type": "http.response.body", "body": bytes(body)})
                return
            await send(message)

        await self.app(scope, receive, buffer)
