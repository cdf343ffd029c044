"""Times on the wire: every datetime the service answers (bodies, headers, webhook payloads,
event data, SSE) is UTC with a `Z` suffix, and every datetime it reads is normalised to UTC.

`UtcDatetime` is the one serializer: response schemas annotate their datetimes with it, and
code that writes a time into a dict or a header calls `iso_z`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer, WithJsonSchema

from app.core.i18n import N_


def utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive value is taken as UTC already (the database's)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_z(moment: datetime) -> str:
    """RFC 3339 in UTC with `Z`: `2026-12-02T10:00:00Z` (microseconds only when present)."""
    return utc(moment).isoformat().replace("+00:00", "Z")


def _aware_in_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(N_("a time zone is required (RFC 3339), e.g. 2026-12-02T10:00:00Z or 2026-12-02T18:00:00+08:00"))
    return moment.astimezone(UTC)


_AS_Z = PlainSerializer(iso_z, return_type=str, when_used="json")
_SCHEMA = WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-12-02T10:00:00Z"]})

UtcDatetime = Annotated[datetime, AfterValidator(utc), _AS_Z, _SCHEMA]
"""An answered time: UTC, serialized with `Z`."""

AwareUtcDatetime = Annotated[datetime, AfterValidator(_aware_in_utc), _AS_Z, _SCHEMA]
"""A time read from a request: it must carry an offset (`Z` or `+08:00`) and is kept in UTC."""
