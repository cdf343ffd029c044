"""Deadlines and the sweeper.

A timer says: at `due_at`, fire `action` on `machine`'s entity, if that is still allowed then.
Timers are never cancelled: one whose action is no longer allowed when it falls due is dropped.
The sweeper claims one due timer at a time with `FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite
serialises writers), takes its entity with `SKIP LOCKED` as well and fires it in a transaction
of its own, so every replica may run it at once, each timer fires once, and the sweeper never
waits for a lock while holding one (no deadlock with requests). Requests fire only the timers of
the entities they read (lock order: the entity, then its timer rows; docs/DEVELOPING.md)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

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


async def _fire_locked(session: AsyncSession, timer: TimerRecord, row: Any, now: datetime) -> bool:
    """Fire a timer whose entity (`row`) and timer row this transaction holds."""
    workflow = WORKFLOWS[timer.machine]
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


_BUSY = object()


async def _fire_in_request(session: AsyncSession, timer: TimerRecord, now: datetime, *, wait: bool) -> bool | object:
    """Fire one due timer inside a request's transaction, in the global lock order: the entity
    first (waiting for it when `wait`; else `_BUSY` when another transaction holds it), then
    the timer row (False when it fired meanwhile or moved later)."""
    workflow = WORKFLOWS[timer.machine]
    try:
        row = await (workflow.load_locked if wait else workflow.lock_unless_busy)(session, timer.entity_id)
    except NotFound:
        row = None
    else:
        if row is None:
            return _BUSY
    if not await repo.lock_due_timer(session, timer.id, now):
        return False
    return await _fire_locked(session, timer, row, now)


async def _fire_each(session: AsyncSession, due: list[TimerRecord], now: datetime, *, wait: bool) -> int:
    fired = 0
    for timer in due:
        try:
            async with session.begin_nested():
                if await _fire_in_request(session, timer, now, wait=wait) is True:
                    fired += 1
        except Exception:  # one broken timer must not fail the read; it stays due for the sweeper
            log.exception("timer %s (%s.%s on %s) failed", timer.id, timer.machine, timer.action, timer.entity_id)
    return fired


async def fire_due(session: AsyncSession, *, entity_id: str, rounds: int = 5) -> int:
    """Fire one entity's due timers (business time) in this session's transaction, as the
    sweeper would have: a read shows, and an action acts on, the entity as of now. Waits for
    the entity's lock, then takes its timer rows (the order every request keeps). Returns how
    many transitions happened. Nothing on a replica's session (a `@replica_read`: its due
    timers are the sweeper's, lag tolerated)."""
    if session.info.get(ON_REPLICA):
        return 0
    fired = 0
    for _ in range(rounds):  # a fired timer may make another one due at once
        now = await clock.now(session)
        due = await repo.due_timers_for(session, now, entity_id)
        if not due:
            break
        done = await _fire_each(session, due, now, wait=True)
        fired += done
        if not done:
            break
    return fired


async def fire_due_of(session: AsyncSession, machine: str, entity_ids: Iterable[str]) -> int:
    """Fire the due timers of the entities a list read is about to show (its page), in entity
    id order, skipping an entity another transaction holds (that one is being acted on, or
    the sweeper has it). Returns how many transitions happened: the caller reads its page again
    when any did."""
    ids = sorted(set(entity_ids))
    if not ids or session.info.get(ON_REPLICA):
        return 0
    now = await clock.now(session)
    return await _fire_each(session, await repo.due_timers_of(session, now, machine, ids), now, wait=False)


class _Page(Protocol):
    @property
    def items(self) -> Sequence[Any]: ...


PageT = TypeVar("PageT", bound=_Page)


async def page_as_of_now(session: AsyncSession, machine: str, read: Callable[[], Awaitable[PageT]]) -> PageT:
    """A list page as of now: `read()` once, fire the due timers of the entities on it
    (`fire_due_of`), and read again if any fired (an overdue item is shown as it is now)."""
    page = await read()
    if await fire_due_of(session, machine, [item.id for item in page.items]):
        page = await read()
    return page


async def _sweep_one(session: AsyncSession, timer: TimerRecord, now: datetime, skip: set[str]) -> bool:
    """Fire a claimed timer if its entity is free (`SKIP LOCKED` again: the sweeper never waits
    for a lock while it holds one); a timer whose entity is busy goes to `skip` and stays due."""
    try:
        row = await WORKFLOWS[timer.machine].lock_unless_busy(session, timer.entity_id)
    except NotFound:
        row = None
    else:
        if row is None:
            skip.add(timer.id)
            return False
    return await _fire_locked(session, timer, row, now)


async def sweep(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    """Fire every due timer once, each in its own short transaction: claim the oldest due one
    (`FOR UPDATE SKIP LOCKED`, so replicas share the work and no two fire one timer), fire it,
    commit. A timer holds its entity's locks only for its own transition. Returns how many
    fired. A timer whose entity a request holds, or that fails (logged), is left for the next
    run."""
    total = 0
    skip: set[str] = set()
    while True:
        async with sessionmaker() as session:
            now = await clock.now(session)
            timer = await repo.claim_due_timer(session, now, skip)
            if timer is None:
                await session.commit()
                return total
            try:
                fired = await _sweep_one(session, timer, now, skip)
                await session.commit()
            except Exception:  # one broken timer must not stop the others; it stays due
                await session.rollback()
                log.exception("timer %s (%s.%s on %s) failed", timer.id, timer.machine, timer.action, timer.entity_id)
                skip.add(timer.id)
                continue
        total += fired
