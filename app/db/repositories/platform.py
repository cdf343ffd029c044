"""Statements of the platform core: the test clock, timers, transition history and
idempotency keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, all_, bindparam, delete, insert, select, text
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


# Lock order (docs/DEVELOPING.md, "Lock order"): a request locks an entity, then its timer rows;
# the sweeper claims a timer with SKIP LOCKED and then takes its entity with SKIP LOCKED too, so
# it never waits for a lock while holding one a request may want.
_CLAIM = (
    select(timers)
    .where(timers.c.due_at <= bindparam("now"), timers.c.id != all_(bindparam("skip", type_=ARRAY(String))))
    .order_by(timers.c.due_at, timers.c.machine, timers.c.entity_id, timers.c.action)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_DUE_OF = (
    select(timers)
    .where(
        timers.c.due_at <= bindparam("now"),
        timers.c.machine == bindparam("machine"),
        timers.c.entity_id.in_(bindparam("entity_ids", expanding=True)),
    )
    .order_by(timers.c.entity_id, timers.c.action)
)
_DUE_FOR = (
    select(timers)
    .where(timers.c.due_at <= bindparam("now"), timers.c.entity_id == bindparam("entity_id"))
    .order_by(timers.c.machine, timers.c.action)
)
_LOCK_DUE = select(timers.c.id).where(timers.c.id == bindparam("id"), timers.c.due_at <= bindparam("now")).with_for_update()


async def claim_due_timer(session: AsyncSession, now: datetime, skip: set[str]) -> TimerRecord | None:
    """The oldest timer due at `now` (not in `skip`), its row locked; on PostgreSQL one another
    transaction holds is skipped (`FOR UPDATE SKIP LOCKED`), so every replica's sweeper may run
    at once and no two fire one timer. SQLite serialises writers."""
    if dialect_of(session).name == "postgresql":
        row = (await run(session, _CLAIM, {"now": now, "skip": list(skip)})).first()
    else:
        query = select(timers).where(timers.c.due_at <= now)
        if skip:
            query = query.where(timers.c.id.not_in(skip))
        query = query.order_by(timers.c.due_at, timers.c.machine, timers.c.entity_id, timers.c.action).limit(1)
        row = (await run(session, query)).first()
    return None if row is None else record_of(TimerRecord, row)


async def due_timers_of(session: AsyncSession, now: datetime, machine: str, entity_ids: list[str]) -> list[TimerRecord]:
    """The timers of these entities due at `now`, unlocked, in the global lock order (entity
    id, then action)."""
    if not entity_ids:
        return []
    rows = await run(session, _DUE_OF, {"now": now, "machine": machine, "entity_ids": entity_ids})
    return [record_of(TimerRecord, row) for row in rows]


async def due_timers_for(session: AsyncSession, now: datetime, entity_id: str) -> list[TimerRecord]:
    """One entity's timers due at `now`, unlocked."""
    return [record_of(TimerRecord, row) for row in await run(session, _DUE_FOR, {"now": now, "entity_id": entity_id})]


async def lock_due_timer(session: AsyncSession, timer_id: str, now: datetime) -> bool:
    """Lock a timer row that is still due (`FOR UPDATE`); False when it has fired meanwhile or
    moved later. Taken after its entity's lock, as every request does."""
    return (await run(session, _LOCK_DUE, {"id": timer_id, "now": now})).first() is not None


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
