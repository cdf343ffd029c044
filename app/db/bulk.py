"""Rows of several tables written in one round trip, optionally behind a gate.

A transition writes its history row, its outbox event and the event's recipients; a ledger
movement writes its transaction and its lines. None of them is read back in the request, so
they need no ORM objects: `insert_together` sends them as one statement on PostgreSQL
(data-modifying CTEs: `WITH w0 AS (INSERT …), w1 AS (INSERT …) INSERT …`, foreign keys checked
at the end of the statement) and as one executemany per table elsewhere. They are written at
once, not at the session's next flush; parents must come before children in the argument list.

The statement for each shape (tables, one row or several, columns) is built once and reused: on
PostgreSQL several rows of a table go in as one array per column (`SELECT unnest(:a), unnest(:b)`),
so the SQL is the same whatever the number of rows.

`write_gated` puts a conditional `UPDATE … RETURNING` in front (the gate: a transition's
`WHERE id = :id AND version = :seen`, a freeze's `WHERE available_fen >= :amount`): on
PostgreSQL every row is inserted `SELECT … FROM gate`, so nothing is written unless the gate
matched, and a value may be taken from the gate's returned row (`FromGate("available_fen")`);
elsewhere the gate runs first and the rows follow only if it matched."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Table, Update, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from app.db.repositories._run import prepared, run
from app.db.session import dialect_of

Rows = list[dict[str, Any]]
Part = tuple[Table, Rows]
_STATEMENTS: dict[tuple, Insert] = {}


def _insert(table: Table, index: int, many: bool, columns: tuple[str, ...]) -> Insert:
    if not many:
        return table.insert().values({c: bindparam(f"p{index}_{c}", type_=table.c[c].type) for c in columns})
    # several rows: one array per column, unnested in lockstep (a multi-VALUES insert would not
    # be cacheable, and its SQL would change with the number of rows)
    return table.insert().from_select(
        list(columns), select(*[func.unnest(bindparam(f"p{index}_{c}", type_=ARRAY(table.c[c].type))) for c in columns])
    )


def _statement(parts: list[tuple[Table, Rows]]) -> Insert:
    shape = tuple((table.name, len(rows) > 1, tuple(rows[0])) for table, rows in parts)
    statement = _STATEMENTS.get(shape)
    if statement is None:
        *firsts, last = [
            (table, i, many, columns)
            for i, (table, (_, many, columns)) in enumerate(zip((t for t, _ in parts), shape, strict=True))
        ]
        statement = _insert(*last)
        for table, i, many, columns in firsts:
            statement = statement.add_cte(_insert(table, i, many, columns).cte(f"w{i}"))
        _STATEMENTS[shape] = prepared(statement, atomic=True)
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
    if dialect_of(session).name != "postgresql" or len(todo) == 1 and len(todo[0][1]) == 1:
        for table, rows in todo:
            await run(session, table.insert(), rows)
        return
    await run(session, _statement(todo), _params(todo))


class FromGate(str):
    """A value taken from the gate's returned row: the name of one of its RETURNING columns."""


_GATED: dict[tuple, tuple[Update, Any, list[tuple[tuple[str, ...], tuple[str, ...]]]]] = {}


def _gated_shape(gate: Update, parts: list[Part]) -> tuple:
    # per part: table, one row or several, its columns, and which of them come from which
    # column of the gate's row
    return (
        id(gate),
        tuple(
            [
                (
                    table.name,
                    len(rows) > 1,
                    tuple(rows[0]),
                    tuple([(c, v) for c, v in rows[0].items() if v.__class__ is FromGate]),
                )
                for table, rows in parts
            ]
        ),
    )


def _gated_statement(gate: Update, parts: list[Part], shape: tuple) -> tuple[Any, list]:
    """The statement of this shape, and for each part the parameter names and the columns
    whose values fill them."""
    moved = gate.cte("gate")
    inserts, fills = [], []
    for i, ((table, rows), (_, many, columns, from_gate)) in enumerate(zip(parts, shape[1], strict=True)):
        gated = dict(from_gate)
        values: list[Any]
        if many:
            if any(v.__class__ is FromGate for row in rows for v in row.values()):
                raise ValueError("FromGate values go in single-row parts")
            values = [func.unnest(bindparam(f"p{i}_{c}", type_=ARRAY(table.c[c].type))) for c in columns]
        else:
            values = [moved.c[gated[c]] if c in gated else bindparam(f"p{i}_{c}", type_=table.c[c].type) for c in columns]
        inserts.append(table.insert().from_select(list(columns), select(*values).select_from(moved)).cte(f"w{i}"))
        filled = tuple(c for c in columns if c not in gated)
        fills.append((tuple(f"p{i}_{c}" for c in filled), filled))
    statement = prepared(select(*moved.c).add_cte(*inserts), atomic=True)
    _GATED[shape] = (gate, statement, fills)  # keeps `gate` alive, so its id is not reused
    return statement, fills


async def write_gated(session: AsyncSession, gate: Update, gate_params: dict[str, Any], *parts: Part) -> Row | None:
    """Run `gate` (a prebuilt `UPDATE … RETURNING`); if it matched a row, insert `parts` (parents
    first), where a `FromGate(column)` value stands for that column of the gate's row. Returns
    the gate's row, or None (then nothing was written)."""
    todo = [(table, rows) for table, rows in parts if rows]
    if dialect_of(session).name != "postgresql" or not todo:
        moved = (await run(session, gate, gate_params)).first()
        if moved is None:
            return None
        for table, rows in todo:
            await run(
                session,
                table.insert(),
                [{c: moved._mapping[v] if v.__class__ is FromGate else v for c, v in row.items()} for row in rows],
            )
        return moved
    shape = _gated_shape(gate, todo)
    known = _GATED.get(shape)
    statement, fills = (known[1], known[2]) if known is not None else _gated_statement(gate, todo, shape)
    params = dict(gate_params)
    for (names, columns), (_, rows) in zip(fills, todo, strict=True):
        if len(rows) == 1:
            params.update(zip(names, map(rows[0].__getitem__, columns), strict=True))
        else:
            params.update(zip(names, ([row[c] for row in rows] for c in columns), strict=True))
    return (await run(session, statement, params)).first()
