"""Rows of several tables inserted in one round trip.

A transition writes its history row, its outbox event and the event's recipients; a ledger
movement writes its transaction and its lines. None of them is read back in the request, so
they need no ORM objects: `insert_together` sends them as one statement on PostgreSQL
(data-modifying CTEs: `WITH w0 AS (INSERT …), w1 AS (INSERT …) INSERT …`, foreign keys checked
at the end of the statement) and as one executemany per table elsewhere. They are written at
once, not at the session's next flush; parents must come before children in the argument list.

The statement for each shape (tables, one row or several, columns) is built once and reused: on
PostgreSQL several rows of a table go in as one array per column (`SELECT unnest(:a), unnest(:b)`),
so the SQL is the same whatever the number of rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

Rows = list[dict[str, Any]]
Part = tuple[Table, Rows]
_STATEMENTS: dict[tuple, Insert] = {}


def _insert(table: Table, index: int, many: bool, columns: tuple[str, ...]) -> Insert:
    if not many:
        return table.insert().values({c: bindparam(f"p{index}_{c}", type_=table.c[c].type) for c in columns})
    # several rows: one array per column, unnested in lockstep (a multi-VALUES insert would not
    # be cacheable, and its SQL would change with the number of rows)
    return table.insert().from_select(list(columns), select(*[
        func.unnest(bindparam(f"p{index}_{c}", type_=ARRAY(table.c[c].type))) for c in columns]))


def _statement(parts: list[tuple[Table, Rows]]) -> Insert:
    shape = tuple((table.name, len(rows) > 1, tuple(rows[0])) for table, rows in parts)
    statement = _STATEMENTS.get(shape)
    if statement is None:
        *firsts, last = [(table, i, many, columns) for i, (table, (_, many, columns)) in
                         enumerate(zip((t for t, _ in parts), shape, strict=True))]
        statement = _insert(*last)
        for table, i, many, columns in firsts:
            statement = statement.add_cte(_insert(table, i, many, columns).cte(f"w{i}"))
        _STATEMENTS[shape] = statement
    return statement


def _params(parts: list[tuple[Table, Rows]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, (_, rows) in enumerate(parts):
        if len(rows) == 1:
            params.update({f"p{i}_{c}": value for c, value in rows[0].items()})
        else:
            params.update({f"p{i}_{c}": [row[c] for row in rows] for c in rows[0]})
    return params


async def insert_together(session: AsyncSession, *parts: Part) -> None:
    """Insert `rows` (dicts with the same keys, ids included) into each table, parents first."""
    todo = [(table, rows) for table, rows in parts if rows]
    if not todo:
        return
    if session.bind.dialect.name != "postgresql" or len(todo) == 1 and len(todo[0][1]) == 1:
        for table, rows in todo:
            await session.execute(table.insert(), rows)
        return
    await session.execute(_statement(todo), _params(todo))
