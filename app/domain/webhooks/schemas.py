"""What the webhook endpoints take and answer (Pydantic)."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from app.core.i18n import N_, msg
from app.core.times import UtcDatetime
from app.domain.schemas import Out, Strict

_TYPE = re.compile(r"^(\*|[a-z0-9_]+\.(\*|[a-z0-9_]+))$")


class WebhookCreate(Strict):
    url: str = Field(max_length=2000, description="http(s) URL that receives POSTs")
    event_types: list[Annotated[str, Field(max_length=100)]] = Field(
        min_length=1, max_length=50, description="Event types (`task_order.accepted`), `<machine>.*` or `*`"
    )
    secret: str = Field(min_length=8, max_length=200, description="HMAC-SHA256 key of `LC-Signature`")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(N_("must be an absolute http(s) URL"))
        return value

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _TYPE.match(item):
                raise ValueError(msg("'{item}' is not an event type (`machine.action`, `machine.*` or `*`)", item=item))
        return list(dict.fromkeys(value))


class WebhookOut(Out):
    id: str
    url: str
    event_types: list[str]
    active: bool
    created_at: UtcDatetime


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
    event_type: str
    status: str
    attempts: int
    next_attempt_at: UtcDatetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    attempt_log: list[AttemptOut] = []
