"""RFC 9457 problem+json for every error the service answers."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import DomainError
from app.db.session import database_unavailable

log = logging.getLogger("app.errors")

PROBLEM = "application/problem+json"
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
RETRY_AFTER_SECONDS = 5
__all__ = ["database_unavailable", "install", "problem", "unavailable"]


def unavailable(detail: str = "the database cannot be reached; retry shortly") -> JSONResponse:
    """503 `service_unavailable` with `Retry-After`."""
    return problem(
        503,
        "service_unavailable",
        detail,
        title="Service unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def problem(
    status: int, code: str, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {
        "type": f"https://live-collab.dev/problems/{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM)


def _loc(loc: tuple | list) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in loc]


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, title=exc.title, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": _loc(e.get("loc", ())), "msg": e.get("msg", "invalid")} for e in exc.errors()]
        return problem(422, "validation_failed", "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        from app.api.middleware import _TooLarge

        if isinstance(exc.__cause__, _TooLarge):  # FastAPI wraps a failed body read in a 400
            return problem(413, "payload_too_large", "the body is over the size limit")
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem(exc.status_code, code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(StaleDataError)
    async def _stale(_: Request, exc: StaleDataError) -> JSONResponse:
        return problem(409, "conflict", "the resource was changed by another request; reload and retry")

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity error answered as 409: %s", exc.orig)
        return problem(409, "conflict", "the change conflicts with another one; reload and retry")

    @app.exception_handler(DBAPIError)
    async def _dbapi(_: Request, exc: DBAPIError) -> JSONResponse:
        text = str(exc.orig).lower()
        if "deadlock" in text or "could not serialize" in text or "database is locked" in text:
            return problem(409, "conflict", "the change raced with another one; retry", headers={"Retry-After": "1"})
        if database_unavailable(exc):
            log.warning("database unavailable, answered 503: %s", type(exc.orig).__name__)
            return unavailable()
        if str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "").startswith("22"):
            # SQLSTATE class 22, data exception: a value the database refuses (NUL in text, a
            # number out of range) came from the request
            log.info("data exception answered as 422: %s", exc.orig)
            return problem(
                422,
                "validation_failed",
                "a value of the request is not acceptable",
                errors=[{"loc": ["request"], "msg": "a value is not acceptable"}],
            )
        log.exception("database error")
        return problem(500, "internal_error", "an internal error occurred")

    async def _unreachable(_: Request, exc: Exception) -> JSONResponse:
        """Errors raised before SQLAlchemy wraps them: a refused connect (OSError), a pool that
        timed out, asyncpg's own connection errors."""
        if database_unavailable(exc):
            log.warning("database unavailable, answered 503: %s", type(exc).__name__)
            return unavailable()
        log.exception("unhandled error")
        return problem(500, "internal_error", "an internal error occurred")

    for error_type in _raw_connection_errors():
        app.add_exception_handler(error_type, _unreachable)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(500, "internal_error", "an internal error occurred")


def _raw_connection_errors() -> tuple[type[Exception], ...]:
    types: list[type[Exception]] = [OSError, PoolTimeout]
    try:
        import asyncpg  # type: ignore[import-untyped]  # no stubs; only its exception classes are used
    except ImportError:  # pragma: no cover - SQLite-only installs
        return tuple(types)
    return (
        *types,
        asyncpg.exceptions.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.TooManyConnectionsError,
    )
