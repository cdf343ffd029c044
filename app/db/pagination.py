"""Keyset pagination on time-ordered primary keys: a page costs the same at any depth."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import ValidationFailed


def encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationFailed("malformed cursor", loc=["query", "cursor"]) from None


_ID = re.compile(r"([a-z]{2,10})_[0-9a-hjkmnp-tv-z]{26}")


def _id_prefix(id_column) -> str | None:
    """The prefix of the ids `id_column` (an ORM attribute or a table's column) generates (`tup`
    for `tup_…`), if it generates them."""
    try:
        column = id_column.property.columns[0] if hasattr(id_column, "property") else id_column
        default = column.default
        if default is not None and default.is_callable:
            return str(default.arg(None)).split("_", 1)[0]
    except (AttributeError, IndexError, TypeError):
        pass
    return None


def check_cursor_key(last: Any, prefix: str | None) -> str:
    """A keyset cursor carries an id of this very list's kind (`prefix`): anything else (garbage,
    a cursor of another list) is a 422, never a page or a database error."""
    match = _ID.fullmatch(last) if isinstance(last, str) else None
    if match is None or (prefix is not None and match.group(1) != prefix):
        raise ValidationFailed("malformed cursor", loc=["query", "cursor"])
    return last


def _check_key(last: Any, id_column) -> str:
    return check_cursor_key(last, _id_prefix(id_column))


def key_after(cursor: str | None, id_column) -> str | None:
    """The last id of the previous page that `cursor` carries (None on the first page); a
    malformed cursor, or one of another list, is a 422. For queries built ahead (Core)."""
    return _check_key(decode_cursor(cursor), id_column) if cursor else None


def page_of(rows: list[Any], limit: int, key: str = "id") -> tuple[list[Any], str | None]:
    """Up to `limit` of `rows` (fetched `limit + 1` at a time) and the cursor of the next page."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(getattr(rows[-1], key))


async def keyset_page(
    session: AsyncSession, query: Select, id_column, *, limit: int, cursor: str | None, newest_first: bool = True
) -> tuple[list[Any], str | None]:
    """Run `query` (selecting ORM rows) one page at a time, ordered by `id_column`."""
    last = key_after(cursor, id_column)
    if last is not None:
        query = query.where(id_column < last if newest_first else id_column > last)
    query = query.order_by(id_column.desc() if newest_first else id_column.asc()).limit(limit + 1)
    return page_of(list((await session.scalars(query)).all()), limit, id_column.key)
