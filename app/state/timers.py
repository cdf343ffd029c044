"""Deadlines and the sweeper.

A timer says: at `due_at`, fire `action` on `machine`'s entity, if that is still allowed then.
Timers are never cancelled: one whose action is no longer allowed when it falls due is dropped.
The sweeper claims due timers with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite serialises
writers), so every replica may run it at once and each timer fires once. Each timer fires in a
savepoint, so a failing one is logged and retried later without undoing the others."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.db.base import new_id
from app.db.bulk import Part
from app.db.models.platform import Timer
from app.db.repositories import platform as repo
from app.db.repositories.platform import TimerRecord
from app.state import clock
from app.state.core import SYSTEM, WORKFLOWS

log = logging.getLogger("app.timers")
TIMER_LAG = Histogram(
    "lc_timer_lag_seconds",
    "Business-time delay between a timer's due time and its firing",
    ["machine"],
    buckets=(0.1, 1, 5, 15, 60, 300, 3600, 86400),
)

# (machine, action) -> handler(session, row, now); without one the action is simply fired.
TimerHandler = Callable[[AsyncSession, object, datetime], Awaitable[None]]
HANDLERS: dict[tuple[str, str], TimerHandler] = {}


def on_timer(machine: str, action: str) -> Callable[[TimerHandler], TimerHandler]:
    def register(fn: TimerHandler) -> TimerHandler:
        HANDLERS[(machine, action)] = fn
        return fn

    return register


def new_timer(machine: str, entity_id: str, action: str, due_at: datetime) -> Part:
    """The deadline of an entity created in this transaction (there is no earlier one to move),
    as a row for `insert_together` or the creating transition's `also=`."""
    return (
        Timer.__table__,
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
    handler = HANDLERS.get((timer.machine, timer.action))
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
    clock and reads (an overdue item is fired before it is shown)."""
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
