"""Statements every state-machine entity shares: its row by id (locked or not) and the
conditional UPDATE that fires a transition on it."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, Table, Update, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.repositories._run import prepared, record_of, run

T = TypeVar("T")
_BY_ID: dict[tuple[str, bool | str], Select] = {}
_GATES: dict[tuple[str, tuple[str, ...]], Update] = {}


def _by_id(table: Table, lock: bool | str) -> Select:
    statement = _BY_ID.get((table.name, lock))
    if statement is None:
        statement = select(table).where(table.c.id == bindparam("id"))
        if lock:
            statement = statement.with_for_update(skip_locked=lock == "skip")
        _BY_ID[(table.name, lock)] = prepared(statement)
    return statement


async def entity(session: AsyncSession, table: Table, record: type[T], entity_id: str, *, lock: bool = False) -> T | None:
    """The entity's row as a record; `lock`: `FOR UPDATE` (PostgreSQL; SQLite's writers are
    serialised by `BEGIN IMMEDIATE`)."""
    row = (await run(session, _by_id(table, lock), {"id": entity_id})).first()
    return None if row is None else record_of(record, row)


async def entity_unless_locked(session: AsyncSession, table: Table, record: type[T], entity_id: str) -> T | None:
    """The entity's row locked `FOR UPDATE SKIP LOCKED`: None when another transaction holds it
    (or it does not exist). SQLite has no row locks (its writers are serialised): the row."""
    row = (await run(session, _by_id(table, "skip"), {"id": entity_id})).first()
    return None if row is None else record_of(record, row)


def transition_gate(table: Table, changed: tuple[str, ...]) -> Update:
    """`UPDATE table SET state = :g_state, version = :g_version, <changed> WHERE id = :g_id AND
    version = :g_seen RETURNING id`: the lock, the optimistic check and the write in one
    statement (built once per set of changed columns)."""
    key = (table.name, changed)
    gate = _GATES.get(key)
    if gate is None:
        values: dict[str, Any] = {
            "state": bindparam("g_state", type_=table.c.state.type),
            "version": bindparam("g_version", type_=table.c.version.type),
        }
        values.update({c: bindparam(f"g_{c}", type_=table.c[c].type) for c in changed})
        gate = _GATES[key] = prepared(
            update(table)
            .where(table.c.id == bindparam("g_id"), table.c.version == bindparam("g_seen"))
            .values(values)
            .returning(table.c.id)
        )
    return gate
