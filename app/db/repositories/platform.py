"""Statements of the platform core: the test clock, timers, transition history and
idempotency keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, String, all_, any_, bindparam, delete, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.base import table_of
from app.db.models.platform import ClockState, IdempotencyKey, Timer, TransitionRecord
from app.db.repositories._run import prepare_module, record_of, run
from app.db.session import dialect_of

clock_state = table_of(ClockState)
timers = table_of(Timer)
history = table_of(TransitionRecord)
idempotency_keys = table_of(IdempotencyKey)


_PING = text("SELECT 1")


async def ping(session: AsyncSession) -> None:
    """A round trip to the database (readiness)."""
    await run(session, _PING)


# --------------------------------------------------------------------------- the test clock
CLOCK_OFFSET = select(clock_state.c.offset_seconds).where(clock_state.c.id == 1).scalar_subquery().label("clock_offset")
"""The test clock's offset as a column: a read on a hot path carries it, so business time costs
no statement of its own (`app.state.clock.remember`)."""

_OFFSET = select(clock_state.c.offset_seconds).where(clock_state.c.id == 1)


def _advance(dialect_insert):
    statement = dialect_insert(clock_state).values(id=1, offset_seconds=bindparam("seconds"))
    return statement.on_conflict_do_update(
        index_elements=["id"],
        set_={"offset_seconds": clock_state.c.offset_seconds + statement.excluded.offset_seconds},
    ).returning(clock_state.c.offset_seconds)


_ADVANCE = {"postgresql": _advance(pg_insert), "sqlite": _advance(sqlite_insert)}


async def clock_offset(session: AsyncSession) -> int:
    return int((await run(session, _OFFSET)).scalar() or 0)


async def advance_clock(session: AsyncSession, seconds: int) -> int:
    """Move the shared offset by `seconds` (the row lock serialises concurrent advances);
    returns the new offset."""
    return int((await run(session, _ADVANCE[dialect_of(session).name], {"seconds": seconds})).scalar_one())


# --------------------------------------------------------------------------- timers
@dataclass(frozen=True, slots=True)
class TimerRecord:
    id: str
    machine: str
    entity_id: str
    action: str
    due_at: datetime


def _upsert_timer(dialect_insert):
    statement = dialect_insert(timers).values(
        id=bindparam("id"),
        machine=bindparam("machine"),
        entity_id=bindparam("entity_id"),
        action=bindparam("action"),
        due_at=bindparam("due_at"),
    )
    return statement.on_conflict_do_update(
        index_elements=["machine", "entity_id", "action"], set_={"due_at": statement.excluded.due_at}
    )


_UPSERT_TIMER = {"postgresql": _upsert_timer(pg_insert), "sqlite": _upsert_timer(sqlite_insert)}
_DELETE_TIMER = delete(timers).where(timers.c.id == bindparam("id"))


async def upsert_timer(session: AsyncSession, timer: dict[str, Any]) -> None:
    await run(session, _UPSERT_TIMER[dialect_of(session).name], timer)


async def delete_timer(session: AsyncSession, timer_id: str) -> None:
    await run(session, _DELETE_TIMER, {"id": timer_id})


def _due_on_postgres(by_machines: bool, by_entity: bool) -> Select:
    # one prebuilt statement per filter shape (the lists go in as arrays), for the fast lane
    query = (
        select(timers)
        .where(timers.c.due_at <= bindparam("now"), timers.c.id != all_(bindparam("skip", type_=ARRAY(String))))
        .order_by(timers.c.due_at)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    if by_machines:
        query = query.where(timers.c.machine == any_(bindparam("machines", type_=ARRAY(String))))
    if by_entity:
        query = query.where(timers.c.entity_id == bindparam("entity_id"))
    return query


_DUE = {(m, e): _due_on_postgres(m, e) for m in (False, True) for e in (False, True)}


def _any_due(by_entity: bool) -> Select:
    # any timer at all (of an entity): a range on due_at alone, so the planner can only take the
    # due_at index and stops at its first entry. With a machine filter it took the
    # (machine, entity_id, action) index and read every timer of those machines, due or not,
    # which grows with every check-in's expiry timer.
    query = select(timers.c.id).where(timers.c.due_at <= bindparam("now"))
    if by_entity:
        query = query.where(timers.c.entity_id == bindparam("entity_id"))
    return query.order_by(timers.c.due_at).limit(1)


_ANY_DUE = {e: _any_due(e) for e in (False, True)}


async def any_due(session: AsyncSession, now: datetime, *, entity_id: str | None) -> bool:
    """Whether any timer (of this entity) is due at `now`, by a plain read: a request path that
    finds none has taken no lock and begun no transaction for it (the common case: the sweeper
    keeps few timers due), so a route that writes once keeps its write the only statement in
    one. A due timer of a machine the caller does not fire only costs it the locking claim."""
    rows = await run(session, _ANY_DUE[entity_id is not None], {"now": now, "entity_id": entity_id})
    return rows.first() is not None


async def due_timers(
    session: AsyncSession, now: datetime, *, machines: list[str] | None, entity_id: str | None, skip: set[str], limit: int
) -> list[TimerRecord]:
    """Timers due at `now`, oldest first; on PostgreSQL those another transaction holds are
    skipped (`FOR UPDATE SKIP LOCKED`), so every replica's sweeper may run at once."""
    if dialect_of(session).name == "postgresql":
        rows = await run(
            session,
            _DUE[machines is not None, entity_id is not None],
            {"now": now, "skip": list(skip), "limit": limit, "machines": machines, "entity_id": entity_id},
        )
        return [record_of(TimerRecord, row) for row in rows]
    query = select(timers).where(timers.c.due_at <= now).order_by(timers.c.due_at).limit(limit)
    if machines is not None:
        query = query.where(timers.c.machine.in_(machines))
    if entity_id is not None:
        query = query.where(timers.c.entity_id == entity_id)
    if skip:
        query = query.where(timers.c.id.not_in(skip))
    return [record_of(TimerRecord, row) for row in await run(session, query)]


# --------------------------------------------------------------------------- history
@dataclass(frozen=True, slots=True)
class TransitionRow:
    id: str
    machine: str
    entity_id: str
    from_state: str | None
    to_state: str
    action: str
    actor_id: str
    actor_role: str
    reason: Any
    at: datetime


_HISTORY = (
    select(history)
    .where(history.c.machine == bindparam("machine"), history.c.entity_id == bindparam("id"))
    .order_by(history.c.at, history.c.id)
)


async def history_of(session: AsyncSession, machine: str, entity_id: str) -> list[TransitionRow]:
    return [record_of(TransitionRow, row) for row in await run(session, _HISTORY, {"machine": machine, "id": entity_id})]


# --------------------------------------------------------------------------- idempotency keys
@dataclass(frozen=True, slots=True)
class StoredAnswer:
    id: str
    request_hash: str
    status_code: int
    content_type: str | None
    response_body: str
    extra_headers: dict[str, str] | None
    created_at: datetime


_ADVISORY = text("SELECT pg_try_advisory_xact_lock(hashtext(:k))")
_STORED = select(idempotency_keys).where(
    idempotency_keys.c.account_id == bindparam("account_id"), idempotency_keys.c.key == bindparam("key")
)
_FORGET = delete(idempotency_keys).where(idempotency_keys.c.id == bindparam("id"))
_STORE = insert(idempotency_keys)


async def try_lock_key(session: AsyncSession, account_id: str, key: str) -> bool:
    """PostgreSQL: an advisory lock on the key for this transaction (False when another holds
    it). Elsewhere writers are serialised anyway."""
    if dialect_of(session).name != "postgresql":
        return True
    return bool((await run(session, _ADVISORY, {"k": f"idem:{account_id}:{key}"})).scalar())


async def stored_answer(session: AsyncSession, account_id: str, key: str) -> StoredAnswer | None:
    row = (await run(session, _STORED, {"account_id": account_id, "key": key})).first()
    return None if row is None else record_of(StoredAnswer, row)


async def forget_answer(session: AsyncSession, answer_id: str) -> None:
    await run(session, _FORGET, {"id": answer_id})


async def store_answer(session: AsyncSession, values: dict[str, Any]) -> None:
    await run(session, _STORE, values)


prepare_module(globals())
