"""Keyset pagination on time-ordered primary keys: a page costs the same at any depth."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.errors import ValidationFailed


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationFailed("malformed cursor", loc=["query", "cursor"]) from None


async def keyset_page(session: AsyncSession, query: Select, id_column, *, limit: int, cursor: str | None,
                      newest_first: bool = True) -> tuple[list[Any], str | None]:
    """Run `query` (selecting ORM rows) one page at a time, ordered by `id_column`."""
    if cursor:
        last = decode_cursor(cursor)
        if not isinstance(last, str):
            raise ValidationFailed("malformed cursor", loc=["query", "cursor"])
        query = query.where(id_column < last if newest_first else id_column > last)
    query = query.order_by(id_column.desc() if newest_first else id_column.asc()).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(getattr(rows[-1], id_column.key))
    return rows, next_cursor
