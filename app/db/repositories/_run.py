"""The one way a repository runs a statement."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from sqlalchemy import Executable, Result
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


async def run(session: AsyncSession, statement: Executable, params: Params = None) -> Result[Any]:
    """Execute a Core statement in the request's transaction. Objects that a module still on the
    ORM has added or changed are flushed first (Core statements do not autoflush), so both
    kinds of code see one consistent transaction while the modules move to repositories."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    return await session.execute(statement, params)


def record_of(cls: type[T], row: Any) -> T:
    """A record of `cls` (a dataclass) from a result row whose keys include its fields."""
    mapping = row._mapping
    return cls(**{f.name: mapping[f.name] for f in _fields(cls)})


_FIELDS: dict[type, tuple] = {}


def _fields(cls: type) -> tuple:
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = fields(cls)  # type: ignore[arg-type]
    return known
