"""Domain errors. One base with `status` and `code`; the API turns them into RFC 9457
problem+json. Nothing in the domain raises HTTPException.

`PROBLEM_CODES` is the catalogue of every `code` the service can answer, with its HTTP status
and English title (translated through the catalogues, app/core/i18n.py); the OpenAPI Problem
schema's `code` enum is generated from it, and a DomainError with a code not in it is refused.
Details are message templates: a plain string, or `msg("... {name} ...", name=value)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.i18n import Message, msg


@dataclass(frozen=True, slots=True)
class ProblemCode:
    code: str
    status: int
    title: str


def problem_code(code: str, status: int, title: str) -> ProblemCode:
    """One entry of the catalogue (pybabel extracts the title: keyword `problem_code:3`)."""
    return ProblemCode(code, status, title)


PROBLEM_CODES: dict[str, ProblemCode] = {
    entry.code: entry
    for entry in (
        # HTTP-level answers
        problem_code("bad_request", 400, "Bad request"),
        problem_code("unauthenticated", 401, "Authentication required"),
        problem_code("invalid_credentials", 401, "Wrong username or password"),
        problem_code("account_suspended", 401, "Account suspended"),
        problem_code("session_ended", 401, "Session ended"),
        problem_code("forbidden", 403, "Forbidden"),
        problem_code("wrong_password", 403, "Wrong current password"),
        problem_code("not_found", 404, "Not found"),
        problem_code("method_not_allowed", 405, "Method not allowed"),
        problem_code("not_acceptable", 406, "Not acceptable"),
        problem_code("conflict", 409, "Conflict"),
        problem_code("invalid_transition", 409, "Action not allowed in this state"),
        problem_code("precondition_failed", 412, "Precondition failed"),
        problem_code("payload_too_large", 413, "Request body too large"),
        problem_code("unsupported_media_type", 415, "Unsupported media type"),
        problem_code("validation_failed", 422, "Validation failed"),
        problem_code("weak_password", 422, "Password too weak"),
        problem_code("webhook_url_not_allowed", 422, "Webhook URL not allowed"),
        problem_code("idempotency_key_reused", 422, "Idempotency-Key reused with another request"),
        problem_code("idempotency_key_in_use", 409, "Request with this Idempotency-Key still running"),
        problem_code("rate_limited", 429, "Too many requests"),
        problem_code("quota_exhausted", 429, "Quota exhausted"),
        problem_code("headers_too_large", 431, "Request headers too large"),
        problem_code("internal_error", 500, "Internal error"),
        problem_code("unavailable", 503, "Service unavailable"),
        problem_code("service_unavailable", 503, "Service unavailable"),
        # accounts
        problem_code("username_taken", 409, "Username taken"),
        problem_code("xingtu_account_taken", 409, "Xingtu account bound elsewhere"),
        problem_code("xingtu_not_bound", 409, "Xingtu account not bound"),
        # task orders, wallet, disputes
        problem_code("product_off_sale", 422, "Product not on sale"),
        problem_code("creator_resting", 409, "Creator is resting"),
        problem_code("creator_quote_missing", 409, "Creator has no quote"),
        problem_code("insufficient_balance", 409, "Insufficient balance"),
        problem_code("hold_ended", 409, "Hold already ended"),
        problem_code("order_not_ended", 409, "Order not ended"),
        problem_code("dispute_window_closed", 409, "Dispute window closed"),
        problem_code("dispute_exists", 409, "Dispute already exists"),
        # campaigns
        problem_code("not_eligible", 403, "Not eligible"),
        problem_code("campaign_closed", 409, "Campaign closed"),
        problem_code("deadline_passed", 409, "Deadline passed"),
        problem_code("duplicate_signup", 409, "Already signed up"),
        # live bases
        problem_code("already_bound", 409, "Already bound"),
        problem_code("already_invited", 409, "Already invited"),
        problem_code("binding_not_active", 409, "Binding not active"),
        problem_code("not_qualified", 409, "Product does not qualify"),
        problem_code("invalid_check_in_code", 422, "Invalid check-in code"),
        problem_code("check_in_code_expired", 422, "Check-in code expired"),
        problem_code("already_checked_in", 409, "Already checked in"),
        # outreach
        problem_code("alliance_membership_required", 403, "Alliance membership required"),
        problem_code("pair_not_open", 403, "Conversation not open between these roles"),
        problem_code("contact_not_provided", 404, "Contact not provided"),
        # incentives
        problem_code("contract_exists", 409, "Contract already exists"),
        problem_code("merchant_not_contracted", 409, "Merchant not contracted"),
        problem_code("voucher_not_available", 409, "Voucher not available"),
        problem_code("voucher_bound_to_other_merchant", 409, "Voucher bound to another merchant"),
        problem_code("voucher_expires_first", 422, "Voucher expires first"),
        problem_code("notice_too_short", 422, "Notice too short"),
        problem_code("month_outside_program", 422, "Month outside the program"),
        problem_code("month_not_over", 409, "Month not over"),
        problem_code("month_published", 409, "Month already published"),
        problem_code("month_not_computed", 409, "Month not computed"),
    )
}


class UnknownProblemCode(ValueError):
    """A DomainError was built with a code the catalogue does not have: a bug, caught by tests."""


class DomainError(Exception):
    """`detail` is a message template (str or `msg(...)`); `title` comes from the catalogue.
    The status is the class's (or the `status` given); tests check it agrees with the catalogue."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        detail: str | Message | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        if code:
            self.code = code
        entry = PROBLEM_CODES.get(self.code)
        if entry is None:
            raise UnknownProblemCode(f"{self.code!r} is not in PROBLEM_CODES (app/core/errors.py)")
        if status:
            self.status = status
        self.title = Message(entry.title)
        self.message = detail if isinstance(detail, Message) else Message(detail or entry.title)
        self.detail = str(self.message)  # English, for logs and the CLI
        super().__init__(self.detail)
        self.headers = headers or {}
        self.extra = extra


class Unauthenticated(DomainError):
    status, code = 401, "unauthenticated"

    def __init__(self, detail: str | Message | None = None, **kw: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"}, **kw)


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class ValidationFailed(DomainError):
    """422 raised by domain rules on input (rather than by the schema)."""

    status, code = 422, "validation_failed"

    def __init__(self, detail: str | Message, *, loc: list[str | int] | None = None, code: str | None = None) -> None:
        message = detail if isinstance(detail, Message) else Message(detail)
        super().__init__(message, code=code, errors=[{"loc": loc or ["body"], "msg": message}])


class WebhookUrlNotAllowed(ValidationFailed):
    """422: a webhook URL that names or resolves to a non-public address (security.md)."""

    code = "webhook_url_not_allowed"

    def __init__(self, detail: str | Message) -> None:
        super().__init__(detail, loc=["body", "url"])


class Conflict(DomainError):
    status, code = 409, "conflict"


class InvalidTransition(DomainError):
    status, code = 409, "invalid_transition"

    def __init__(self, action: str, state: str, allowed_actions: list[str]) -> None:
        super().__init__(
            msg("'{action}' is not allowed from state '{state}'", action=action, state=state),
            state=state,
            allowed_actions=allowed_actions,
        )


class PreconditionFailed(DomainError):
    """412: the request's `If-Match` names a version the entity no longer has."""

    status, code = 412, "precondition_failed"

    def __init__(self, expected: int, version: int, state: str, allowed_actions: list[str]) -> None:
        super().__init__(
            msg("the entity is at version {version}, not {expected}: read it again", version=version, expected=expected),
            state=state,
            version=version,
            allowed_actions=allowed_actions,
        )


class TooManyRequests(DomainError):
    status, code = 429, "rate_limited"

    def __init__(self, detail: str | Message, *, retry_after: int, code: str | None = None, **extra: Any) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(detail, code=code, headers={"Retry-After": str(retry_after)}, retry_after=retry_after, **extra)


class QuotaExhausted(TooManyRequests):
    code = "quota_exhausted"
