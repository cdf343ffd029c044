"""The one clock of the domain.

Business time is real UTC time plus an offset that only the test clock moves (kept in the
database so every replica agrees). Domain code asks `await now(session)`; nothing else calls
`datetime.now()` for business time. Token lifetimes and idempotency retention use real time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import get_settings
from app.db.models.platform import ClockState

SHANGHAI = ZoneInfo("Asia/Shanghai")
_INFO_KEY = "lc_clock_offset"


def real_now() -> datetime:
    return datetime.now(UTC)


async def offset_seconds(session: AsyncSession) -> int:
    if not get_settings().test_clock_enabled:
        return 0
    if _INFO_KEY not in session.info:
        value = await session.scalar(select(ClockState.offset_seconds).where(ClockState.id == 1))
        session.info[_INFO_KEY] = int(value or 0)
    return session.info[_INFO_KEY]


async def now(session: AsyncSession) -> datetime:
    """Business time for this transaction (the offset is read once per session)."""
    return real_now() + timedelta(seconds=await offset_seconds(session))


async def advance(session: AsyncSession, seconds: int) -> datetime:
    row = await session.get(ClockState, 1, with_for_update=True)
    if row is None:
        row = ClockState(id=1, offset_seconds=0)
        session.add(row)
    row.offset_seconds = int(row.offset_seconds) + int(seconds)
    await session.flush()
    session.info[_INFO_KEY] = row.offset_seconds
    return real_now() + timedelta(seconds=row.offset_seconds)


def local_date(moment: datetime) -> date:
    """The Asia/Shanghai calendar day of an instant."""
    return moment.astimezone(SHANGHAI).date()


def local_midnight(day: date) -> datetime:
    """00:00 Asia/Shanghai of a calendar day, as a UTC instant."""
    return datetime.combine(day, time(0, 0), tzinfo=SHANGHAI).astimezone(UTC)


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 Asia/Shanghai of the natural week containing `moment` (UTC instant)."""
    day = local_date(moment)
    return local_midnight(day - timedelta(days=day.weekday()))


def next_local_midnight(moment: datetime) -> datetime:
    return local_midnight(local_date(moment) + timedelta(days=1))


def month_of(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m")
