"""Domain errors. One base with `status` and `code`; the API turns them into RFC 9457
problem+json. Nothing in the domain raises HTTPException."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers or {}
        self.extra = extra


class Unauthenticated(DomainError):
    status, code, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **kw)


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class ValidationFailed(DomainError):
    """422 raised by domain rules on input (rather than by the schema)."""

    status, code, title = 422, "validation_failed", "Validation failed"

    def __init__(self, detail: str, *, loc: list[str | int] | None = None, code: str | None = None) -> None:
        super().__init__(detail, code=code, errors=[{"loc": loc or ["body"], "msg": detail}])


class WebhookUrlNotAllowed(ValidationFailed):
    """422: a webhook URL that names or resolves to a non-public address (security.md)."""

    code, title = "webhook_url_not_allowed", "Webhook URL not allowed"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, loc=["body", "url"])


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class InvalidTransition(DomainError):
    status, code, title = 409, "invalid_transition", "Action not allowed in this state"

    def __init__(self, action: str, state: str, allowed_actions: list[str]) -> None:
        super().__init__(
            f"'{action}' is not allowed from state '{state}'",
            state=state,
            allowed_actions=allowed_actions,
        )


class PreconditionFailed(DomainError):
    """412: the request's `If-Match` names a version the entity no longer has."""

    status, code, title = 412, "precondition_failed", "Precondition failed"

    def __init__(self, expected: int, version: int, state: str, allowed_actions: list[str]) -> None:
        super().__init__(
            f"the entity is at version {version}, not {expected}: read it again",
            state=state,
            version=version,
            allowed_actions=allowed_actions,
        )


class TooManyRequests(DomainError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None, **extra: Any) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(detail, code=code, headers={"Retry-After": str(retry_after)}, retry_after=retry_after, **extra)


class QuotaExhausted(TooManyRequests):
    code, title = "quota_exhausted", "Quota exhausted"
