"""The one business clock (state layer: the machines and timers read it, and every service).

Business time is real UTC time plus an offset that only the test clock moves (kept in the
database so every replica agrees). Domain code asks `await now(session)`; nothing else calls
`datetime.now()` for business time. Token lifetimes and idempotency retention use real time."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import SHANGHAI, local_date, local_midnight, month_of, next_local_midnight, real_now, week_start
from app.core.config import get_settings
from app.db.repositories import platform as repo

# The calendar is core's; it is named here too so a service needs one `clock`.
__all__ = [
    "SHANGHAI",
    "advance",
    "carries_offset",
    "local_date",
    "local_midnight",
    "month_of",
    "next_local_midnight",
    "now",
    "real_now",
    "remember",
    "week_start",
]
_INFO_KEY = "lc_clock_offset"


async def offset_seconds(session: AsyncSession) -> int:
    """The test clock's offset: 0 without a query when the test clock is off; else read once
    per session (or taken from a read that carried it, `remember`)."""
    if not get_settings().test_clock_enabled:
        return 0
    offset = session.info.get(_INFO_KEY)
    if offset is None:
        offset = session.info[_INFO_KEY] = await repo.clock_offset(session)
    return offset


def remember(session: AsyncSession, offset: int | None) -> None:
    """Keep the offset a read returned with its rows (`repo.CLOCK_OFFSET`), so `now` costs no
    statement of its own."""
    if _INFO_KEY not in session.info:
        session.info[_INFO_KEY] = int(offset or 0)


def carries_offset() -> bool:
    """Whether hot-path reads should carry the offset (only while the test clock is on)."""
    return get_settings().test_clock_enabled


async def now(session: AsyncSession) -> datetime:
    """Business time for this transaction (the offset is read once per session)."""
    return real_now() + timedelta(seconds=await offset_seconds(session))


async def advance(session: AsyncSession, seconds: int) -> datetime:
    offset = await repo.advance_clock(session, int(seconds))
    session.info[_INFO_KEY] = offset
    return real_now() + timedelta(seconds=offset)
