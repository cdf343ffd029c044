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
from starlette.types import Scope

from app.core.errors import PROBLEM_CODES, DomainError
from app.core.i18n import DEFAULT_LANGUAGE, N_, Message, content_language, msg, negotiate, render, translate
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
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    503: "service_unavailable",
}
# Starlette's own details (routing), translated like any other message
N_("Not Found"), N_("Method Not Allowed"), N_("Not Acceptable"), N_("Unsupported Media Type")

# Pydantic's messages per error type, as templates over the error's `ctx`; pydantic's English
# text is kept for English, these are what the catalogues translate
_PYDANTIC = {
    "missing": N_("Field required"),
    "extra_forbidden": N_("Extra inputs are not permitted"),
    "string_type": N_("Input should be a valid string"),
    "string_too_short": N_("String should have at least {min_length} characters"),
    "string_too_long": N_("String should have at most {max_length} characters"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "int_type": N_("Input should be a valid integer"),
    "int_parsing": N_("Input should be a valid integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional part"),
    "float_type": N_("Input should be a valid number"),
    "float_parsing": N_("Input should be a valid number"),
    "bool_type": N_("Input should be a valid boolean"),
    "bool_parsing": N_("Input should be a valid boolean"),
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "enum": N_("Input should be {expected}"),
    "literal_error": N_("Input should be {expected}"),
    "datetime_type": N_("Input should be a valid datetime"),
    "datetime_parsing": N_("Input should be a valid datetime"),
    "datetime_from_date_parsing": N_("Input should be a valid datetime or date"),
    "date_type": N_("Input should be a valid date"),
    "date_parsing": N_("Input should be a valid date"),
    "date_from_datetime_parsing": N_("Input should be a valid date"),
    "list_type": N_("Input should be a valid list"),
    "too_short": N_("Should have at least {min_length} items"),
    "too_long": N_("Should have at most {max_length} items"),
    "dict_type": N_("Input should be a valid dictionary or object"),
    "model_type": N_("Input should be a valid dictionary or object"),
    "model_attributes_type": N_("Input should be a valid dictionary or object"),
    "json_invalid": N_("The body is not valid JSON"),
    "url_parsing": N_("Input should be a valid URL"),
    "url_scheme": N_("URL scheme should be {expected_schemes}"),
    "multiple_of": N_("Input should be a multiple of {multiple_of}"),
    "decimal_parsing": N_("Input should be a valid decimal"),
    "uuid_parsing": N_("Input should be a valid UUID"),
    "missing_argument": N_("Field required"),
}
RETRY_AFTER_SECONDS = 5
__all__ = ["database_unavailable", "install", "problem", "unavailable"]


def unavailable(
    detail: str | Message = N_("the database cannot be reached; retry shortly"), *, language: str = DEFAULT_LANGUAGE
) -> JSONResponse:
    """503 `service_unavailable` with `Retry-After`."""
    return problem(503, "service_unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, language=language)


def language_of(request: Request | None) -> str:
    """The catalogue the caller asked for with `Accept-Language` (English by default)."""
    return negotiate(request.headers.get("accept-language")) if request is not None else DEFAULT_LANGUAGE


def language_of_scope(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"accept-language":
            return negotiate(value.decode("latin-1"))
    return DEFAULT_LANGUAGE


def problem(
    status: int,
    code: str,
    detail: str | Message,
    *,
    title: str | Message | None = None,
    headers: dict[str, str] | None = None,
    language: str = DEFAULT_LANGUAGE,
    **extra: Any,
) -> JSONResponse:
    """A problem+json answer in `language`: `title` (from the catalogue of codes unless given)
    and `detail` translated, `code` never."""
    entry = PROBLEM_CODES.get(code)
    if title is None:
        title = Message(entry.title) if entry else HTTPStatus(status).phrase
    body = {
        "type": f"https://live-collab.dev/problems/{code}",
        "title": _text(title, language),
        "status": status,
        "detail": _text(detail, language),
        "code": code,
        **render(extra, language),
    }
    answer_headers = {**(headers or {}), "Content-Language": content_language(language)}
    return JSONResponse(body, status_code=status, headers=answer_headers, media_type=PROBLEM)


def _text(value: str | Message, language: str) -> str:
    return value.render(language) if isinstance(value, Message) else translate(value, language)


def _loc(loc: tuple | list) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in loc]


def _pydantic_msg(error: dict[str, Any], language: str) -> str:
    english = str(error.get("msg", "invalid"))
    if language == DEFAULT_LANGUAGE:
        return english
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        raised = ctx["error"]  # the validator's exception: its message may be a template
        if isinstance(raised, Exception) and raised.args and isinstance(raised.args[0], Message):
            return raised.args[0].render(language)
        return translate(str(raised), language)
    template = _PYDANTIC.get(kind)
    if template is None:
        return english
    try:
        return translate(template, language).format(**{k: str(v) for k, v in ctx.items()})
    except (KeyError, IndexError, ValueError):
        return english


def validation_problem(errors: list[dict[str, Any]], language: str) -> JSONResponse:
    """422 `validation_failed` for what the schema refused (body, query, path, headers)."""
    listed = [{"loc": _loc(e.get("loc", ())), "msg": _pydantic_msg(e, language)} for e in errors]
    fields = [".".join(str(part) for part in item["loc"]) for item in listed[:5]]
    if len(listed) > 5:
        fields.append("…")
    return problem(
        422,
        "validation_failed",
        msg("the request is not valid: {fields}", fields=fields or ["request"]),
        language=language,
        errors=listed,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem(
            exc.status, exc.code, exc.message, title=exc.title, headers=exc.headers, language=language_of(request), **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(list(exc.errors()), language_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        from app.api.middleware import _TooLarge

        language = language_of(request)
        if isinstance(exc.__cause__, _TooLarge):  # FastAPI wraps a failed body read in a 400
            return problem(413, "payload_too_large", "the body is over the size limit", language=language)
        code = _STATUS_CODES.get(exc.status_code) or ("internal_error" if exc.status_code >= 500 else "bad_request")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        title = None if PROBLEM_CODES[code].status == exc.status_code else HTTPStatus(exc.status_code).phrase
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method of the path, not only the first route's
            from app.api.routing import allowed_methods

            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return problem(exc.status_code, code, detail, title=title, headers=headers, language=language)

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError) -> JSONResponse:
        return problem(
            409, "conflict", "the resource was changed by another request; reload and retry", language=language_of(request)
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity error answered as 409: %s", exc.orig)
        return problem(409, "conflict", "the change conflicts with another one; reload and retry", language=language_of(request))

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        language = language_of(request)
        text = str(exc.orig).lower()
        if "deadlock" in text or "could not serialize" in text or "database is locked" in text:
            return problem(
                409, "conflict", "the change raced with another one; retry", headers={"Retry-After": "1"}, language=language
            )
        if database_unavailable(exc):
            log.warning("database unavailable, answered 503: %s", type(exc.orig).__name__)
            return unavailable(language=language)
        if str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "").startswith("22"):
            # SQLSTATE class 22, data exception: a value the database refuses (NUL in text, a
            # number out of range) came from the request
            log.info("data exception answered as 422: %s", exc.orig)
            refused = msg("a value is not acceptable")
            return problem(
                422,
                "validation_failed",
                "a value of the request is not acceptable",
                language=language,
                errors=[{"loc": ["request"], "msg": refused}],
            )
        log.exception("database error")
        return problem(500, "internal_error", "an internal error occurred", language=language)

    async def _unreachable(request: Request, exc: Exception) -> JSONResponse:
        """Errors raised before SQLAlchemy wraps them: a refused connect (OSError), a pool that
        timed out, asyncpg's own connection errors."""
        if database_unavailable(exc):
            log.warning("database unavailable, answered 503: %s", type(exc).__name__)
            return unavailable(language=language_of(request))
        log.exception("unhandled error")
        return problem(500, "internal_error", "an internal error occurred", language=language_of(request))

    for error_type in _raw_connection_errors():
        app.add_exception_handler(error_type, _unreachable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(500, "internal_error", "an internal error occurred", language=language_of(request))


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
