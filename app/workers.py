"""Background work inside the service: the timer sweeper, and any relay a module registers
(`@periodic(...)`). Each job opens its own transaction per run and is safe in every replica."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.state.timers import fire_due

log = logging.getLogger("app.workers")

Job = Callable[[async_sessionmaker[AsyncSession]], Awaitable[int]]


@dataclass
class Periodic:
    name: str
    interval: float | None  # None: the configured sweeper interval
    job: Job


PERIODIC: list[Periodic] = []


def periodic(name: str, interval: float | None = None) -> Callable[[Job], Job]:
    def register(job: Job) -> Job:
        PERIODIC.append(Periodic(name, interval, job))
        return job

    return register


SWEEP_BATCH = 20


@periodic("sweeper")
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


async def run_forever(sessionmaker: async_sessionmaker[AsyncSession], default_interval: float) -> None:
    async def loop(p: Periodic) -> None:
        while True:
            try:
                await p.job(sessionmaker)
            except asyncio.CancelledError:
                raise
            except Exception:  # a failing run is logged; the next one tries again
                log.exception("background job %s failed", p.name)
            await asyncio.sleep(p.interval or default_interval)

    await asyncio.gather(*(loop(p) for p in PERIODIC))
