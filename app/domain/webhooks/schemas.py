"""What the webhook endpoints take and answer (Pydantic)."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, StrictBool, field_validator

from app.core.i18n import N_, msg
from app.core.times import UtcDatetime
from app.db.models.webhooks import DeliveryStatus
from app.domain.schemas import Out, Strict

_TYPE = re.compile(r"^(\*|[a-z0-9_]+\.(\*|[a-z0-9_]+))$")


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(N_("must be an absolute http(s) URL"))
    return value


def _check_types(value: list[str]) -> list[str]:
    for item in value:
        if not _TYPE.match(item):
            raise ValueError(msg("'{item}' is not an event type (`machine.action`, `machine.*` or `*`)", item=item))
    return list(dict.fromkeys(value))


_URL = Field(
    max_length=2000,
    description="http(s) URL that receives POSTs; it must resolve only to public addresses (422 `webhook_url_not_allowed`)",
)
_TYPES = Field(min_length=1, max_length=50, description="Event types (`task_order.accepted`), `<machine>.*` or `*`")
_SECRET = Field(min_length=8, max_length=200, description="HMAC-SHA256 key of `LC-Signature`")


class WebhookCreate(Strict):
    url: str = _URL
    event_types: list[Annotated[str, Field(max_length=100)]] = _TYPES
    secret: str = _SECRET

    _url = field_validator("url")(_check_url)
    _types = field_validator("event_types")(_check_types)


class WebhookUpdate(Strict):
    """PATCH: the fields given change; `enabled=true` also ends a failing streak."""

    url: str | None = Field(default=None, max_length=2000, description="a new URL (checked as at creation)")
    event_types: list[Annotated[str, Field(max_length=100)]] | None = Field(
        default=None, min_length=1, max_length=50, description="the new event types"
    )
    enabled: StrictBool | None = Field(default=None, description="false stops deliveries; true resumes them")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError(N_("url cannot be null"))
        return _check_url(value)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            raise ValueError(N_("event_types cannot be null"))
        return _check_types(value)

    @field_validator("enabled")
    @classmethod
    def _enabled(cls, value: bool | None) -> bool | None:
        if value is None:
            raise ValueError(N_("enabled cannot be null"))
        return value


class SecretRotate(Strict):
    """The new secret; without one the service makes one (returned once)."""

    secret: str | None = Field(default=None, min_length=8, max_length=200, description="the new HMAC-SHA256 key")


class WebhookOut(Out):
    id: str
    url: str
    event_types: list[str]
    active: bool
    enabled: bool
    disabled_reason: str | None = Field(
        default=None, description="`failing` (every delivery failed for 5 days) or `owner` (PATCH enabled=false)"
    )
    created_at: UtcDatetime


class SecretRotatedOut(Out):
    id: str
    secret: str = Field(description="the new secret: shown this once")
    previous_secret_expires_at: UtcDatetime = Field(description="until then deliveries are also signed with the previous secret")


class AttemptOut(Out):
    number: int
    started_at: UtcDatetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int


class DeliveryOut(Out):
    id: str
    subscription_id: str
    event_id: str
    event_type: str  # the event catalogue's `EventType` in OpenAPI
    status: DeliveryStatus
    attempts: int
    next_attempt_at: UtcDatetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    attempt_log: list[AttemptOut] = []
