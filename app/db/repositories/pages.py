"""Keyset pages of Core queries on time-ordered primary keys (a page costs the same at any depth)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import KeyedColumnElement

from app.db.pagination import key_after, page_of
from app.db.repositories._run import record_of, run

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


async def keyset(
    session: AsyncSession,
    query: Select,
    id_column: KeyedColumnElement[Any],
    record: type[T],
    *,
    limit: int,
    cursor: str | None,
    params: dict[str, Any] | None = None,
    newest_first: bool = True,
) -> Page[T]:
    """One page of `query`'s rows as records, ordered by `id_column`; `next_cursor` names the
    last id when there is more."""
    last = key_after(cursor, id_column)
    if last is not None:
        query = query.where(id_column < last if newest_first else id_column > last)
    query = query.order_by(id_column.desc() if newest_first else id_column.asc()).limit(limit + 1)
    rows, next_cursor = page_of([record_of(record, row) for row in await run(session, query, params)], limit, id_column.key)
    return Page(rows, next_cursor)
