"""Background work inside the service: the periodic jobs `app/modules.py` declares (the timer
sweeper, the webhook and SMS relays). Each job opens its own transaction per run and is safe in
every replica."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.session import database_unavailable

log = logging.getLogger("app.workers")

Job = Callable[[async_sessionmaker[AsyncSession]], Awaitable[int]]


@dataclass(frozen=True)
class Periodic:
    name: str
    interval: float | None  # None: the configured sweeper interval
    job: Job


async def run_forever(sessionmaker: async_sessionmaker[AsyncSession], default_interval: float, jobs: Iterable[Periodic]) -> None:
    async def loop(p: Periodic) -> None:
        while True:
            try:
                await p.job(sessionmaker)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a failing run is logged; the next one tries again
                if database_unavailable(error):  # an outage: one line per run, not a traceback
                    log.warning("background job %s: database unavailable (%s)", p.name, type(error).__name__)
                else:
                    log.exception("background job %s failed", p.name)
            await asyncio.sleep(p.interval or default_interval)

    await asyncio.gather(*(loop(p) for p in jobs))
