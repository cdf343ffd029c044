"""Deadlines and the sweeper.

A timer says: at `due_at`, fire `action` on `machine`'s entity, if that is still allowed then.
Timers are never cancelled: one whose action is no longer allowed when it falls due is dropped.
The sweeper claims due timers with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite serialises
writers), so every replica may run it at once and each timer fires once. Each timer fires in a
savepoint, so a failing one is logged and retried later without undoing the others."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import NotFound
from app.db.base import new_id, table_of
from app.db.bulk import Part
from app.db.models.platform import Timer
from app.db.replica import ON_REPLICA
from app.db.repositories import platform as repo
from app.db.repositories.platform import TimerRecord
from app.state import clock
from app.state.core import SYSTEM
from app.state.registry import TIMER_HANDLERS, WORKFLOWS, TimerHandler

log = logging.getLogger("app.timers")
_TIMERS = table_of(Timer)
TIMER_LAG = Histogram(
    "lc_timer_lag_seconds",
    "Business-time delay between a timer's due time and its firing",
    ["machine"],
    buckets=(0.1, 1, 5, 15, 60, 300, 3600, 86400),
)


def on_timer(machine: str, action: str) -> Callable[[TimerHandler], TimerHandler]:
    """Marks a handler with the timer it handles (`handler.timer`); a plain marker: the handlers
    that run are the ones `app/modules.py` lists (installed through `app.state.registry`)."""

    def mark(fn: TimerHandler) -> TimerHandler:
        fn.timer = (machine, action)  # type: ignore[attr-defined]  # a function attribute: mypy types none
        return fn

    return mark


def new_timer(machine: str, entity_id: str, action: str, due_at: datetime) -> Part:
    """The deadline of an entity created in this transaction (there is no earlier one to move),
    as a row for `insert_together` or the creating transition's `also=`."""
    return (
        _TIMERS,
        [{"id": new_id("tmr"), "machine": machine, "entity_id": entity_id, "action": action, "due_at": due_at}],
    )


async def schedule(session: AsyncSession, machine: str, entity_id: str, action: str, due_at: datetime) -> None:
    """Set (or move) the deadline for `action` on an entity."""
    await repo.upsert_timer(
        session, {"id": new_id("tmr"), "machine": machine, "entity_id": entity_id, "action": action, "due_at": due_at}
    )


async def _fire_one(session: AsyncSession, timer: TimerRecord, now: datetime) -> bool:
    workflow = WORKFLOWS[timer.machine]
    try:
        row = await workflow.load_locked(session, timer.entity_id)
    except NotFound:
        row = None
    await repo.delete_timer(session, timer.id)
    if row is None or not workflow.can(row, timer.action, SYSTEM, now):
        return False
    handler = TIMER_HANDLERS.get((timer.machine, timer.action))
    if handler is None:
        await workflow.fire(session, row, timer.action, SYSTEM, now=now)
    else:
        await handler(session, row, now)
    TIMER_LAG.labels(timer.machine).observe(max(0.0, (now - timer.due_at).total_seconds()))
    return True


async def fire_due(
    session: AsyncSession,
    *,
    machines: Iterable[str] | None = None,
    entity_id: str | None = None,
    limit: int = 200,
    rounds: int = 20,
) -> int:
    """Fire the timers due now (business time), in this session's transaction: up to `rounds`
    batches of `limit`. Returns how many transitions happened. Used by the sweeper, the test
    clock and reads (an overdue item is fired before it is shown). Nothing on a replica's
    session (a `@replica_read`: its due timers are the sweeper's, lag tolerated)."""
    if session.info.get(ON_REPLICA):
        return 0
    fired = 0
    failed: set[str] = set()
    for _ in range(rounds):  # a fired timer may make another one due at once
        now = await clock.now(session)
        due = await repo.due_timers(
            session, now, machines=None if machines is None else list(machines), entity_id=entity_id, skip=failed, limit=limit
        )
        for timer in due:
            try:
                async with session.begin_nested():
                    if await _fire_one(session, timer, now):
                        fired += 1
            except Exception:  # one broken timer must not stop the others; it stays due
                log.exception("timer %s (%s.%s on %s) failed", timer.id, timer.machine, timer.action, timer.entity_id)
                failed.add(timer.id)
        if len(due) < limit:
            break
    return fired


SWEEP_BATCH = 20


async def sweep(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Fire every due timer once. Returns how many fired. Small batches, each committed: a
    batch holds the row locks of its timers' entities until it commits, so large ones would
    keep users' requests on those rows waiting (and deadlock with them)."""
    total = 0
    while True:
        async with sessionmaker() as session:
            fired = await fire_due(session, limit=SWEEP_BATCH, rounds=1)
            await session.commit()
        total += fired
        if fired < SWEEP_BATCH:
            return total
