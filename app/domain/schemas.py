"""Pydantic shapes shared by every module."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.core.i18n import N_
from app.core.times import UtcDatetime

T = TypeVar("T")


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """NUL is never text (PostgreSQL refuses it): a 422 here, not a database error later."""
        if _has_nul(value):
            raise ValueError(N_("must not contain the NUL character"))
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class PutBody(Strict):
    """A PUT's body: it accepts the answer its GET (or the PUT itself) gave, so read-modify-write
    works (client-contract.md). The fields the server owns, named in `server_owned`, are
    ignored; any other unknown field is still 422."""

    server_owned: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _ignore_server_owned(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.server_owned:
            return {k: v for k, v in data.items() if k not in cls.server_owned}
        return data


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class TransitionOut(Out):
    from_state: str | None
    to_state: str
    action: str
    actor_id: str
    actor_role: str
    reason: Any | None = None
    at: UtcDatetime


class ReasonIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class Problem(BaseModel):
    """RFC 9457 problem details; module-specific members (e.g. `state`, `allowed_actions`,
    `required_fen`, `retry_after`) may be added."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None
